"""Shared by the paper_figs tests: an independent seed-bootstrap exponent, a module-scoped output folder."""

import numpy as np
import pytest

import scaling


@pytest.fixture(scope="session")
def seed_bootstrap_alpha():
    """``f(curves (S, n), x, *, form, n_boot, seed)`` -> (alpha of the seed-mean curve, 2.5% and
    97.5% quantiles over resampled seeds): the tests' own estimate, apart from the figure code."""

    def estimate(curves, x, *, form="power", n_boot=300, seed=0):
        curves = np.asarray(curves, float)
        idx = np.random.default_rng(seed).integers(0, curves.shape[0], (n_boot, curves.shape[0]))
        central = float(scaling.fit(form, x, curves.mean(0)).params["alpha"])
        boot = scaling.fit(form, x, curves[idx].mean(1), errors="ignore").params["alpha"]
        lo, hi = np.nanquantile(boot, [0.025, 0.975])
        return central, float(lo), float(hi)

    return estimate


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("paper_figs_quick")
