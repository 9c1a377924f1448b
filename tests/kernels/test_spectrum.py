import warnings

import numpy as np
import pytest
import scipy.sparse.linalg

import kernels


def kernel_with_spectrum(rng, n, eigenvalues):
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.zeros(n)
    lam[: eigenvalues.size] = eigenvalues
    return n * (U * lam) @ U.T, U


def test_exact_spectrum_is_recovered(rng):
    lam = np.arange(1, 301) ** -1.7
    K, U = kernel_with_spectrum(rng, 300, lam)
    s = kernels.spectrum(K)
    np.testing.assert_allclose(s.eigenvalues, lam, rtol=1e-8, atol=1e-12)
    assert s.method == "eigh" and s.eigenvalues.dtype == np.float64


def test_target_coefficients_are_recovered(rng):
    n = 200
    lam = np.arange(1, n + 1) ** -1.5
    K, U = kernel_with_spectrum(rng, n, lam)
    v = rng.standard_normal(n) * lam**0.5
    y = np.sqrt(n) * U @ v  # y = sum_i v_i phi_i with phi_i = sqrt(n) u_i
    s = kernels.spectrum(K, y=y)
    np.testing.assert_allclose(np.abs(s.coefficients), np.abs(v), rtol=1e-6, atol=1e-9)
    assert np.sum(s.coefficients**2) == pytest.approx(np.mean(y**2))


@pytest.mark.parametrize("method, kwargs, rtol", [
    ("lanczos", {}, 1e-10),
    # Subspace iteration: error ~ (lambda_81 / lambda_40)^(2 n_iter + 1) = 8e-5 at 4 steps.
    ("randomized", {}, 1e-4),
    ("randomized", {"n_iter": 12}, 1e-9),
])
def test_top_k_solvers_agree_with_eigh(rng, method, kwargs, rtol):
    lam = np.arange(1, 601) ** -1.5
    K, _ = kernel_with_spectrum(rng, 600, lam)
    exact = kernels.spectrum(K).eigenvalues[:40]
    top = kernels.spectrum(K, 40, method=method, **kwargs).eigenvalues
    np.testing.assert_allclose(top, exact, rtol=rtol)


def test_top_k_from_a_matrix_on_disk_and_from_a_linear_operator(rng, tmp_path):
    import zarr

    lam = np.arange(1, 401) ** -2.0
    K, _ = kernel_with_spectrum(rng, 400, lam)
    z = zarr.open_array(str(tmp_path / "K.zarr"), mode="w", shape=K.shape, chunks=(100, 400), dtype="f8")
    z[:] = K
    from_disk = kernels.spectrum(z, 20, method="randomized", block_rows=64, n_iter=10).eigenvalues
    op = scipy.sparse.linalg.aslinearoperator(K)
    from_op = kernels.spectrum(op, 20, method="randomized", n_iter=10).eigenvalues
    np.testing.assert_allclose(from_disk, lam[:20], rtol=1e-8)
    np.testing.assert_allclose(from_op, lam[:20], rtol=1e-8)


def test_mixed_precision_products_keep_leading_eigenvalues(rng):
    lam = np.arange(1, 601) ** -1.5
    K, _ = kernel_with_spectrum(rng, 600, lam)
    top = kernels.spectrum(K, 40, method="randomized", product_dtype=np.float32).eigenvalues
    np.testing.assert_allclose(top, lam[:40], rtol=1e-4)


def test_spectrum_errors(rng):
    K = rng.standard_normal((5, 5))
    with pytest.raises(ValueError, match="not symmetric"):
        kernels.spectrum(K)
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        kernels.spectrum(K + K.T, method="svd")
    with pytest.raises(ValueError, match="pass k"):
        kernels.spectrum(K + K.T, method="randomized")
    with pytest.raises(ValueError, match="must be square"):
        kernels.spectrum(np.ones((3, 4)))
    bad = K + K.T
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        kernels.spectrum(bad)


def test_spectral_exponent_of_an_exact_power_law():
    res = kernels.spectral_exponent(np.arange(1, 3001) ** -1.35)
    assert res.alpha == pytest.approx(0.35, abs=1e-9)
    assert res.ci[0] <= 0.35 <= res.ci[1]


def test_automatic_range_skips_the_numerical_floor_and_the_head():
    lam = np.arange(1, 2001, dtype=float) ** -1.4
    lam[:2] *= 5.0  # a few large leading eigenvalues (e.g. the constant mode)
    lam[1500:] = 1e-17  # rounding floor of a finite matrix
    res = kernels.spectral_exponent(lam)
    assert res.alpha == pytest.approx(0.4, abs=0.01)
    assert res.index_range[0] >= 3 and res.index_range[1] <= 1500
    assert "local exponent" in res.note


def test_a_drifting_spectrum_reports_a_wide_interval():
    i = np.arange(1, 5001, dtype=float)
    lam = i**-1.2 * (1 + i / 100) ** -0.6  # exponent drifts from 0.2 to 0.8
    res = kernels.spectral_exponent(lam, index_range=(3, 5000))
    assert res.ci[1] - res.ci[0] > 0.3


def test_short_ranges_warn():
    with pytest.warns(RuntimeWarning, match="only 0.5"):
        kernels.spectral_exponent(np.arange(1, 100) ** -1.5, index_range=(10, 32))


def test_target_exponent():
    # A long sequence: truncating the tail sum at N steepens it near N (by ~(i/N)^0.6).
    v = np.sqrt(np.arange(1, 1_000_001, dtype=float) ** -1.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = kernels.target_exponent(v, index_range=(10, 1000))
    assert res.alpha == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize("method", ["eigh", "randomized", "lanczos"])
def test_every_method_validates_the_matrix_like_eigh(method, rng):
    K, _ = kernel_with_spectrum(rng, 60, np.arange(1, 61) ** -1.5)
    asym = K.copy()
    asym[0, 5] += 0.1 * np.abs(K).max()
    with pytest.raises(ValueError, match="K is not symmetric"):
        kernels.spectrum(asym, 5, method=method)
    bad = K.copy()
    bad[3, 4] = bad[4, 3] = np.nan
    with pytest.raises(ValueError, match=r"K contains 2 non-finite values \(first at \(3, 4\)\)"):
        kernels.spectrum(bad, 5, method=method)
    # an indefinite symmetric matrix (eigenvalues of both signs) is not a kernel matrix
    indefinite, _ = kernel_with_spectrum(rng, 60, np.r_[np.arange(1, 31) ** -1.0, -np.arange(1, 31) ** -1.0])
    with pytest.warns(RuntimeWarning, match="not positive semi-definite"):
        kernels.spectrum(indefinite, 5, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.spectrum(K, 5, method=method)  # a PSD matrix (with rounding-level negatives) stays quiet


def test_operators_are_validated_by_a_probe(rng):
    K, _ = kernel_with_spectrum(rng, 50, np.arange(1, 51) ** -2.0)
    A = K + np.triu(np.full_like(K, 0.01 * np.abs(K).max()), 1)
    op = scipy.sparse.linalg.aslinearoperator(A)
    with pytest.raises(ValueError, match="K is not symmetric"):
        kernels.spectrum(op, 4, method="randomized")
    nan_op = scipy.sparse.linalg.LinearOperator(K.shape, matvec=lambda v: np.full(50, np.nan), dtype=np.float64)
    with pytest.raises(ValueError, match="non-finite"):
        kernels.spectrum(nan_op, 4, method="lanczos")


@pytest.mark.parametrize("values", [np.ones(200), np.arange(1, 201) ** 0.5, np.full(50, 3.0)])
def test_flat_or_increasing_spectra_have_no_exponent(values):
    with pytest.raises(ValueError, match="do not decay"):
        kernels.spectral_exponent(values)
    with pytest.raises(ValueError, match="do not decay"):
        kernels.spectral_exponent(values, index_range=(2, values.size))
