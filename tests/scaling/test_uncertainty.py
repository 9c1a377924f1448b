"""Uncertainty: bootstrap, profile likelihood and Gauss-Newton intervals cover the truth."""

import numpy as np
import pytest

import scaling
from scaling import forms

D = np.geomspace(1e2, 1e5, 25)
TRUTH = {"L_inf": 0.2, "A": 3.0, "alpha": 0.4}


@pytest.fixture(scope="module")
def repeated_offset_fits():
    # 300 independent noisy draws of one curve, all fitted (and bootstrapped) in one call.
    rng = np.random.default_rng(7)
    clean = np.asarray(forms.offset.model(TRUTH, D))
    Y = clean * np.exp(0.03 * rng.standard_normal((300, D.size)))
    return scaling.fit("offset", D, Y, bootstrap=200, key=0)


def coverage(lo, hi, truth):
    return float(np.mean((lo < truth) & (truth < hi)))


def test_bootstrap_intervals_cover_at_about_the_nominal_rate(repeated_offset_fits):
    # Binomial s.e. of a 90% coverage over 300 draws is 0.017; measured 0.91 at seed 7.
    for name in ("alpha", "L_inf"):
        lo, hi = repeated_offset_fits.ci(0.90)[name]
        assert abs(coverage(lo, hi, TRUTH[name]) - 0.90) < 0.05, name


def test_profile_intervals_cover_at_about_the_nominal_rate(repeated_offset_fits):
    lo, hi = repeated_offset_fits.profile_ci("alpha", 0.90)
    assert abs(coverage(lo, hi, TRUTH["alpha"]) - 0.90) < 0.06
    assert np.all(lo < repeated_offset_fits.params["alpha"]) and np.all(repeated_offset_fits.params["alpha"] < hi)


def test_gauss_newton_standard_error_matches_the_bootstrap_spread(repeated_offset_fits):
    se = repeated_offset_fits.stderr["alpha"]
    boot_sd = np.nanstd(repeated_offset_fits.bootstrap_params["alpha"], axis=0)
    assert np.median(se / boot_sd) == pytest.approx(1.0, abs=0.25)
    # and the spread of the estimates over independent draws
    assert np.median(se) == pytest.approx(np.std(repeated_offset_fits.params["alpha"]), rel=0.25)


def test_prediction_band_contains_the_fit_and_widens_when_extrapolating(repeated_offset_fits):
    res = repeated_offset_fits
    x = np.array([1e3, 1e5, 1e8])
    lo, hi = res.predict_ci(x, 0.9)
    pred = res.predict(x)
    assert np.mean((lo <= pred) & (pred <= hi)) > 0.95
    width = np.median((hi - lo) / pred, axis=0)
    assert width[2] > width[0]


def test_ci_requires_a_bootstrap_and_a_valid_level():
    res = scaling.fit("power", D, 2 * D**-0.3)
    with pytest.raises(ValueError, match="no bootstrap resamples"):
        res.ci()
    res = scaling.fit("power", D, 2 * D**-0.3 * (1 + 0.01 * np.sin(D)), bootstrap=20, key=1)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        res.ci(95)


def test_bootstrap_is_reproducible_from_the_key(rng):
    y = 2 * D**-0.3 * np.exp(0.02 * rng.standard_normal(D.size))
    a = scaling.fit("power", D, y, bootstrap=50, key=3).bootstrap_params["alpha"]
    b = scaling.fit("power", D, y, bootstrap=50, key=3).bootstrap_params["alpha"]
    c = scaling.fit("power", D, y, bootstrap=50, key=4).bootstrap_params["alpha"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_covariance_is_refused_for_non_gaussian_objectives(rng):
    y = 2 * D**-0.3 * np.exp(0.02 * rng.standard_normal(D.size))
    res = scaling.fit("power", D, y, objective="log_huber")
    with pytest.raises(ValueError, match="Gauss-Newton covariance is defined"):
        res.covariance
    with pytest.raises(ValueError, match="profile likelihood needs a Gaussian objective"):
        res.profile_ci("alpha")
