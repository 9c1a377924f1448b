"""The GIL-free BLAS/LAPACK calls of the random-feature engine against numpy/scipy, and the
engine's thread pool against its single-threaded self (same bits)."""

import sys
import threading
import time

import numpy as np
import pytest
import scipy.linalg

from experiments import _lapack
from experiments import _rf
from experiments._rf import rf_grid


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("over_rows", [True, False])
def test_syrk_on_views_matches_numpy(rng, order, over_rows):
    big = np.asarray(rng.standard_normal((37, 29)), order=order)
    A = big[3:30, 2:25]  # a view: neither contiguous nor starting at the buffer's start
    n = A.shape[1] if over_rows else A.shape[0]
    C0 = np.asfortranarray(rng.standard_normal((n, n)))
    C = C0.copy(order="F")
    _lapack.syrk_lower(C, A, over_rows=over_rows, alpha=0.5, beta=2.0)
    expected = 2.0 * C0 + 0.5 * (A.T @ A if over_rows else A @ A.T)
    np.testing.assert_allclose(np.tril(C), np.tril(expected), rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(np.triu(C, 1), np.triu(C0, 1))  # upper triangle untouched


def test_potrf_and_trsm_on_leading_blocks_match_scipy(rng):
    X = rng.standard_normal((60, 40))
    big = np.asfortranarray(X.T @ X + np.eye(40))
    A = big[:25, :25]  # leading block, leading dimension 40
    expected = scipy.linalg.cholesky(big[:25, :25].copy(), lower=True)
    assert _lapack.potrf_lower(A) == 0
    np.testing.assert_allclose(np.tril(A), expected, rtol=1e-12, atol=1e-14)
    for transpose in (False, True):
        B = np.asfortranarray(rng.standard_normal((25, 3)))
        want = scipy.linalg.solve_triangular(expected, B, lower=True, trans=1 if transpose else 0)
        _lapack.trsm_lower(A, B, transpose=transpose)
        np.testing.assert_allclose(B, want, rtol=1e-10)


def test_potrf_reports_a_matrix_that_is_not_positive_definite():
    A = np.asfortranarray(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert _lapack.potrf_lower(A) == 2


def test_outputs_must_be_column_major_float64(rng):
    with pytest.raises(ValueError, match="contiguous columns"):
        _lapack.syrk_lower(np.zeros((3, 3)), rng.standard_normal((4, 3)), over_rows=True)  # C order
    with pytest.raises(TypeError, match="float64"):
        _lapack.potrf_lower(np.eye(3, dtype=np.float32, order="F"))


def test_calls_release_the_gil():
    """While a factorisation runs, another Python thread runs. With a long switch interval the
    spinning thread gets the GIL only if the call gives it up (SciPy's f2py ``dpotrf`` holds
    it for the whole call: the counter stays where it was)."""
    n = 1200
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n + 10, n))
    A = np.asfortranarray(X.T @ X)
    counter, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.25)
    t = threading.Thread(target=spin)
    try:
        t.start()
        before = counter[0]
        assert _lapack.potrf_lower(A) == 0
        moved = counter[0] - before
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert moved > 0


@pytest.mark.parametrize("ridge", [1e-3, 0.0])
def test_rf_grid_is_bitwise_the_same_on_any_number_of_threads(rng, ridge):
    X = rng.standard_normal((330, 6))
    F = np.sqrt(2.0) * np.maximum(X @ rng.standard_normal((6, 120)) / np.sqrt(6), 0)
    Y = np.eye(3)[rng.integers(0, 3, 330)] - 1 / 3
    D, P = [10, 30, 90, 250], [8, 30, 60, 120]
    one = rf_grid(F[:250], Y[:250], F[250:], Y[250:], D, P, ridge=ridge, threads=1)
    for threads in (2, 3):
        other = rf_grid(F[:250], Y[:250], F[250:], Y[250:], D, P, ridge=ridge, threads=threads)
        for name in one:
            np.testing.assert_array_equal(other[name], one[name])


def test_syrk_with_no_inner_dimension_scales_only_the_lower_triangle():
    C0 = np.asfortranarray(np.arange(9.0).reshape(3, 3))
    C = C0.copy(order="F")
    _lapack.syrk_lower(C, np.zeros((0, 3)), over_rows=True, beta=2.0)
    np.testing.assert_array_equal(np.tril(C), 2.0 * np.tril(C0))
    np.testing.assert_array_equal(np.triu(C, 1), np.triu(C0, 1))
    C[:] = np.nan
    _lapack.syrk_lower(C, np.zeros((3, 0)), over_rows=False, beta=0.0)  # BLAS: beta = 0 writes zeros
    assert not np.tril(C).any()


def test_ridgeless_cells_on_rank_deficient_features_are_minimum_norm():
    """Ridgeless cells on rank-deficient features (linear features of digits: 7 of the 64
    pixels are constant, so rank 57) are the minimum-norm least-squares solution, as numpy's
    lstsq gives it. SciPy's default cutoff kept rounding-noise singular values: test MSEs of
    4e21 on this grid."""
    from sklearn.datasets import load_digits

    X, labels = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(X))
    F = X[perm] @ rng.standard_normal((64, 256)) / 8
    Y = np.eye(10)[labels[perm]] - 0.1
    D, P = [20, 50, 120, 300], [16, 64, 256]
    out = rf_grid(F[:300], Y[:300], F[300:500], Y[300:500], D, P, ridge=0.0)
    for i, d in enumerate(D):
        for j, p in enumerate(P):
            theta = np.linalg.lstsq(F[:d, :p], Y[:d], rcond=None)[0]
            test = np.mean(np.sum((F[300:500, :p] @ theta - Y[300:500]) ** 2, axis=1))
            # measured agreement 1.5e-12 (both cut singular values below eps max(d, p));
            # the 4e21 failure is 30 orders away
            np.testing.assert_allclose(out["test_mse"][i, j], test, rtol=1e-9)


def test_threads_hold_a_bounded_number_of_matrix_copies(rng):
    """Each primal cell's task owns a copy of its p x p block; the producer may run at most two
    tasks per thread ahead of the workers (it used to queue every cell's copy: 18x the memory)."""
    import tracemalloc

    from threadpoolctl import threadpool_limits

    X = rng.standard_normal((1400, 12))
    F = np.maximum(X @ rng.standard_normal((12, 400)), 0)
    Y = rng.standard_normal((1400, 2))
    D, P = list(range(450, 1201, 50)), list(range(25, 401, 25))
    peaks = {}
    with threadpool_limits(1, user_api="blas"):
        for threads in (1, 2):
            with _rf._pool_lock:  # both runs make their scratch matrices afresh (none from the pool)
                _rf._pool.clear()
            tracemalloc.start()
            rf_grid(F[:1200], Y[:1200], F[1200:], Y[1200:], D, P, ridge=1e-3, threads=threads)
            peaks[threads] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    block = 400 * 400 * 8  # the largest copy
    # queued + running tasks (2 per thread) and one being made by the producer, each one block
    assert peaks[2] <= peaks[1] + (2 * 2 + 1) * block


def test_workspace_buffers_are_reused_and_results_do_not_alias_them(rng):
    X = rng.standard_normal((330, 6))
    F = np.sqrt(2.0) * np.maximum(X @ rng.standard_normal((6, 120)) / np.sqrt(6), 0)
    Y = np.eye(3)[rng.integers(0, 3, 330)] - 1 / 3
    D, P = [10, 30, 90, 250], [8, 30, 60, 120]
    first = rf_grid(F[:250], Y[:250], F[250:], Y[250:], D, P, ridge=1e-3)
    kept = {k: v.copy() for k, v in first.items()}
    pooled = list(_rf._pool)
    assert pooled  # the first call's scratch matrices came back to the pool
    for b in pooled:
        b.fill(np.nan)  # scribbled on: the next engine call must not read what is left in them
    with _rf.Workspace() as ws:  # and the next unit takes them instead of fresh memory
        taken = ws.empty((120, 120), order="F")
        assert any(np.shares_memory(taken, b) for b in pooled)
    second = rf_grid(F[:250], Y[:250], F[250:], Y[250:], D, P, ridge=1e-3)
    for name in first:  # same numbers again, and the first call's results were not overwritten
        np.testing.assert_array_equal(second[name], kept[name])
        np.testing.assert_array_equal(first[name], kept[name])
    with _rf.Workspace() as ws:
        ws.empty((_rf._POOL_BYTES // 8 + 1,))  # larger than the pool keeps: freed, not kept
    assert sum(b.nbytes for b in _rf._pool) <= _rf._POOL_BYTES


def test_copy_lower_copies_the_lower_triangle_of_views_only(rng):
    big = np.asfortranarray(rng.standard_normal((9, 9)))
    A = big[:6, :6]  # a leading block: leading dimension 9
    B = np.asfortranarray(np.full((8, 8), 7.0))[:6, :6]
    _lapack.copy_lower(A, B)
    np.testing.assert_array_equal(np.tril(B), np.tril(A))
    np.testing.assert_array_equal(B[np.triu_indices(6, 1)], 7.0)


def test_scratch_matrices_go_back_to_the_pool_only_after_the_engines_tasks_finish(rng, monkeypatch):
    """rf_grid with threads and its own workspace: if the calling thread fails while a task
    still runs (here: targets of the wrong length), the task's matrices must not be handed to
    other units while it writes to them."""
    syrk, in_pool = _rf.syrk_lower, []

    def slow_syrk(C, A, **kw):
        if threading.current_thread() is not threading.main_thread():  # the dual task, on the pool
            time.sleep(0.2)  # the calling thread has failed by now
            in_pool.append(any(np.shares_memory(C, b) for b in _rf._pool))
        return syrk(C, A, **kw)

    monkeypatch.setattr(_rf, "syrk_lower", slow_syrk)
    F = rng.standard_normal((400, 600))
    with pytest.raises(ValueError):
        rf_grid(F, F[:200, :1], F[:10], F[:10, :1], [50, 400], [300, 600], ridge=1e-3, threads=2)
    assert in_pool and not any(in_pool)


def test_pocon_estimates_the_condition_number_numpy_computes(rng):
    for n, spread in ((5, 1e2), (80, 1e6), (300, 1e9)):
        Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        A = (Q * np.logspace(0, -np.log10(spread), n)) @ Q.T
        A = (A + A.T) / 2
        lower = np.asfortranarray(np.tril(A) + np.triu(rng.standard_normal((n, n)), 1))  # upper: noise, unread
        norm = _lapack.sym_norm1_lower(lower)
        np.testing.assert_allclose(norm, np.linalg.norm(A, 1), rtol=1e-12)
        L = np.asfortranarray(np.linalg.cholesky(A))
        estimate = 1 / _lapack.pocon_lower(L, norm)
        exact = np.linalg.cond(A, 1)
        # LAPACK's estimator is a lower bound, rarely off by more than a factor 3 (Higham,
        # Accuracy and Stability, 15.3); the exact value itself has rounding of cond * eps
        assert exact / 3 <= estimate <= exact * (1 + 1e-6)
