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
rebuilt per cell; test predictions go through the primal weights (no test-kernel matrix).
Everything is float64 numpy/LAPACK, nothing to compile; the BLAS/LAPACK calls release the
GIL (:mod:`experiments._lapack`), so units on threads share the cores and one unit can
spread its cells over idle ones (``threads``) with the same bits. Ridgeless systems that are
numerically singular or ill-conditioned (condition number above 1e8) are solved from the
features by SVD least squares (minimum norm) for that cell.
"""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import scipy.linalg

from ._lapack import potrf_lower, syrk_lower, trsm_lower


def _chol(A: np.ndarray, scale: float):
    """Lower Cholesky factor of ``A`` (Fortran order; only its lower triangle is read, and it is
    overwritten), or None if it is not numerically PD."""
    if not A.flags.f_contiguous:
        raise ValueError("internal: _chol needs a Fortran-ordered matrix (its lower triangle is read)")
    info = potrf_lower(A)
    if info != 0 or not np.all(np.diag(A) > 1e-7 * np.sqrt(scale)):
        return None
    return A


def _ill_conditioned(L: np.ndarray) -> bool:
    """Whether the matrix factored as ``L L^T`` has condition number above 1e8 (by the lower
    bound ``(max L_ii / min L_ii)^2``): ridgeless normal equations or kernels would lose more
    than half the digits, so the cell is solved from the features instead."""
    diag = np.diag(L)
    return bool((np.max(diag) / np.min(diag)) ** 2 > 1e8)


def _lstsq_cell(F_tr, Y_tr, d: int, p: int, ridge: float) -> np.ndarray:
    """A cell's weights from an SVD least-squares solve on its features, for systems a Cholesky
    factor cannot take: the minimum-norm solution when ridgeless (singular values below
    ``eps max(rows, cols)`` of the largest count as zero, numpy's rule: SciPy's default keeps
    rounding noise and its weights blow up on rank-deficient features), else the ridge
    problem as least squares of ``[F; sqrt(ridge p) I]``."""
    A, b = F_tr[:d, :p], Y_tr[:d]
    if ridge > 0:
        A = np.vstack([A, np.sqrt(ridge * p) * np.eye(p)])
        b = np.vstack([b, np.zeros((p, b.shape[1]))])
    return scipy.linalg.lstsq(A, b, cond=np.finfo(np.float64).eps * max(A.shape), lapack_driver="gelsd")[0]


def _trsolve(L, b, trans: int):
    """``L^{-1} b`` (``trans=0``) or ``L^{-T} b`` (``trans=1``); ``L`` comes from :func:`_chol`,
    whose diagonal is checked, so the solve cannot divide by zero."""
    x = np.array(b, dtype=np.float64, order="F")
    trsm_lower(L, x, transpose=bool(trans))
    return x


def rf_grid(F_train, Y_train, F_test, Y_test, D, P, *, ridge: float = 0.0, risk=None, threads: int = 1) -> dict:
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
    threads : int
        Above 1, cells are tasks on a pool of that many threads (the dual cells one task, each
        primal cell's factor and solve one, each ``p``'s evaluation one) while this thread
        grows the normal equations; the numbers are identical to ``threads=1``.

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
    F_tr = np.ascontiguousarray(F_train, dtype=np.float64)  # rows contiguous: BLAS reads slices in place
    Y_tr = np.ascontiguousarray(Y_train, dtype=np.float64)
    F_te = np.ascontiguousarray(F_test, dtype=np.float64)
    Y_te = np.ascontiguousarray(Y_test, dtype=np.float64)
    with _Tasks(threads) as tasks:
        dual = tasks.submit(_dual_cells, F_tr, Y_tr, D, P, ridge)
        primal = _primal_cells(F_tr, Y_tr, D, P, ridge, tasks)
        weights, exact_train = dual.result()
        for cell in primal:
            i, j, theta, train_mse = cell.result()
            weights[i, j] = theta
            if train_mse is not None:
                exact_train[i, j] = train_mse
        return _evaluate(F_tr, Y_tr, F_te, Y_te, D, P, weights, exact_train, risk, tasks)


class _Tasks:
    """Runs functions inline (``threads=1``) or on a pool of threads, returning futures.

    The engine's calls into BLAS/LAPACK (:mod:`experiments._lapack`) and numpy release the
    GIL, so tasks share the cores; every task computes the same numbers wherever it runs.
    """

    def __init__(self, threads: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(int(threads)) if threads > 1 else None
        # at most two queued tasks per thread: tasks own copies of large matrices, and a
        # producer that ran ahead of the workers would hold every cell's copy at once
        self.slots = threading.BoundedSemaphore(2 * int(threads)) if threads > 1 else None

    def submit(self, fn, *args) -> concurrent.futures.Future:
        if self.pool is not None:
            self.slots.acquire()
            try:
                future = self.pool.submit(fn, *args)
            except BaseException:
                self.slots.release()
                raise
            future.add_done_callback(lambda _: self.slots.release())
            return future
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - re-raised by future.result(), as on a pool
            future.set_exception(exc)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _dual_cells(F_tr, Y_tr, D, P, ridge):
    """Cells ``d < p``: weights and exact train MSEs, keyed by ``(i, j)``."""
    weights, exact_train = {}, {}
    # kernels grown over feature blocks, one factor per p
    dual_rows = D[D < P[-1]]
    m_all = int(dual_rows.max()) if dual_rows.size else 0
    if m_all:
        K = np.zeros((m_all, m_all), order="F")  # lower triangle, grown in place by BLAS syrk
        prev = 0
        for j, p in enumerate(P):
            syrk_lower(K, F_tr[:m_all, prev:p], over_rows=False)  # K += F F^T over the new features
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
                if L is None or (ridge == 0 and _ill_conditioned(L[:d, :d])):
                    weights[i, j] = _lstsq_cell(F_tr, Y_tr, d, int(p), ridge)
                    continue
                alpha = _trsolve(L[:d, :d], z[:d], 1)
                exact_train[i, j] = np.sum((ridge * alpha) ** 2) / d  # y - K alpha = ridge alpha
                weights[i, j] = F_tr[:d, :p].T @ alpha / p  # the primal weights: no test-kernel matrix
    return weights, exact_train


def _primal_cells(F_tr, Y_tr, D, P, ridge, tasks) -> list:
    """Cells ``d >= p``: futures of ``(i, j, theta, train MSE or None)``. This thread grows
    the normal equations over row blocks; each cell's factor and solve is a task."""
    out = []
    c = Y_tr.shape[1]
    primal_cols = P[P <= D[-1]]
    q = int(primal_cols.max()) if primal_cols.size else 0
    if q:
        G = np.zeros((q, q), order="F")  # lower triangle, grown in place by BLAS syrk
        R = np.zeros((q, c))
        yy = 0.0  # y^T y over the first d rows
        prev = 0
        for i, d in enumerate(D):
            blk = F_tr[prev:d, :q]
            syrk_lower(G, blk, over_rows=True)  # G += F^T F over the new rows
            R += blk.T @ Y_tr[prev:d]
            yy += float(np.sum(Y_tr[prev:d] ** 2))
            prev = d
            for j in np.nonzero(P <= d)[0]:
                p = int(P[j])
                A = G[:p, :p].copy(order="F")  # the task's own copy: G grows on
                scale = float(np.max(np.diag(A))) + ridge * p
                A[np.diag_indices(p)] += ridge * p
                out.append(tasks.submit(_primal_cell, A, R[:p].copy(), yy, scale, ridge, int(i), int(j), F_tr, Y_tr, int(d)))
    return out


def _primal_cell(A, R, yy, scale, ridge, i, j, F_tr, Y_tr, d):
    """One primal cell from its (ridged) normal equations ``A theta = R``."""
    p = A.shape[0]
    trace = float(np.trace(A))
    L = _chol(A, scale)
    if L is None or (ridge == 0 and _ill_conditioned(L)):
        return i, j, _lstsq_cell(F_tr, Y_tr, d, p, ridge), None
    theta = _trsolve(L, _trsolve(L, R, 0), 1)
    # Train SSE without the d x p residual: (G + ridge p I) theta = R gives
    # |y - F theta|^2 = y^T y - theta^T R - ridge p |theta|^2. Its error beyond the direct
    # residual's is theta^T E theta (E: the solve's backward error, |E| <= p eps tr(A)) plus
    # cancellation; used only where that bound is below 1e-11 of the value.
    tR, tt = float(np.sum(theta * R)), float(np.sum(theta * theta))
    sse = yy - tR - ridge * p * tt
    bound = np.finfo(np.float64).eps * (p * trace * tt + 4.0 * (yy + abs(tR) + ridge * p * tt))
    return i, j, theta, (sse / d if sse > 0 and bound <= 1e-11 * sse else None)


def _evaluate(F_tr, Y_tr, F_te, Y_te, D, P, weights, exact_train, risk, tasks):
    """Test MSE/accuracy (or the exact risk) and train MSE of every cell's weights."""
    test = np.full((D.size, P.size), np.nan)
    train = np.full_like(test, np.nan)
    acc = np.full_like(test, np.nan)
    labels_te = np.argmax(Y_te, axis=1) if Y_tr.shape[1] > 1 and risk is None else None
    columns = []
    for j, p in enumerate(P):
        cells = [i for i in range(D.size) if (i, j) in weights]
        if cells:
            thetas = [weights[i, j] for i in cells]
            known = [exact_train.get((i, j)) for i in cells]
            columns.append((j, cells, tasks.submit(_evaluate_p, F_tr, Y_tr, F_te, Y_te, D[cells], int(p), thetas,
                                                   known, labels_te, risk is None)))
    for j, cells, future in columns:
        train[cells, j], test[cells, j], acc[cells, j] = future.result()
        if risk is not None:  # the exact risk, in this thread (it may collect weights for a batch)
            for i in cells:
                test[i, j] = risk(i, j, int(P[j]), weights[i, j])
    return {"test_mse": test, "train_mse": train, "test_accuracy": acc}


def _evaluate_p(F_tr, Y_tr, F_te, Y_te, Ds, p, thetas, known, labels_te, on_test_set):
    """Train MSE, test MSE and accuracy of the cells of one ``p`` (weights ``thetas``); every
    cell's weights go through the test features in one product."""
    c = Y_tr.shape[1]
    train = np.array([np.nan if k is None else k for k in known])
    test = np.full(len(thetas), np.nan)
    acc = np.full(len(thetas), np.nan)
    direct = [k for k, v in enumerate(known) if v is None]
    if direct:  # train residuals where no exact shortcut applies
        fit_tr = F_tr[:int(Ds[direct[-1]]), :p] @ np.concatenate([thetas[k] for k in direct], axis=1)
        for n, k in enumerate(direct):
            d = int(Ds[k])
            train[k] = np.sum((fit_tr[:d, n * c:(n + 1) * c] - Y_tr[:d]) ** 2) / d
    if on_test_set:
        pred = (F_te[:, :p] @ np.concatenate(thetas, axis=1)).reshape(F_te.shape[0], len(thetas), c)
        err = pred - Y_te[:, None, :]
        test = np.einsum("nkc,nkc->k", err, err) / Y_te.shape[0]
        if labels_te is not None:
            acc = np.mean(np.argmax(pred, axis=2) == labels_te[:, None], axis=0)
    return train, test, acc
