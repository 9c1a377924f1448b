"""Fig. 1 at quick sizes: every claim recomputed from the stored data, apart from the figure code.

The slow test makes the figure once, reloads the stored sweeps (zarr) and the figure's
Dataset (netCDF), and recomputes each exponent with the tests' own seed bootstrap
(``seed_bootstrap_alpha``) against the theory for the same finite setting, computed here:

- resolution-limited D and P: ``kernels.rf_theory`` fitted over the identical sizes;
- variance-limited D: ``1/(D - P - 1)`` (ordinary least squares with a Gaussian design:
  ``E[excess] = floor P / (D - P - 1)`` exactly), fitted over the same window;
- variance-limited P: ``1/(P - D - 1) - 1/(P_ref - D - 1)`` (the same law by the model's exact
  D <-> P duality, minus the same draw's reference loss);
- trained width scaling: 1, the leading term of the 1/width expansion.
"""

import numpy as np
import pytest
import xarray as xr

import experiments
import kernels
import paper_figs
import scaling
from paper_figs import fig1_regimes

DECADES = 1.5


def _fit_alpha(x, y):
    return float(scaling.fit("power", np.asarray(x, float), np.asarray(y, float)).params["alpha"])


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_fig1_windows_span_a_decade_and_a_half_in_the_regime_they_claim(preset):
    cfg = fig1_regimes.CONFIG[preset]
    res_D, res_P = fig1_regimes.resolution_specs(cfg, preset)
    var_D, var_P = fig1_regimes.variance_specs(cfg, preset)
    for spec, leg, other in ((res_D, "D", "P"), (res_P, "P", "D"), (var_D, "D", "P")):
        x, big = spec.grid[leg], spec.grid[other]
        assert len(big) == 1 and np.log10(x[-1] / x[0]) >= DECADES, (spec.name, x)
        if spec in (res_D, res_P):
            assert big[0] >= 16 * x[-1], (spec.name, x, big)  # resolution-limited: the other size 16x larger
        else:
            assert x[0] >= 16 * big[0], (spec.name, x, big)  # variance-limited: 16x the small size
    x = var_P.grid["P"][:-1]  # the last P is the per-draw reference, not a fitted point
    assert np.log10(x[-1] / x[0]) >= DECADES and x[0] >= 16 * var_P.grid["D"][0]
    assert var_P.grid["P"][-1] >= 32 * x[-1]
    # the risks of the few-point edge are averaged over the unseen projection (same mean)
    assert var_P.task["projection_risk"] == "expected"
    widths = cfg["widths"]
    assert np.log10(widths[-1] / widths[0]) >= DECADES - 1e-3 and len(widths) >= 4


def test_fig1_finite_size_variance_law_is_exact_for_gaussian_least_squares():
    """The variance-limited theory value rests on E[excess] = sigma^2 p / (n - p - 1) for least
    squares with a Gaussian design: checked by an independent Monte Carlo (numpy only)."""
    rng = np.random.default_rng(0)
    p, reps = 4, 4000
    cov = np.diag([1.0, 0.5, 0.25, 0.125])
    for n in (16, 64):
        X = rng.standard_normal((reps, n, p)) @ np.sqrt(cov)
        noise = rng.standard_normal((reps, n))  # residual variance (the floor) 1
        theta = np.linalg.solve(np.swapaxes(X, 1, 2) @ X, np.einsum("rnp,rn->rp", X, noise)[..., None])[..., 0]
        excess = np.einsum("rp,pq,rq->r", theta, cov, theta)
        se = excess.std() / np.sqrt(reps)
        assert abs(excess.mean() - p / (n - p - 1)) < 4 * se, (n, excess.mean(), p / (n - p - 1), se)


@pytest.mark.slow  # the whole quick Fig. 1 (sweeps, trained networks, fits): over 20 s on 2 cores
def test_fig1_exponents_against_finite_setting_theory(out, seed_bootstrap_alpha, assert_roundtrip):
    rows, _, failures = paper_figs.run(out, only=["fig1_regimes"], progress=False, raise_errors=True)
    assert failures == {}
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"fig1_regimes.{ext}").stat().st_size > 10_000
    ds = xr.load_dataset(out / "data" / "fig1_regimes.nc")
    cfg = fig1_regimes.CONFIG["quick"]
    task = experiments.teacher_student(cfg["n_features"], 0.3)
    res_D, res_P = fig1_regimes.resolution_specs(cfg, "quick")
    var_D, var_P = fig1_regimes.variance_specs(cfg, "quick")
    stored = {s.name: experiments.load(out / "data" / f"{s.name}.zarr") for s in (res_D, res_P, var_D, var_P)}
    for s in stored.values():
        assert int(s.status.min()) == 1  # every unit done

    measured, theory = {}, {}
    # resolution-limited: loss at the largest other size, theory = rf_theory over the same sizes
    for spec, leg, other, key in ((res_D, "D", "P", 0), (res_P, "P", "D", 1)):
        s = stored[spec.name]
        x = s[leg].values.astype(float)
        big = int(s[other][0])
        assert np.log10(x[-1] / x[0]) >= DECADES
        curves = s.test_loss.isel({other: 0}).transpose("seed", leg).values
        sizes = (x, [big]) if leg == "D" else ([big], x)
        th = kernels.rf_theory(task.eigenvalues, task.coefficients, *sizes).test_mse.values.ravel()
        measured[f"resolution_{leg}"] = seed_bootstrap_alpha(curves, x, seed=key)
        theory[f"resolution_{leg}"] = _fit_alpha(x, th)
        # the exact seed-mean loss follows the theory curve itself within a few percent
        assert np.all(np.abs(curves.mean(0) / th - 1) < 0.1), curves.mean(0) / th

    # variance-limited in D: the excess over the best P-feature risk, stored by the sweep
    s = stored[var_D.name]
    p = int(s.P[0])
    x = s.D.values.astype(float)
    measured["variance_D"] = seed_bootstrap_alpha(s.excess_loss.isel(P=0).transpose("seed", "D").values, x, seed=2)
    theory["variance_D"] = _fit_alpha(x, 1.0 / (x - p - 1))

    # variance-limited in P: loss minus the same draw's loss at the reference P
    s = stored[var_P.name]
    n = int(s.D[0])
    L = s.test_loss.isel(D=0).transpose("seed", "P").values
    x, p_ref = s.P.values[:-1].astype(float), float(s.P[-1])
    measured["variance_P"] = seed_bootstrap_alpha(L[:, :-1] - L[:, -1:], x, seed=3)
    theory["variance_P"] = _fit_alpha(x, 1.0 / (x - n - 1) - 1.0 / (p_ref - n - 1))
    # ... whose mean is the finite-size law itself (duality), not just its exponent
    ratio = (L[:, :-1] - L[:, -1:]).mean(0) / (L[:, -1].mean() * n * (1 / (x - n - 1) - 1 / (p_ref - n - 1)))
    assert np.all(np.abs(ratio - 1) < 0.15), ratio

    # trained MLPs: deviation from the infinite-width network, per seed, as stored by the figure
    dev = ds.width_curves.values
    w = ds.width_x.values
    assert np.log10(w[-1] / w[0]) >= DECADES - 1e-3
    measured["width"] = seed_bootstrap_alpha(dev, w, seed=4)
    theory["width"] = 1.0

    reported = {prefix: row for prefix, row in zip(fig1_regimes.PANELS, rows)}
    for prefix, (a, lo, hi) in measured.items():
        t = theory[prefix]
        assert lo <= t <= hi, (prefix, a, lo, hi, t)  # measured within its 95% interval of the finite-setting theory
        if prefix.startswith("variance"):
            assert hi - lo <= 0.3, (prefix, lo, hi)  # +-0.15 or tighter
        elif prefix.startswith("resolution"):
            assert hi - lo <= 0.1, (prefix, lo, hi)
        row = reported[prefix]
        assert row.value == pytest.approx(a, abs=1e-6), (prefix, row.value, a)  # the same fit of the same mean
        assert row.theory == pytest.approx(t, abs=1e-6), (prefix, row.theory, t)
        assert row.verdict == "agrees", row
        # the figure's own interval is a bootstrap over the same seeds: it brackets the same value
        assert abs((row.hi - row.lo) - (hi - lo)) < 0.5 * (hi - lo) + 0.01, (prefix, row.lo, row.hi, lo, hi)
    assert reported["digits"].theory is None and np.isfinite(reported["digits"].value)

    # the stored Dataset redraws the same figure and the same rows
    assert_roundtrip(fig1_regimes, ds)
