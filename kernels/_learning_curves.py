"""Measured learning curves: kernel and random-feature ridge regression on nested subsets."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import scipy.linalg
import xarray as xr


def _sizes(name, values, upper):
    v = np.asarray(values)
    if v.ndim != 1 or v.size == 0 or not np.issubdtype(v.dtype, np.integer) and not np.all(v == np.round(v)):
        raise ValueError(f"{name} must be a 1-D list of integers, got {values!r}")
    v = np.asarray(v, dtype=int)
    if np.any(v < 1) or np.any(v > upper):
        raise ValueError(f"{name} values must lie in [1, {upper}], got min {v.min()} max {v.max()}")
    if np.any(np.diff(v) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {v.tolist()}")
    return v


def _keys(key, seeds):
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seeds = np.arange(seeds)
    seeds = np.asarray(seeds, dtype=int)
    return seeds, [jax.random.fold_in(key, int(s)) for s in seeds]


def _permutation(k, n):
    return np.asarray(jax.random.permutation(k, n))


def _mse(pred, target):
    err = (pred - target) ** 2
    return float(np.mean(err if err.ndim == 1 else err.sum(axis=1)))


def _nested_kernel_ridge(K_train, K_test_train, y_train, y_test, D, ridge, coef_to_risk=None):
    """Test/train MSE of KRR for each nested size in ``D`` from one Cholesky factor.

    The Cholesky factor of a leading block is the leading block of the factor, so one
    factorisation of the largest training set serves every smaller one. Ridgeless systems
    that are singular fall back to a minimum-norm least-squares solve per size.
    ``coef_to_risk(d, alpha)``, when given, replaces the test-set error by an exact risk.
    """
    Dmax = int(D[-1])
    A = K_train[:Dmax, :Dmax] + ridge * np.eye(Dmax)
    try:
        L = scipy.linalg.cholesky(A, lower=True)
        ok = np.all(np.diag(L) > 1e-10 * np.sqrt(np.max(np.diag(A))))
    except np.linalg.LinAlgError:
        ok = False
    test, train = [], []
    for d in D:
        yd = y_train[:d]
        if ok:
            alpha = scipy.linalg.cho_solve((L[:d, :d], True), yd)
        else:
            alpha = scipy.linalg.lstsq(A[:d, :d], yd, lapack_driver="gelsd")[0]
        test.append(_mse(K_test_train[:, :d] @ alpha, y_test) if coef_to_risk is None else coef_to_risk(d, alpha))
        train.append(_mse(K_train[:d, :d] @ alpha, yd))
    return np.array(test), np.array(train)


def krr_learning_curve(K, y, D, *, n_test: int, ridge: float = 0.0, seeds=4, key=0) -> xr.Dataset:
    """Measured kernel ridge regression learning curve on nested training sets.

    For every seed the pool of ``N`` points (rows of ``K``) is permuted; the first
    ``n_test`` points are the test set and training sets are the first ``D`` of the rest,
    nested across ``D``.

    Parameters
    ----------
    K : array (N, N)
        Kernel over the whole pool.
    y : array (N,) or (N, c)
        Targets (MSE sums over outputs, averages over points).
    D : increasing ints
        Training-set sizes, at most ``N - n_test``.
    n_test : int
    ridge : float
        ``delta`` on the raw Gram matrix (as in :func:`kernels.krr_risk`).
    seeds : int or list of ints
    key : int or jax key

    Returns
    -------
    xarray.Dataset
        ``test_mse (seed, D)``, ``train_mse (seed, D)``.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> x = np.random.default_rng(0).standard_normal((120, 2))
    >>> K = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1))
    >>> ds = kernels.krr_learning_curve(K, np.sin(x[:, 0]), [10, 40, 80], n_test=40, ridge=1e-6, seeds=2)
    >>> bool((ds.test_mse.mean("seed").diff("D") < 0).all())
    True
    """
    K = np.asarray(K, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    N = K.shape[0]
    if K.shape != (N, N):
        raise ValueError(f"K must be square, got {K.shape}")
    if y.shape[0] != N:
        raise ValueError(f"y has {y.shape[0]} rows, K has {N}")
    if not np.all(np.isfinite(K)) or not np.all(np.isfinite(y)):
        raise ValueError("K and y must be finite")
    if not isinstance(n_test, (int, np.integer)) or not 1 <= n_test < N:
        raise ValueError(f"n_test must be an integer in [1, {N - 1}], got {n_test!r}")
    D = _sizes("D", D, N - n_test)
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge!r}")
    seeds, keys = _keys(key, seeds)
    test = np.empty((len(seeds), len(D)))
    train = np.empty_like(test)
    for s, k in enumerate(keys):
        perm = _permutation(k, N)
        te, tr = perm[:n_test], perm[n_test:n_test + D[-1]]
        test[s], train[s] = _nested_kernel_ridge(K[np.ix_(tr, tr)], K[np.ix_(te, tr)], y[tr], y[te], D, ridge)
    return xr.Dataset(
        {"test_mse": (("seed", "D"), test), "train_mse": (("seed", "D"), train)},
        coords={"seed": seeds, "D": D},
        attrs={"model": "kernel ridge regression", "ridge": float(ridge), "n_test": int(n_test), "pool_size": int(N)},
    )


def rf_learning_curve(features: np.ndarray | Callable, y, D, P, *, n_test: int = 0, ridge: float = 0.0, seeds=4,
                      key=0, population_covariance=None) -> xr.Dataset:
    r"""Measured random-feature ridge regression over a ``(P, D)`` grid.

    The model is kernel ridge regression with the finite kernel ``K_P = F F^T / P`` of the
    first ``P`` features (equivalently ridge regression on the features with penalty
    ``ridge * P``); ``ridge = 0`` is the minimum-norm least-squares fit that shows the
    interpolation peak at ``D = P``.

    Work is shared across the grid: for each seed the Gram matrices ``K_P`` are built
    incrementally over increasing ``P``, and for each ``P`` one Cholesky factor serves every
    nested ``D``. Ridgeless cells with ``D > P`` (where ``K_P`` is singular) are solved in
    the primal by minimum-norm least squares.

    Parameters
    ----------
    features : array (N, P_max) or callable ``key -> (N, P_max)``
        A callable draws fresh features per seed (the usual random-feature average).
    y : array (N,) or (N, c)
    D, P : increasing ints
    n_test, ridge, seeds, key
        As in :func:`krr_learning_curve`.
    population_covariance : array (P_max + 1, P_max + 1), optional
        The joint covariance of (features, target) when it is known (Gaussian
        teacher-student tasks, :meth:`experiments.TeacherStudent.sample_features`). The
        test error is then the exact population risk of each fitted predictor,
        ``theta^T S_ff theta - 2 theta^T s_fy + s_yy``, free of test-set noise, and
        ``n_test`` may be 0 (every point is a training candidate).

    Returns
    -------
    xarray.Dataset
        ``test_mse (seed, P, D)``, ``train_mse (seed, P, D)``.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> X = np.random.default_rng(0).standard_normal((150, 30))
    >>> ds = kernels.rf_learning_curve(X, X[:, 0], [10, 50, 100], [5, 30], n_test=50, seeds=1)
    >>> ds.test_mse.dims
    ('seed', 'P', 'D')
    """
    y = np.asarray(y, dtype=np.float64)
    N = y.shape[0]
    low = 0 if population_covariance is not None else 1
    if not isinstance(n_test, (int, np.integer)) or not low <= n_test < N:
        raise ValueError(f"n_test must be an integer in [{low}, {N - 1}], got {n_test!r}")
    cov = None
    if population_covariance is not None:
        cov = np.asarray(population_covariance, dtype=np.float64)
        if y.ndim != 1 or cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ValueError("population_covariance needs a scalar target and a square (P_max + 1) covariance")
    D = _sizes("D", D, N - n_test)
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge!r}")
    seeds, keys = _keys(key, seeds)
    fixed = None if callable(features) else np.asarray(features, dtype=np.float64)
    P_checked = None
    rows_test, rows_train = [], []
    for s, k in enumerate(keys):
        k_feat, k_split = jax.random.split(k)
        F = fixed if fixed is not None else np.asarray(features(k_feat), dtype=np.float64)
        if F.ndim != 2 or F.shape[0] != N:
            raise ValueError(f"features must have shape ({N}, P_max), got {F.shape}")
        if not np.all(np.isfinite(F)):
            raise ValueError("features contain non-finite values")
        if P_checked is None:
            P_checked = _sizes("P", P, F.shape[1])
            if cov is not None and cov.shape[0] != F.shape[1] + 1:
                raise ValueError(f"population_covariance must be {F.shape[1] + 1} x {F.shape[1] + 1}, got {cov.shape}")
        perm = _permutation(k_split, N)
        te, tr = perm[:n_test], perm[n_test:n_test + D[-1]]
        te_out, tr_out = _rf_grid(F[tr], F[te], y[tr], y[te], D, P_checked, ridge, cov)
        rows_test.append(te_out)
        rows_train.append(tr_out)
    test, train = np.stack(rows_test), np.stack(rows_train)
    return xr.Dataset(
        {"test_mse": (("seed", "P", "D"), test), "train_mse": (("seed", "P", "D"), train)},
        coords={"seed": seeds, "P": P_checked, "D": D},
        attrs={"model": "linear random-feature ridge regression (K_P = F F^T / P)", "ridge": float(ridge),
               "n_test": int(n_test), "pool_size": int(N),
               "test_error": "exact population risk" if cov is not None else f"mean over {n_test} test points"},
    )


def _rf_grid(F_tr, F_te, y_tr, y_te, D, P, ridge, cov=None):
    test = np.empty((len(P), len(D)))
    train = np.empty_like(test)
    K_tr = np.zeros((F_tr.shape[0], F_tr.shape[0]))
    K_te = np.zeros((F_te.shape[0], F_tr.shape[0]))
    prev = 0
    for a, p in enumerate(P):
        blk_tr, blk_te = F_tr[:, prev:p], F_te[:, prev:p]
        K_tr = (prev * K_tr + blk_tr @ blk_tr.T) / p  # K_P from K_{P_prev}: no recomputation
        K_te = (prev * K_te + blk_te @ blk_tr.T) / p
        prev = p

        def risk(theta, p=p):  # exact population risk of the linear predictor f . theta
            return float(theta @ cov[:p, :p] @ theta - 2.0 * theta @ cov[:p, -1] + cov[-1, -1])

        def dual_risk(d, alpha, p=p):  # dual coefficients -> primal weights theta = F^T alpha / P
            return risk(F_tr[:d, :p].T @ alpha / p)

        dual = D if ridge > 0 else D[D <= p]
        if dual.size:
            t, r = _nested_kernel_ridge(K_tr, K_te, y_tr, y_te, dual, ridge, None if cov is None else dual_risk)
            test[a, : dual.size], train[a, : dual.size] = t, r
        for b, d in enumerate(D[dual.size:], start=dual.size):  # ridgeless, D > P: primal
            theta = scipy.linalg.lstsq(F_tr[:d, :p], y_tr[:d], lapack_driver="gelsd")[0]
            test[a, b] = _mse(F_te[:, :p] @ theta, y_te) if cov is None else risk(theta)
            train[a, b] = _mse(F_tr[:d, :p] @ theta, y_tr[:d])
    return test, train
