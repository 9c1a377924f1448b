"""Fig. 1 at quick sizes: variance-limited slopes from the stored sweeps."""

import pytest

from paper_figs import _common, fig1_regimes


@pytest.mark.slow  # over 20 s on 2 cores: kept out of the default run
def test_fig1_variance_limited_slopes(out, seed_bootstrap_alpha):
    cfg = fig1_regimes.CONFIG["quick"]
    ctx = _common.Context(out, preset="quick")
    spec_D, _ = fig1_regimes.variance_specs(cfg, "quick")
    var_D = ctx.sweep(spec_D)
    # excess over the best 4-feature predictor: exactly the finite-D variance term, ~ 1/D
    excess = var_D.excess_loss.isel(P=0).transpose("seed", "D")
    slope = seed_bootstrap_alpha(excess.values, var_D.D.values.astype(float))
    # (its interval may exclude 1 itself: O(1/D^2) corrections steepen the smallest D slightly)
    assert abs(slope[0] - 1.0) < 0.1, slope

    # trained finite-width networks: squared distance to the infinite-width predictor ~ 1/width
    widths = fig1_regimes.width_scaling(cfg)
    dev = widths.deviation.transpose("seed", "width")
    slope_w = seed_bootstrap_alpha(dev.values, widths.width.values.astype(float))
    assert abs(slope_w[0] - 1.0) < 0.1, slope_w
    assert slope_w[1] < 1.0 < slope_w[2], slope_w
