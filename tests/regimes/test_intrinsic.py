"""Intrinsic dimension on known manifolds; agreement with scikit-dimension."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import regimes


def subspace(rng, d, n=2000, ambient=100, noise=0.0):
    Q, _ = np.linalg.qr(rng.standard_normal((ambient, d)))
    return rng.standard_normal((n, d)) @ Q.T + noise * rng.standard_normal((n, ambient))


def sphere(rng, d, n=2000, ambient=100, noise=0.0):
    z = rng.standard_normal((n, d + 1))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.standard_normal((ambient, d + 1)))
    return z @ Q.T + noise * rng.standard_normal((n, ambient))


@pytest.mark.parametrize("manifold", [subspace, sphere])
@pytest.mark.parametrize("d", [2, 5, 10])
@pytest.mark.parametrize("noise", [0.0, 1e-4])  # small: 5% of the neighbour spacing at d = 2
def test_dimension_of_known_manifolds_within_ten_percent(rng, manifold, d, noise):
    X = manifold(rng, d, noise=noise)
    est = regimes.intrinsic_dimension(X)
    assert abs(float(est) / d - 1) < 0.10, float(est)
    assert isinstance(est, float) and est.n_points == 2000


@pytest.mark.parametrize("method", ["twonn", "twonn_mle"])
def test_agrees_with_scikit_dimension_on_the_same_points(rng, method):
    import skdim

    X = sphere(rng, 6, n=3000)
    ours = regimes.intrinsic_dimension(X, method, scales=[1.0])
    ref = skdim.id.TwoNN(method="linear" if method == "twonn" else "mle").fit(X).dimension_
    assert float(ours) == pytest.approx(ref, rel=1e-6)


def test_mle_estimator(rng):
    X = subspace(rng, 4, n=3000)
    est = regimes.intrinsic_dimension(X, "mle", k=20)
    assert float(est) == pytest.approx(4.0, rel=0.1)
    assert list(est.by_scale.k.values) == [5, 10, 20, 40]


def test_noise_shows_up_as_scale_dependence(rng):
    # Noise (norm ~0.1) above the neighbour spacing of a 2-sphere inflates the estimate at
    # small scales; larger neighbourhoods (MLE with large k) see the manifold again.
    X = sphere(rng, 2, n=2000, noise=0.01)
    est = regimes.intrinsic_dimension(X, "mle", scales=[5, 20, 80, 320])
    by_k = est.by_scale.values
    assert by_k[0] > 4 and by_k[-1] < 3.0
    assert est.spread[1] - est.spread[0] > 2


def test_duplicates_are_removed_and_counted(rng):
    X = subspace(rng, 3, n=1000)
    Xd = np.concatenate([X, X[:50]])
    est = regimes.intrinsic_dimension(Xd)
    assert est.n_duplicates == 50 and est.n_points == 1000
    assert float(est) == pytest.approx(float(regimes.intrinsic_dimension(X)), rel=1e-9)
    with pytest.raises(ValueError, match="50 duplicate points"):
        regimes.intrinsic_dimension(Xd, duplicates="raise")


def test_nearest_neighbours_are_exact(rng):
    X = rng.standard_normal((500, 30))
    d, i = regimes.nearest_neighbors(X, 5, batch_size=128)
    full = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    ref_i = np.argsort(full, axis=1)[:, :5]
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, np.take_along_axis(full, ref_i, 1), rtol=1e-12)


def test_predicted_exponent_from_estimates(rng):
    p = regimes.predicted_exponent([7.5, 8.0, 8.5])
    assert p.alpha == 0.5 and p.lo == pytest.approx(4 / 8.5) and p.hi == pytest.approx(4 / 7.5)
    est = regimes.intrinsic_dimension(subspace(rng, 4, n=2000))
    q = regimes.predicted_exponent(est)
    assert q.lo <= q.alpha <= q.hi and q.alpha == pytest.approx(1.0, rel=0.1)
    with pytest.raises(ValueError, match="finite and > 0"):
        regimes.predicted_exponent(0.0)


def test_intrinsic_dimension_errors(rng):
    with pytest.raises(ValueError, match="unknown method 'pca'"):
        regimes.intrinsic_dimension(rng.standard_normal((50, 3)), "pca")
    with pytest.raises(ValueError, match="non-finite"):
        regimes.intrinsic_dimension(np.full((50, 3), np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="k must be in"):
            regimes.intrinsic_dimension(rng.standard_normal((10, 3)), "mle", k=20)


def brute_force_twonn(X, discard_fraction=0.1):
    """TwoNN from all pairwise differences (no |q|^2 + |x|^2 - 2 q.x), in float64 numpy:
    the textbook estimator, independent of our neighbour search."""
    diff = X[:, None, :] - X[None, :, :]
    d = np.sqrt((diff**2).sum(-1))
    np.fill_diagonal(d, np.inf)
    r = np.sort(d, axis=1)[:, :2]
    mu = np.sort(r[:, 1] / r[:, 0])
    N = mu.size
    keep = int(N * (1 - discard_fraction))
    x = np.log(mu[:keep])
    y = -np.log(1 - np.arange(1, keep + 1) / N)
    return float(x @ y / (x @ x))


def test_a_shifted_cloud_gives_the_dimension_of_the_cloud(rng):
    # Issue 13: a 5-dim cloud shifted by 1e4 gave 4.36-4.48 (float32 |q|^2 + |x|^2 - 2 q.x)
    # instead of the 5.1 of the same cloud at the origin.
    X = rng.standard_normal((2000, 5))
    ref = brute_force_twonn(X)  # the shift cancels exactly in these differences of small numbers
    for shift in (0.0, 1e4, 1e8):
        for dtype in (np.float64, np.float32):
            est = regimes.intrinsic_dimension(X + shift, scales=[1.0], dtype=dtype)
            assert float(est) == pytest.approx(ref, rel=1e-6), (shift, dtype)
    assert 4.8 < ref < 5.4


def test_float64_search_really_is_float64(rng):
    # Without x64 JAX would silently truncate dtype=float64 to float32 (and warn); our
    # search runs inside scaling.enable_x64, so no warning and candidates from float64.
    X = rng.standard_normal((300, 4)) + 1e6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d, i = regimes.nearest_neighbors(X, 3, dtype=np.float64)
    full = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(i, np.argsort(full, axis=1)[:, :3])
    np.testing.assert_allclose(d, np.sort(full, axis=1)[:, :3], rtol=1e-9)


_CLOUD = np.random.default_rng(7).standard_normal((300, 5)) @ np.random.default_rng(8).standard_normal((5, 12))


@settings(max_examples=15, deadline=None)
@given(shift=st.floats(-1e6, 1e6), log_scale=st.floats(-12, 12), method=st.sampled_from(["twonn", "twonn_mle", "mle"]))
def test_estimate_is_invariant_to_shift_and_scale(shift, log_scale, method):
    # Shift moves every coordinate by up to 1e6 (absolute rounding ~1e-10 against neighbour
    # distances ~1): the estimate moves by far less than 1e-6 relative. Scale changes nothing
    # but rounding.
    X = (_CLOUD + shift * np.linspace(-1, 1, _CLOUD.shape[1])) * 10.0**log_scale
    kw = {"scales": [1.0]} if method != "mle" else {"scales": [20]}
    base = regimes.intrinsic_dimension(_CLOUD, method, **kw)
    moved = regimes.intrinsic_dimension(X, method, **kw)
    assert float(moved) == pytest.approx(float(base), rel=1e-6)
    assert moved.n_points == base.n_points == 300


def test_scaling_by_a_power_of_two_is_bitwise_invariant(rng):
    X = rng.standard_normal((500, 6))
    a = regimes.intrinsic_dimension(X)
    b = regimes.intrinsic_dimension(X * 2.0**-40)
    assert float(a) == float(b) and a.spread == b.spread
