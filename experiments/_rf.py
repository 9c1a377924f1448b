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
numerically singular or ill-conditioned (condition number above 1e8, LAPACK's estimate) are
solved from the features by SVD least squares (minimum norm) for that cell.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading

import numpy as np
import scipy.linalg

from ._lapack import copy_lower, pocon_lower, potrf_lower, sym_norm1_lower, syrk_lower, trsm_lower

# Buffers of finished units, reused by the next ones: a fresh array of megabytes is paid in
# page faults on first touch (about a tenth of a large unit on a VM), a reused one is not.
# At most this many bytes are kept idle; larger buffers are simply freed.
_POOL_BYTES = 128 * 2**20
_pool: list[np.ndarray] = []
_pool_lock = threading.Lock()


class Workspace:
    """Float64 scratch arrays for one unit, taken from (and on exit given back to) a pool
    that outlives the unit. Arrays from a workspace must not outlive it: results are
    always fresh arrays.

    Examples
    --------
    >>> from experiments._rf import Workspace
    >>> with Workspace() as ws:
    ...     a = ws.empty((3, 2), order="F")
    >>> a.shape, a.flags.f_contiguous
    ((3, 2), True)
    """

    def __init__(self):
        self._held: list[np.ndarray] = []

    def empty(self, shape, order: str = "C") -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64))
        with _pool_lock:
            fits = [k for k, b in enumerate(_pool) if b.size >= n]
            buf = _pool.pop(min(fits, key=lambda k: _pool[k].size)) if fits else None
        if buf is None:
            buf = np.empty(max(n, 1))
        self._held.append(buf)
        return buf[:n].reshape(shape, order=order)

    def zeros(self, shape, order: str = "C") -> np.ndarray:
        a = self.empty(shape, order)
        a.fill(0.0)
        return a

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with _pool_lock:
            _pool.extend(self._held)
            _pool.sort(key=lambda b: b.size)
            while sum(b.nbytes for b in _pool) > _POOL_BYTES:
                _pool.pop()  # the largest
        self._held.clear()


def _chol(A: np.ndarray, scale: float):
    """Lower Cholesky factor of ``A`` (Fortran order; only its lower triangle is read, and it is
    overwritten), or None if it is not numerically PD."""
    if A.strides[0] != A.itemsize:
        raise ValueError("internal: _chol needs a column-major matrix (its lower triangle is read)")
    info = potrf_lower(A)
    if info != 0 or not _numerically_pd(np.diag(A), scale):
        return None
    return A


def _numerically_pd(diag, scale):
    """Whether Cholesky factors with diagonals ``diag (..., n)`` are usable: every ``L_ii``
    above ``1e-7 sqrt(scale)``, ``scale (...)`` the factored matrix's largest diagonal entry."""
    return np.all(diag > 1e-7 * np.sqrt(np.asarray(scale))[..., None], axis=-1)


def _ill_conditioned(diag, rcond):
    """Whether matrices factored as ``L L^T``, ``L``'s diagonals ``diag (..., n)``, have condition
    number above 1e8: ridgeless normal equations or kernels would lose more than half the
    digits, so the cell is solved from the features instead (so is an estimate that is not a
    number). The estimate is the larger of the lower bound ``(max L_ii / min L_ii)^2`` and
    ``1 / rcond``, LAPACK's 1-norm estimate from the factor (:func:`_rcond`): the diagonal
    bound alone can be a hundred times too small."""
    return ~(((np.max(diag, axis=-1) / np.min(diag, axis=-1)) ** 2 <= 1e8) & (np.asarray(rcond) >= 1e-8))


def _lstsq_cell(F_tr, Y_tr, d: int, p: int, ridge: float) -> np.ndarray:
    """A cell's weights from an SVD least-squares solve on its features, for systems a Cholesky
    factor cannot take: the minimum-norm solution when ridgeless (singular values below
    ``eps max(rows, cols)`` of the largest count as zero, numpy's rule: SciPy's default keeps
    rounding noise and its weights blow up on rank-deficient features), else the ridge
    problem as least squares of ``[F; sqrt(ridge p) I]``. Always by SVD (``gelsd``), also for
    cells whose factor exists: that factor does not prove full rank, and QR with pivoting
    (``gelsy``, twice as fast) decides the rank near the cutoff differently (a review found
    weights 2e10 times the minimum-norm ones)."""
    A, b = F_tr[:d, :p], Y_tr[:d]
    if ridge > 0:
        A = np.vstack([A, np.sqrt(ridge * p) * np.eye(p)])
        b = np.vstack([b, np.zeros((p, b.shape[1]))])
    return scipy.linalg.lstsq(A, b, cond=np.finfo(np.float64).eps * max(A.shape), lapack_driver="gelsd")[0]


def _rcond(L, norm: float) -> float:
    """LAPACK's reciprocal condition estimate of ``L L^T`` given its 1-norm; 0 (ill-conditioned:
    least squares) when that norm is not finite (entries near overflow)."""
    return pocon_lower(L, norm) if np.isfinite(norm) else 0.0


def _forward_solve(L, b):
    """``L^{-1} b`` in a new column-major array; ``L`` comes from :func:`_chol`, whose diagonal
    is checked, so the solve cannot divide by zero."""
    x = np.array(b, dtype=np.float64, order="F")
    trsm_lower(L, x, transpose=False)
    return x


def rf_grid(F_train, Y_train, F_test, Y_test, D, P, *, ridge: float = 0.0, risk=None, threads: int = 1,
            workspace: Workspace | None = None) -> dict:
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
    workspace : Workspace, optional
        Where the large scratch matrices come from (the caller's, if it has one open).

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
    # the workspace is entered first, so it is given back only after the pool's tasks are done
    with (Workspace() if workspace is None else contextlib.nullcontext(workspace)) as ws, _Tasks(threads) as tasks:
        dual = tasks.submit(_dual_cells, F_tr, Y_tr, D, P, ridge, ws)
        primal = _primal_cells(F_tr, Y_tr, D, P, ridge, tasks, ws)
        weights, exact_train = dual.result()
        for cells in primal:
            for i, j, theta, train_mse in cells.result():
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


def _dual_cells(F_tr, Y_tr, D, P, ridge, ws):
    """Cells ``d < p``: weights and exact train MSEs, keyed by ``(i, j)``."""
    weights, exact_train = {}, {}
    c = Y_tr.shape[1]
    # kernels grown over feature blocks, one factor per p
    dual_rows = D[D < P[-1]]
    m_all = int(dual_rows.max()) if dual_rows.size else 0
    if m_all:
        K = ws.zeros((m_all, m_all), order="F")  # lower triangle, grown in place by BLAS syrk
        block = ws.empty((m_all, m_all), order="F")  # each p's ridged kernel, then its factor
        prev = 0
        for j, p in enumerate(P):
            syrk_lower(K, F_tr[:m_all, prev:p], over_rows=False)  # K += F F^T over the new features
            prev = p
            idx = np.nonzero(D < p)[0]
            if not idx.size:
                continue
            m = int(D[idx[-1]])
            scale = float(np.max(np.diag(K)[:m])) / p + ridge
            A = np.divide(K[:m, :m], p, out=block[:m, :m])
            A[np.diag_indices(m)] += ridge
            # ridgeless: each leading block's norm, for its condition estimate after factoring
            norms = {int(D[i]): sym_norm1_lower(A[:int(D[i]), :int(D[i])]) for i in idx} if ridge == 0 else {}
            L = _chol(A, scale)
            solved = []
            for i in idx:
                d = int(D[i])
                if L is None or (ridge == 0 and _ill_conditioned(np.diag(L)[:d], _rcond(L[:d, :d], norms[d]))):
                    weights[i, j] = _lstsq_cell(F_tr, Y_tr, d, int(p), ridge)
                else:
                    solved.append((int(i), d))
            if not solved:
                continue
            # Every d in one back-substitution: L^T alpha = z with z zero below row d gives
            # alpha zero below row d and, above it, the solve with the leading d x d block
            # (the factor of K's leading block is the leading block of its factor).
            z = _forward_solve(L, Y_tr[:m])
            Z = np.zeros((m, len(solved) * c), order="F")
            for n, (i, d) in enumerate(solved):
                Z[:d, n * c:(n + 1) * c] = z[:d]
            trsm_lower(L, Z, transpose=True)
            # train residual y - K alpha = ridge alpha: exact train MSE of every d at once
            if ridge > 0:
                RZ = ridge * Z
                sq = np.einsum("ij,ij->j", RZ, RZ).reshape(len(solved), c).sum(axis=1)
            else:  # ridgeless: K alpha = y exactly (alpha may be near overflow: no 0 * inf)
                sq = np.zeros(len(solved))
            for n, (i, d) in enumerate(solved):
                exact_train[i, j] = float(sq[n]) / d
                # the primal weights: no test-kernel matrix
                weights[i, j] = F_tr[:d, :p].T @ Z[:d, n * c:(n + 1) * c] / p
    return weights, exact_train


# Primal cells with at most this many features are solved in stacks, one batched numpy call
# per p for all its d (per-cell LAPACK calls cost more in overhead than in arithmetic there).
_STACKED_P = 64


def _primal_cells(F_tr, Y_tr, D, P, ridge, tasks, ws) -> list:
    """Cells ``d >= p``: futures of lists of ``(i, j, theta, train MSE or None)``. This thread
    grows the normal equations over row blocks; each large cell's factor and solve is a task,
    the small cells (``p <= _STACKED_P``) one task of stacked solves."""
    out = []
    c = Y_tr.shape[1]
    primal_cols = P[P <= D[-1]]
    q = int(primal_cols.max()) if primal_cols.size else 0
    if q:
        G = ws.zeros((q, q), order="F")  # lower triangle, grown in place by BLAS syrk
        R = np.zeros((q, c))
        # one reusable block for the cells factored in this thread (no fresh pages per cell)
        work = ws.empty((q, q), order="F") if tasks.pool is None else None
        small = []  # (i, d, G's small leading block, R's, y^T y) at each d with small cells
        yy = 0.0  # y^T y over the first d rows
        prev = 0
        for i, d in enumerate(D):
            blk = F_tr[prev:d, :q]
            syrk_lower(G, blk, over_rows=True)  # G += F^T F over the new rows
            R += blk.T @ Y_tr[prev:d]
            yy += float(np.sum(Y_tr[prev:d] ** 2))
            prev = d
            cols = np.nonzero(P <= d)[0]
            s = int(max((P[j] for j in cols if P[j] <= _STACKED_P), default=0))
            if s:
                small.append((int(i), int(d), G[:s, :s].copy(), R[:s].copy(), yy))
            for j in cols:
                p = int(P[j])
                if p <= _STACKED_P:
                    continue
                if work is not None:
                    A = work[:p, :p]
                    copy_lower(G[:p, :p], A)  # all the factorisation reads
                else:
                    A = G[:p, :p].copy(order="F")  # the task's own copy: G grows on
                scale = float(np.max(np.diag(A))) + ridge * p
                A[np.diag_indices(p)] += ridge * p
                out.append(tasks.submit(_primal_cell, A, R[:p].copy(), yy, scale, ridge, int(i), int(j), F_tr, Y_tr,
                                        int(d)))
        if small:
            out.append(tasks.submit(_stacked_primal_cells, small, P, ridge, F_tr, Y_tr))
    return out


def _primal_cell(A, R, yy, scale, ridge, i, j, F_tr, Y_tr, d):
    """One primal cell from its (ridged) normal equations ``A theta = R``."""
    p = A.shape[0]
    trace = float(np.trace(A))
    norm = sym_norm1_lower(A) if ridge == 0 else None
    L = _chol(A, scale)
    if L is None or (ridge == 0 and _ill_conditioned(np.diag(L), _rcond(L, norm))):
        return [(i, j, _lstsq_cell(F_tr, Y_tr, d, p, ridge), None)]
    theta = _forward_solve(L, R)
    trsm_lower(L, theta, transpose=True)
    return [(i, j, theta, _exact_train_mse(theta, R, yy, trace, ridge * p, d))]


def _exact_train_mse(theta, R, yy, trace, shift, d):
    """Train MSE without the d x p residual: ``(G + shift I) theta = R`` gives
    ``|y - F theta|^2 = y^T y - theta^T R - shift |theta|^2``. Its error beyond the direct
    residual's is ``theta^T E theta`` (E: the solve's backward error, ``|E| <= p eps tr(A)``)
    plus cancellation; used only where that bound is below 1e-11 of the value (else None:
    the direct residual is computed)."""
    p = theta.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):  # huge ridgeless weights: no shortcut
        tR, tt = float(np.sum(theta * R)), float(np.sum(theta * theta))
        sse = yy - tR - shift * tt
        bound = np.finfo(np.float64).eps * (p * trace * tt + 4.0 * (yy + abs(tR) + shift * tt))
    return sse / d if np.isfinite(bound) and sse > 0 and bound <= 1e-11 * sse else None


def _stacked_primal_cells(small, P, ridge, F_tr, Y_tr):
    """Every small primal cell, one stack per ``p``: batched Cholesky factors (the check
    that each is numerically positive definite) and batched solves; a cell whose factor
    fails the check goes through :func:`_primal_cell` (least squares if need be)."""
    out = []
    for j, p in enumerate(P):
        p = int(p)
        cells = [cell for cell in small if cell[1] >= p]
        if p > _STACKED_P or not cells:
            continue
        A = np.stack([g[:p, :p] for _, _, g, _, _ in cells])  # lower triangles: all Cholesky reads
        diag = np.einsum("kii->ki", A)
        diag += ridge * p
        scale = np.max(diag, axis=1)
        rhs = np.stack([r[:p] for _, _, _, r, _ in cells])
        try:
            L = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            L = None
        if L is not None:
            Ld = np.einsum("kii->ki", L)
            good = _numerically_pd(Ld, scale)
            if ridge == 0:
                rcond = [_rcond(np.asfortranarray(L[k]), sym_norm1_lower(A[k])) if good[k] else 0.0
                         for k in range(len(cells))]
                good &= ~_ill_conditioned(Ld, rcond)
        else:
            good = np.zeros(len(cells), dtype=bool)
        if good.any():
            # two triangular solves with the factor (LU of a triangular matrix: numpy has no
            # batched trsm), not a solve with A: A's entries are squares of the features' and
            # may be subnormal where the factor's are not
            Lg = L[good]
            theta = np.linalg.solve(Lg.transpose(0, 2, 1), np.linalg.solve(Lg, rhs[good]))
            trace = np.trace(A[good], axis1=1, axis2=2)
            for n, k in enumerate(np.nonzero(good)[0]):
                i, d, _, r, yy = cells[k]
                out.append((i, j, theta[n], _exact_train_mse(theta[n], r[:p], yy, float(trace[n]), ridge * p, d)))
        for k in np.nonzero(~good)[0]:
            i, d, _, r, yy = cells[k]
            out.extend(_primal_cell(np.asfortranarray(A[k]), r[:p].copy(), yy, float(scale[k]), ridge, i, j, F_tr,
                                    Y_tr, d))
    return out


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
    for k in direct:  # train residuals where no exact shortcut applies, each on its own d rows
        d = int(Ds[k])
        residual = F_tr[:d, :p] @ thetas[k]
        residual -= Y_tr[:d]
        train[k] = np.einsum("ij,ij->", residual, residual) / d
    if on_test_set:
        pred = (F_te[:, :p] @ np.concatenate(thetas, axis=1)).reshape(F_te.shape[0], len(thetas), c)
        err = pred - Y_te[:, None, :]
        test = np.einsum("nkc,nkc->k", err, err) / Y_te.shape[0]
        if labels_te is not None:
            acc = np.mean(np.argmax(pred, axis=2) == labels_te[:, None], axis=0)
    return train, test, acc
