"""The GIL-free BLAS/LAPACK calls of the random-feature engine against numpy/scipy, and the
engine's thread pool against its single-threaded self (same bits)."""

import sys
import threading

import numpy as np
import pytest
import scipy.linalg

from experiments import _lapack
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
    with pytest.raises(ValueError, match="column-major"):
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
