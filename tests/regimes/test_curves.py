"""Crossovers and double descent."""

import numpy as np
import pytest

import kernels
import regimes

D = np.geomspace(10, 1e5, 16)


def test_crossover_is_found_with_both_exponents(rng):
    y = D**-0.3 * (1 + D / 1e3) ** -0.7 * np.exp(0.005 * rng.standard_normal(D.size))
    c = regimes.crossover(D, y)
    assert c.found
    assert c.alpha_before == pytest.approx(0.3, abs=0.05)
    assert c.alpha_after == pytest.approx(1.0, abs=0.1)
    assert 3e2 < c.x_break < 3e3
    assert c.local_alpha[0] < 0.4 and c.local_alpha[-1] > 0.85


def test_a_single_power_law_has_no_crossover(rng):
    y = 2 * D**-0.45 * np.exp(0.01 * rng.standard_normal(D.size))
    assert not regimes.crossover(D, y).found


def test_double_descent_peak_sits_at_the_interpolation_threshold():
    lam = np.arange(1, 5001) ** -1.5
    n = np.geomspace(20, 5000, 40)
    y = kernels.rf_risk(lam, np.sqrt(lam), n, 300.0, ridge=1e-6)  # small ridge: finite peak
    dd = regimes.detect_double_descent(n, y)
    assert dd.non_monotonic and 200 < dd.peak_x < 450
    mask = regimes.monotone_mask(n, y, side="after")
    assert np.all(n[mask] > dd.peak_x) and np.all(np.diff(y[mask]) < 0)
    before = regimes.monotone_mask(n, y, side="before")
    assert np.all(np.diff(y[before]) < 0)


def test_monotonic_curves_are_left_alone():
    y = 2 * D**-0.4
    assert not regimes.detect_double_descent(D, y).non_monotonic
    assert regimes.monotone_mask(D, y).all()


def test_batched_detection():
    y = np.stack([D**-0.4, D**-0.4 + 2 * np.exp(-np.log(D / 1e3) ** 2 / 0.1)])
    dd = regimes.detect_double_descent(D, y)
    assert list(dd.non_monotonic) == [False, True]
