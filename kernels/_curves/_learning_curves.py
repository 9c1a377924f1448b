"""Measured learning curves: kernel and random-feature ridge regression on nested subsets."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import scipy.linalg
import xarray as xr

from ._checks import check_nonnegative


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


def _accuracy(pred, target):
    if pred.ndim == 1:
        return np.nan
    return float(np.mean(np.argmax(pred, axis=1) == np.argmax(target, axis=1)))


def _nested_kernel_ridge(K_train, K_test_train, y_train, y_test, D, ridge, coef_to_risk=None, accuracy=None):
    """Test/train MSE of KRR for each nested size in ``D`` from one factorisation.

    The Cholesky factor of a leading block is the leading block of the factor, and the
    inverse of a leading block of a triangular matrix is the leading block of its inverse:
    with ``Linv = L^-1`` and ``z = Linv y``, the coefficients of size ``d`` are
    ``Linv[:d, :d]^T z[:d]``, plain products on views (no per-size solve or copy).
    Ridgeless systems that are singular fall back to minimum-norm least squares per size.
    ``coef_to_risk(d, alpha)``, when given, replaces the test-set error by an exact risk.
    """
    from scipy.linalg import lapack

    Dmax = int(D[-1])
    A = np.array(K_train[:Dmax, :Dmax], dtype=np.float64, order="F")
    A[np.diag_indices(Dmax)] += ridge
    L, info = lapack.dpotrf(A, lower=1, overwrite_a=1)
    ok = info == 0 and np.all(np.diag(L) > 1e-10 * np.sqrt(np.max(np.abs(np.diag(K_train[:Dmax, :Dmax]))) + ridge))
    if ok:
        Linv, info = lapack.dtrtri(L, lower=1, overwrite_c=1)
        ok = info == 0
    if ok:
        z = Linv @ y_train[:Dmax]
    else:
        A = K_train[:Dmax, :Dmax] + ridge * np.eye(Dmax)
    test, train = [], []
    for d in D:
        yd = y_train[:d]
        if ok:
            alpha = Linv[:d, :d].T @ z[:d]
        else:
            alpha = scipy.linalg.lstsq(A[:d, :d], yd, lapack_driver="gelsd")[0]
        if coef_to_risk is None:
            pred = K_test_train[:, :d] @ alpha
            test.append(_mse(pred, y_test))
            if accuracy is not None:
                accuracy.append(_accuracy(pred, y_test))
        else:
            test.append(coef_to_risk(d, alpha))
        train.append(_mse(K_train[:d, :d] @ alpha, yd))
    return np.array(test), np.array(train)


def kernel_ridge_nested(K_train, K_test_train, y_train, y_test, D, *, ridge: float = 0.0):
    """Kernel ridge regression for every nested training size in ``D``, one factorisation.

    The building block of :func:`krr_learning_curve` for callers with their own splits:
    ``K_train`` is the Gram matrix of the training candidates in order (size ``D[-1]``),
    ``K_test_train`` the test-train kernel; the first ``d`` candidates train size ``d``.

    Returns
    -------
    dict of arrays over ``D``: ``test_mse``, ``train_mse``, ``test_accuracy`` (argmax
    agreement for several outputs, NaN for one).

    Examples
    --------
    >>> import numpy as np, kernels
    >>> x = np.linspace(0, 1, 30)[:, None]
    >>> K = np.exp(-(x - x.T) ** 2 / 0.1)
    >>> out = kernels.kernel_ridge_nested(K[:20, :20], K[20:, :20], x[:20, 0], x[20:, 0], [5, 20], ridge=1e-6)
    >>> bool(out["test_mse"][1] < out["test_mse"][0])
    True
    """
    ridge = check_nonnegative("ridge", ridge)
    D = _sizes("D", D, np.shape(K_train)[0])
    acc = []
    test, train = _nested_kernel_ridge(np.asarray(K_train, np.float64), np.asarray(K_test_train, np.float64),
                                       np.asarray(y_train, np.float64), np.asarray(y_test, np.float64), D, ridge,
                                       accuracy=acc)
    return {"test_mse": test, "train_mse": train, "test_accuracy": np.array(acc)}


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
    ridge = check_nonnegative("ridge", ridge)
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
    ridge = check_nonnegative("ridge", ridge)
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


def _rf_grid(F_tr, F_te, y_tr, y_te, D, P, ridge, cov=None, acc=None):
    """Every (P, D) cell, sharing work. For each P: sizes D < P are solved in the dual
    (kernel K_P = F F^T / P, one factorisation for all of them), sizes D >= P in the primal
    (P x P normal equations accumulated over the nested D), or, ridgeless, by minimum-norm
    least squares."""
    test = np.full((len(P), len(D)), np.nan)
    train = np.full_like(test, np.nan)
    accs = np.full_like(test, np.nan)
    n_dual_max = int(D[D < P[-1]].max()) if np.any(D < P[-1]) else 0
    K_tr = np.zeros((n_dual_max, n_dual_max))
    K_te = np.zeros((F_te.shape[0], n_dual_max))
    prev = 0
    for a, p in enumerate(P):
        if n_dual_max:
            blk_tr, blk_te = F_tr[:n_dual_max, prev:p], F_te[:, prev:p]
            K_tr = (prev * K_tr + blk_tr @ blk_tr.T) / p  # K_P from K_{P_prev}: no recomputation
            K_te = (prev * K_te + blk_te @ blk_tr.T) / p
        prev = p

        def risk(theta, p=p):  # exact population risk of the linear predictor f . theta
            return float(theta @ cov[:p, :p] @ theta - 2.0 * theta @ cov[:p, -1] + cov[-1, -1])

        def dual_risk(d, alpha, p=p):  # dual coefficients -> primal weights theta = F^T alpha / P
            return risk(F_tr[:d, :p].T @ alpha / p)

        dual = D[D < p]
        if dual.size:
            row_acc = []
            m = int(dual[-1])
            t, r = _nested_kernel_ridge(K_tr[:m, :m], K_te[:, :m], y_tr, y_te, dual, ridge,
                                        None if cov is None else dual_risk, accuracy=row_acc)
            test[a, : dual.size], train[a, : dual.size] = t, r
            if row_acc:
                accs[a, : dual.size] = row_acc
        Fp, Fte_p = F_tr[:, :p], F_te[:, :p]
        G = np.zeros((p, p))
        rhs = np.zeros((p,) + y_tr.shape[1:])
        done = 0
        for b in range(dual.size, len(D)):
            d = int(D[b])
            if ridge > 0:
                G += Fp[done:d].T @ Fp[done:d]  # normal equations grow with the nested D
                rhs += Fp[done:d].T @ y_tr[done:d]
                done = d
                A = G + ridge * p * np.eye(p)
                theta = scipy.linalg.cho_solve(scipy.linalg.cho_factor(A, lower=True, check_finite=False), rhs,
                                               check_finite=False)
            else:
                theta = scipy.linalg.lstsq(Fp[:d], y_tr[:d], lapack_driver="gelsd")[0]
            if cov is None:
                pred = Fte_p @ theta
                test[a, b] = _mse(pred, y_te)
                accs[a, b] = _accuracy(pred, y_te)
            else:
                test[a, b] = risk(theta)
            train[a, b] = _mse(Fp[:d] @ theta, y_tr[:d])
    if acc is not None:
        acc.extend(accs.tolist())
    return test, train


def rf_ridge_grid(F_train, y_train, F_test, y_test, D, P, *, ridge: float = 0.0, population_covariance=None):
    """Random-feature ridge regression over a ``(P, D)`` grid with work shared across it.

    The building block of :func:`rf_learning_curve` for callers with their own splits: the
    first ``d`` rows of ``F_train`` train size ``d``, the first ``p`` columns are the
    ``p``-feature model. Gram matrices grow incrementally with ``P``; one Cholesky factor
    per ``P`` serves every ``D``.

    Returns
    -------
    dict of ``(P, D)`` arrays: ``test_mse``, ``train_mse``, ``test_accuracy``; with a
    ``population_covariance`` also ``floor_mse (P,)``, the risk of the best linear predictor
    on the first ``P`` features (``s_yy - s_fy^T S_ff^-1 s_fy``), so that
    ``test_mse - floor_mse`` is the exact excess risk of finite data.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> F = np.random.default_rng(0).standard_normal((120, 40))
    >>> out = kernels.rf_ridge_grid(F[:100], F[:100, 0], F[100:], F[100:, 0], [20, 100], [10, 40])
    >>> out["test_mse"].shape
    (2, 2)
    """
    ridge = check_nonnegative("ridge", ridge)
    F_train = np.asarray(F_train, np.float64)
    F_test = np.asarray(F_test, np.float64)
    D = _sizes("D", D, F_train.shape[0])
    P = _sizes("P", P, F_train.shape[1])
    cov = None if population_covariance is None else np.asarray(population_covariance, np.float64)
    acc = []
    test, train = _rf_grid(F_train, F_test, np.asarray(y_train, np.float64), np.asarray(y_test, np.float64), D, P,
                           float(ridge), cov, acc)
    out = {"test_mse": test, "train_mse": train, "test_accuracy": np.asarray(acc, dtype=float)}
    if cov is not None:
        # the Cholesky factor of a leading block is the leading block of the factor: one
        # factorisation gives s_fy^T S_ff^-1 s_fy for every nested P as a prefix sum
        p_max = int(max(P))
        z = scipy.linalg.solve_triangular(np.linalg.cholesky(cov[:p_max, :p_max]), cov[:p_max, -1], lower=True)
        explained = np.cumsum(z**2)
        out["floor_mse"] = np.array([cov[-1, -1] - explained[int(p) - 1] for p in P])
    return out
