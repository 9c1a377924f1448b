"""Random-feature ridge regression on every (D, P) cell of a unit, sharing all the work.

The engine behind the ``rf_ridge`` model. For one draw of features it solves every cell
of the nested grid (the first ``d`` rows train size ``d``, the first ``p`` columns are the
``p``-feature model) with a fixed number of factorisations:

- ``d < p`` (dual, kernel ``K_p = F F^T / p``): one Cholesky factor of the largest dual
  block per ``p`` serves every smaller ``d`` (the factor of a leading block is the leading
  block of the factor), so each ``d`` costs two triangular solves;
- ``d >= p`` (primal, ``(F^T F + ridge p I) theta = F^T y``): the normal equations grow
  with the nested ``d`` (one accumulation over the rows for the whole grid) and each cell
  is one Cholesky solve of size ``p``.

Gram matrices are accumulated once over features (dual) and once over rows (primal), never
rebuilt per cell; test predictions go through the primal weights (no test-kernel matrix). Everything is float64 numpy/LAPACK: no compilation, so a cold process
runs as fast as a warm one. Ridgeless systems that are numerically singular fall back to
minimum-norm least squares for that cell.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.linalg import blas, lapack


def _chol(A: np.ndarray, scale: float):
    """Lower Cholesky factor of ``A`` (Fortran order; only its lower triangle is read, and it is
    overwritten), or None if it is not numerically PD."""
    if not A.flags.f_contiguous:
        raise ValueError("internal: _chol needs a Fortran-ordered matrix (its lower triangle is read)")
    L, info = lapack.dpotrf(A, lower=1, clean=1, overwrite_a=1)
    if info != 0 or not np.all(np.diag(L) > 1e-7 * np.sqrt(scale)):
        return None
    return L


def _symmetric(lower: np.ndarray) -> np.ndarray:
    """The full symmetric matrix whose lower triangle is ``lower``."""
    return np.tril(lower) + np.tril(lower, -1).T


def _trsolve(L, b, trans: int):
    x, info = lapack.dtrtrs(L, b, lower=1, trans=trans)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular solve failed (info {info})")
    return x


def rf_grid(F_train, Y_train, F_test, Y_test, D, P, *, ridge: float = 0.0, risk=None) -> dict:
    """Every ``(D, P)`` cell of random-feature ridge regression from one feature draw.

    Parameters
    ----------
    F_train : array (D_max, P_max)
        Features of the nested training candidates.
    Y_train : array (D_max, c)
    F_test, Y_test : arrays (n_test, P_max), (n_test, c)
        Ignored (may have 0 rows) when ``risk`` is given.
    D, P : increasing ints
    ridge : float
        ``K_p = F F^T / p + ridge I`` in the dual, ``F^T F + ridge p I`` in the primal.
    risk : callable ``(i, j, p, theta (p, c)) -> float``, optional
        The exact test risk of cell ``(D[i], P[j])``'s weights ``theta`` on the first ``p``
        features (population risk of a Gaussian teacher-student task), replacing the test
        set; it may return NaN and fill the cell later (risks computed in one batch).

    Returns
    -------
    dict of ``(D, P)`` arrays ``test_mse``, ``train_mse``, ``test_accuracy`` (argmax
    agreement for several outputs, NaN for one).

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._rf import rf_grid
    >>> rng = np.random.default_rng(0)
    >>> F = rng.standard_normal((120, 40)); y = F[:, :1] + 0.1 * rng.standard_normal((120, 1))
    >>> out = rf_grid(F[:100], y[:100], F[100:], y[100:], [20, 100], [10, 40], ridge=1e-3)
    >>> out["test_mse"].shape
    (2, 2)
    """
    D = np.asarray(D, dtype=int)
    P = np.asarray(P, dtype=int)
    ridge = float(ridge)
    F_tr = np.asarray(F_train, dtype=np.float64)
    Y_tr = np.asarray(Y_train, dtype=np.float64)
    F_te = np.asarray(F_test, dtype=np.float64)
    Y_te = np.asarray(Y_test, dtype=np.float64)
    c = Y_tr.shape[1]
    test = np.full((D.size, P.size), np.nan)
    train = np.full_like(test, np.nan)
    acc = np.full_like(test, np.nan)
    weights = {}  # (i, j) -> theta (p, c); evaluated per p in one product at the end
    exact_train = {}  # (i, j) -> train MSE known exactly from the dual solution

    # ---- dual cells (d < p): kernels grown over feature blocks, one factor per p
    dual_rows = D[D < P[-1]]
    m_all = int(dual_rows.max()) if dual_rows.size else 0
    if m_all:
        K = np.zeros((m_all, m_all), order="F")  # lower triangle, grown in place by BLAS syrk
        prev = 0
        for j, p in enumerate(P):
            K = blas.dsyrk(1.0, F_tr[:m_all, prev:p], beta=1.0, c=K, trans=0, lower=1, overwrite_c=1)
            prev = p
            idx = np.nonzero(D < p)[0]
            if not idx.size:
                continue
            m = int(D[idx[-1]])
            scale = float(np.max(np.diag(K)[:m])) / p + ridge
            A = K[:m, :m] / p
            A[np.diag_indices(m)] += ridge
            L = _chol(A, scale)
            z = _trsolve(L, Y_tr[:m], 0) if L is not None else None
            for i in idx:
                d = int(D[i])
                if L is not None:
                    alpha = _trsolve(L[:d, :d], z[:d], 1)
                    exact_train[i, j] = np.sum((ridge * alpha) ** 2) / d  # y - K alpha = ridge alpha
                else:
                    Ad = _symmetric(K[:d, :d]) / p + ridge * np.eye(d)
                    alpha = scipy.linalg.lstsq(Ad, Y_tr[:d], lapack_driver="gelsd")[0]
                weights[i, j] = F_tr[:d, :p].T @ alpha / p  # the primal weights: no test-kernel matrix

    # ---- primal cells (d >= p): normal equations grown over row blocks
    primal_cols = P[P <= D[-1]]
    q = int(primal_cols.max()) if primal_cols.size else 0
    if q:
        G = np.zeros((q, q), order="F")  # lower triangle, grown in place by BLAS syrk
        R = np.zeros((q, c))
        prev = 0
        for i, d in enumerate(D):
            blk = F_tr[prev:d, :q]
            G = blas.dsyrk(1.0, blk, beta=1.0, c=G, trans=1, lower=1, overwrite_c=1)
            R += blk.T @ Y_tr[prev:d]
            prev = d
            for j in np.nonzero(P <= d)[0]:
                p = int(P[j])
                theta = None
                A = G[:p, :p].copy(order="F")
                A[np.diag_indices(p)] += ridge * p
                L = _chol(A, float(np.max(np.diag(G)[:p])) + ridge * p)
                if L is not None and ridge == 0 and (np.max(np.diag(L)) / np.min(np.diag(L))) ** 2 > 1e8:
                    L = None  # ridgeless and ill-conditioned: the normal equations would lose digits
                if L is not None:
                    theta = _trsolve(L, _trsolve(L, R[:p], 0), 1)
                if theta is None:
                    theta = scipy.linalg.lstsq(F_tr[:d, :p], Y_tr[:d], lapack_driver="gelsd")[0]
                weights[i, j] = theta

    # ---- evaluation: per p, every cell's weights in one product with the test (and train) features
    labels_te = np.argmax(Y_te, axis=1) if c > 1 and risk is None else None
    for j, p in enumerate(P):
        cells = [i for i in range(D.size) if (i, j) in weights]
        if not cells:
            continue
        Theta = np.concatenate([weights[i, j] for i in cells], axis=1)  # (p, cells * c)
        d_top = int(D[cells[-1]])
        need_train = [i for i in cells if (i, j) not in exact_train]
        fit_tr = F_tr[:d_top, :p] @ Theta if need_train else None
        pred_te = F_te[:, :p] @ Theta if risk is None else None
        for k, i in enumerate(cells):
            d, cols = int(D[i]), slice(k * c, (k + 1) * c)
            train[i, j] = exact_train[i, j] if (i, j) in exact_train else \
                np.sum((fit_tr[:d, cols] - Y_tr[:d]) ** 2) / d
            if risk is not None:
                test[i, j] = risk(i, j, int(p), weights[i, j])
                continue
            pred = pred_te[:, cols]
            test[i, j] = np.sum((pred - Y_te) ** 2) / Y_te.shape[0]
            if labels_te is not None:
                acc[i, j] = np.mean(np.argmax(pred, axis=1) == labels_te)
    return {"test_mse": test, "train_mse": train, "test_accuracy": acc}
