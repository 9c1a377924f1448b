"""Fuzz ``kernels.spectrum`` (issue 13): any input gives a clear ValueError/TypeError, or
finite, descending eigenvalues (non-PSD input may warn, never return NaN).

Bounded: small matrices (n <= 12), few examples, every method; inputs include NaN, inf,
huge and tiny entries, asymmetric, indefinite, rank-deficient and non-numeric matrices, and
bad ``k``/``method``/``y`` arguments.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kernels

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
special = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 1e300, 1e-8])


@st.composite
def matrices(draw):
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["psd", "low_rank", "indefinite", "asymmetric", "zeros", "random"]))
    A = rng.standard_normal((n, max(1, draw(st.integers(1, n)))))
    if kind in ("psd", "low_rank"):
        K = A @ A.T
    elif kind == "indefinite":
        B = rng.standard_normal((n, n))
        K = B + B.T
    elif kind == "asymmetric":
        K = rng.standard_normal((n, n))
    elif kind == "zeros":
        K = np.zeros((n, n))
    else:
        K = rng.uniform(-1e3, 1e3, (n, n))
    K = K * draw(st.sampled_from([1.0, 1e-200, 1e200]))
    for _ in range(draw(st.integers(0, 2))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        K[i, j] = draw(special)
        if draw(st.booleans()):
            K[j, i] = K[i, j]
    shape = draw(st.sampled_from(["square", "rect", "vector", "int", "object"]))
    if shape == "rect":
        K = K[:, : max(1, n - 1)] if n > 1 else np.ones((1, 2))
    elif shape == "vector":
        K = K.ravel()
    elif shape == "int":
        K = np.round(K).astype(np.int64) if np.all(np.isfinite(K)) and np.abs(K).max(initial=0) < 1e9 else K
    elif shape == "object" and draw(st.booleans()):
        K = K.astype(object)
        K.flat[0] = "x"
    return K


@SETTINGS
@given(K=matrices(), k=st.one_of(st.none(), st.integers(-1, 14), st.just(2.5)),
       method=st.sampled_from(["auto", "eigh", "randomized", "lanczos", "svd"]),
       with_y=st.booleans())
@example(K=np.zeros((3, 3), int), k=1, method="lanczos", with_y=False)  # random run: ARPACK error -9 on K = 0
def test_spectrum_gives_a_clear_error_or_finite_descending_eigenvalues(K, k, method, with_y):
    n = np.shape(K)[0] if np.ndim(K) else 0
    y = np.linspace(-1, 1, n) if with_y and n else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the non-PSD warning is allowed
            s = kernels.spectrum(K, k, method=method, y=y)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), msg
        return
    w = s.eigenvalues
    assert w.dtype == np.float64 and np.all(np.isfinite(w)), w
    assert np.all(np.diff(w) <= 1e-12 * max(np.abs(w).max(initial=0), 1e-300)), w
    if y is not None:
        assert np.all(np.isfinite(s.coefficients))


@pytest.mark.parametrize("method", ["eigh", "randomized", "lanczos"])
def test_fuzz_found_cases_stay_fixed(method):
    # NaN, asymmetry and object entries: clear errors on every method
    for K, err in ((np.array([[1.0, np.nan], [np.nan, 1.0]]), ValueError),
                   (np.array([[1.0, 2.0], [0.0, 1.0]]), ValueError),
                   (np.array([[1.0, "x"], ["x", 1.0]], dtype=object), TypeError)):
        with pytest.raises(err):
            kernels.spectrum(K, 1, method=method)
