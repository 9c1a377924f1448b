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
rebuilt per cell. Everything is float64 numpy/LAPACK: no compilation, so a cold process
runs as fast as a warm one. Ridgeless systems that are numerically singular fall back to
minimum-norm least squares for that cell.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.linalg import lapack


def _chol(A: np.ndarray, scale: float):
    """Lower Cholesky factor (Fortran order) of ``A``, or None if it is not numerically PD."""
    L, info = lapack.dpotrf(np.asfortranarray(A), lower=1, clean=1, overwrite_a=1)
    if info != 0 or not np.all(np.diag(L) > 1e-7 * np.sqrt(scale)):
        return None
    return L


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
    labels_te = np.argmax(Y_te, axis=1) if c > 1 and risk is None else None

    def record(i, j, p, theta, pred_test, resid_train, d):
        train[i, j] = np.sum(resid_train**2) / d
        if risk is not None:
            test[i, j] = risk(i, j, p, theta)
            return
        test[i, j] = np.sum((pred_test - Y_te) ** 2) / Y_te.shape[0]
        if labels_te is not None:
            acc[i, j] = np.mean(np.argmax(pred_test, axis=1) == labels_te)

    # ---- dual cells (d < p): kernels grown over feature blocks, one factor per p
    dual_rows = D[D < P[-1]]
    m_all = int(dual_rows.max()) if dual_rows.size else 0
    if m_all:
        K = np.zeros((m_all, m_all))
        K_te = np.zeros((F_te.shape[0], m_all))
        prev = 0
        for j, p in enumerate(P):
            blk = F_tr[:m_all, prev:p]
            K += blk @ blk.T
            if risk is None:
                K_te += F_te[:, prev:p] @ blk.T
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
                    resid = ridge * alpha  # y - K alpha, exactly, for the dual ridge solution
                else:
                    Ad = K[:d, :d] / p + ridge * np.eye(d)
                    alpha = scipy.linalg.lstsq(Ad, Y_tr[:d], lapack_driver="gelsd")[0]
                    resid = Y_tr[:d] - (K[:d, :d] / p) @ alpha
                theta = F_tr[:d, :p].T @ alpha / p if risk is not None else None
                pred = K_te[:, :d] @ alpha / p if risk is None else None
                record(i, j, p, theta, pred, resid, d)

    # ---- primal cells (d >= p): normal equations grown over row blocks
    primal_cols = P[P <= D[-1]]
    q = int(primal_cols.max()) if primal_cols.size else 0
    if q:
        G = np.zeros((q, q))
        R = np.zeros((q, c))
        prev = 0
        for i, d in enumerate(D):
            blk = F_tr[prev:d, :q]
            G += blk.T @ blk
            R += blk.T @ Y_tr[prev:d]
            prev = d
            for j in np.nonzero(P <= d)[0]:
                p = int(P[j])
                Fp = F_tr[:d, :p]
                theta = None
                A = G[:p, :p].copy()
                A[np.diag_indices(p)] += ridge * p
                L = _chol(A, float(np.max(np.diag(G)[:p])) + ridge * p)
                if L is not None and ridge == 0 and (np.max(np.diag(L)) / np.min(np.diag(L))) ** 2 > 1e8:
                    L = None  # ridgeless and ill-conditioned: the normal equations would lose digits
                if L is not None:
                    theta = _trsolve(L, _trsolve(L, R[:p], 0), 1)
                if theta is None:
                    theta = scipy.linalg.lstsq(Fp, Y_tr[:d], lapack_driver="gelsd")[0]
                pred = F_te[:, :p] @ theta if risk is None else None
                record(i, j, p, theta, pred, Fp @ theta - Y_tr[:d], d)
    return {"test_mse": test, "train_mse": train, "test_accuracy": acc}
