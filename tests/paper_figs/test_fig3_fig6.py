"""Figs. 3 and 6: figures as data, and their claims recomputed from the stored data.

Fast tests run each figure's analysis on a small synthetic input of the sweeps' layout (planted
power laws), check the rows against an independent fit of the same numbers, and round-trip
the Dataset through netCDF (``plot`` and ``rows`` give the same figure data and rows). Slow
tests make each figure at quick sizes, reload ``out/data/<NAME>.nc`` and recompute the claim
with the tests' own seed bootstrap (``seed_bootstrap_alpha``), apart from the figure code.
"""

import numpy as np
import pytest
import xarray as xr

import experiments
import scaling
from paper_figs import _common, fig3_pretrained, fig6_aspect_ratio


def _power_alpha(x, y):
    return float(scaling.fit("power", np.asarray(x, float), np.asarray(y, float)).params["alpha"])


# ---------------------------------------------------------------- Fig. 3


def _synthetic_rf_grid(alpha=0.5, seeds=4):
    """A (D, P, seed) loss grid of the Fig. 3 sweep's layout: L = D^-a + P^-a, 3% seed noise."""
    sizes = np.array([16, 24, 32, 48, 64, 128, 256, 512, 1024])
    rng = np.random.default_rng(1)
    L = (sizes[:, None, None] ** -alpha + sizes[None, :, None] ** -alpha) * np.exp(
        0.03 * rng.standard_normal((sizes.size, sizes.size, seeds)))
    return xr.Dataset({"test_loss": (("D", "P", "seed"), L)}, coords={"D": sizes, "P": sizes, "seed": range(seeds)})


def _planted_embeddings(n=400, w=64, alpha_k=0.5):
    """Embeddings whose kernel spectrum is i^-(1 + alpha_k) (orthonormal directions)."""
    rng = np.random.default_rng(2)
    U, _ = np.linalg.qr(rng.standard_normal((n, w)))
    return U * np.sqrt(np.arange(1, w + 1) ** -(1 + alpha_k))


def test_fig3_rows_are_the_duality_of_the_stored_grid_and_round_trip(assert_roundtrip):
    grid = _synthetic_rf_grid()
    E = _planted_embeddings()
    ds = fig3_pretrained._analyse(grid, E, "synthetic")
    back = assert_roundtrip(fig3_pretrained, ds)
    rows = {r.quantity.split(",")[0].split(" (")[0]: r for r in fig3_pretrained.rows(back)}
    # alpha_D and alpha_P: the power law of the seed-mean edges over 16 <= size <= 1024/16
    mean = grid.test_loss.mean("seed")
    win = grid.D.values[(grid.D.values >= 16) & (grid.D.values <= 1024 // 16)]
    a_D = _power_alpha(win, mean.sel(P=1024, D=win).values)
    a_P = _power_alpha(win, mean.sel(D=1024, P=win).values)
    assert rows["alpha_D"].value == pytest.approx(a_D, abs=1e-6)
    assert rows["alpha_P"].value == pytest.approx(a_P, abs=1e-6)
    assert rows["alpha_D - alpha_P"].value == pytest.approx(a_D - a_P, abs=1e-6)
    # the grid is symmetric in law (not in noise): the paired difference interval holds 0
    assert rows["alpha_D - alpha_P"].lo <= 0 <= rows["alpha_D - alpha_P"].hi
    assert rows["alpha_D - alpha_P"].verdict == "agrees"
    # alpha_K of the planted spectrum, through the width x width covariance
    ak = rows["alpha_K of the embedding kernel"]
    assert ak.lo <= 0.5 <= ak.hi and ak.value == pytest.approx(0.5, abs=0.02)
    # the stored eigenvalues are eig(E_s E_s^T) / n of the standardised embeddings, computed directly
    Es = (E - E.mean(0)) / E.std()
    direct = np.linalg.eigvalsh(Es @ Es.T)[::-1][:E.shape[1]] / E.shape[0]
    np.testing.assert_allclose(back.eigenvalues.values, np.maximum(direct, 0), rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # trains the embedding network and sweeps 8 seeds (~30 s on an idle 2-core machine)
def test_fig3_quick_duality_recomputed_from_the_stored_data(tmp_path, seed_bootstrap_alpha):
    ctx = _common.Context(tmp_path, preset="quick")
    rows = fig3_pretrained.run(ctx)
    ds = xr.load_dataset(tmp_path / "data" / f"{fig3_pretrained.NAME}.nc")
    # the study's images were never seen by the embedding network
    E = np.load(tmp_path / "data" / f"{fig3_pretrained.NAME}_quick_embeddings.npy")
    assert E.shape[0] == 1797 - fig3_pretrained.CONFIG["quick"]["n_pretrain"]
    loss = ds.test_loss.transpose("seed", "D", "P")
    top = int(ds.D.values[-1])
    x = ds.D.values[(ds.D.values >= 16) & (ds.D.values <= top // 16)].astype(float)
    ours = {leg: seed_bootstrap_alpha(loss.sel({other: top, leg: x}).transpose("seed", leg).values, x, n_boot=400)
            for leg, other in (("D", "P"), ("P", "D"))}
    by = {r.quantity.split(",")[0].split(" (")[0]: r for r in rows}
    for leg in ("D", "P"):
        a, lo, hi = ours[leg]
        r = by[f"alpha_{leg}"]
        assert r.value == pytest.approx(a, abs=1e-6)
        # two bootstraps of the same seeds: their 95% ends agree to Monte Carlo error (~0.03 measured)
        assert abs(r.lo - lo) < 0.06 and abs(r.hi - hi) < 0.06, (leg, r, ours[leg])
        assert hi - lo < 0.3, ours  # 8 seeds pin each exponent to +-0.15
    # the duality claim: the paired (same resampled seeds) difference of the two exponents
    d, d_lo, d_hi = _paired_difference(loss.sel(P=top, D=x).transpose("seed", "D").values,
                                       loss.sel(D=top, P=x).transpose("seed", "P").values, x)
    r = by["alpha_D - alpha_P"]
    assert r.value == pytest.approx(d, abs=1e-6)
    assert abs(r.lo - d_lo) < 0.06 and abs(r.hi - d_hi) < 0.06, (r, (d, d_lo, d_hi))
    if min(abs(d_lo), abs(d_hi)) > 0.03:  # 0 clear of both ends by more than the Monte Carlo error
        assert r.verdict == ("agrees" if d_lo <= 0 <= d_hi else "differs"), (r, (d, d_lo, d_hi))


def _paired_difference(curves_a, curves_b, x, n_boot=400, seed=0):
    """alpha(a) - alpha(b) of seed-mean curves, 95% interval from resampling the same seeds for both."""
    idx = np.random.default_rng(seed).integers(0, curves_a.shape[0], (n_boot, curves_a.shape[0]))
    boot = [scaling.fit("power", x, c[idx].mean(1), errors="ignore").params["alpha"] for c in (curves_a, curves_b)]
    lo, hi = np.nanquantile(boot[0] - boot[1], [0.025, 0.975])
    return _power_alpha(x, curves_a.mean(0)) - _power_alpha(x, curves_b.mean(0)), float(lo), float(hi)


# ---------------------------------------------------------------- Fig. 6


def _synthetic_sweeps(alphas={1: 0.7, 3: 0.55}, seeds=3):
    """One (D, seed) sweep per depth, the layout of Fig. 6's sweeps: L = 2 D^-a, 3% seed noise."""
    D = np.array([50, 100, 200, 400, 800])
    rng = np.random.default_rng(3)
    out = {}
    for depth, a in alphas.items():
        L = 2 * D[:, None] ** -a * np.exp(0.03 * rng.standard_normal((D.size, seeds)))
        full = np.ones((D.size, seeds))
        out[depth] = xr.Dataset({"test_loss": (("D", "seed"), L), "steps": (("D", "seed"), 1000 * full),
                                 "width_used": (("D", "seed"), (100 // depth) * full),
                                 "n_params": (("D", "seed"), 30_000 * full)},
                                coords={"D": D, "seed": range(seeds)})
    return out


def test_fig6_rows_are_the_fits_of_the_stored_curves_and_round_trip(assert_roundtrip, seed_bootstrap_alpha):
    sweeps = _synthetic_sweeps()
    ds = fig6_aspect_ratio._analyse(sweeps, attrs={"data": "synthetic", "target_params": 30_000})
    back = assert_roundtrip(fig6_aspect_ratio, ds)
    rows = fig6_aspect_ratio.rows(back)
    assert len(rows) == 3
    D = sweeps[1].D.values.astype(float)
    for r, (depth, planted) in zip(rows, ((1, 0.7), (3, 0.55))):
        curves = sweeps[depth].test_loss.transpose("seed", "D").values
        a, lo, hi = seed_bootstrap_alpha(curves, D, n_boot=200)
        assert f"depth {depth}," in r.quantity
        assert r.value == pytest.approx(a, abs=1e-6)
        assert r.lo <= planted <= r.hi and lo <= planted <= hi
    diff = rows[-1]
    assert diff.value == pytest.approx(rows[1].value - rows[0].value, abs=1e-12)
    assert diff.hi < 0 and diff.verdict == "differs"  # 0.55 vs 0.7 at 3% noise: the exponents differ


@pytest.mark.slow  # trains 3 depths x 5 D x 3 seeds (~25 s on an idle 2-core machine)
def test_fig6_quick_exponents_recomputed_from_the_stored_data(tmp_path, seed_bootstrap_alpha):
    ctx = _common.Context(tmp_path, preset="quick")
    rows = fig6_aspect_ratio.run(ctx)
    ds = xr.load_dataset(tmp_path / "data" / f"{fig6_aspect_ratio.NAME}.nc")
    D = ds.D.values.astype(float)
    cfg = fig6_aspect_ratio.CONFIG["quick"]
    assert [int(d) for d in ds.depth.values] == cfg["depths"]
    ours = {}
    for depth in cfg["depths"]:
        # the stored losses are the sweep's, cell for cell
        sweep = experiments.load(tmp_path / "data" / f"{fig6_aspect_ratio.NAME}_quick_depth{depth}.zarr")
        np.testing.assert_array_equal(ds.test_loss.sel(depth=depth).values,
                                      sweep.test_loss.transpose("seed", "D").values)
        assert abs(int(sweep.n_params.values.flat[0]) - cfg["n_params"]) < 0.01 * cfg["n_params"]
        ours[depth] = seed_bootstrap_alpha(ds.test_loss.sel(depth=depth).values, D, n_boot=400)
    for r, depth in zip(rows, cfg["depths"]):
        a, lo, hi = ours[depth]
        assert r.value == pytest.approx(a, abs=1e-6)
        assert abs(r.lo - lo) < 0.05 and abs(r.hi - hi) < 0.05, (r, ours[depth])
        # a trained network's loss falls with D at a resolution-limited rate: 0 < alpha_D < 1
        assert 0.2 < lo and hi < 1.0, (depth, ours[depth])
    diff = rows[-1]
    assert diff.value == pytest.approx(ours[cfg["depths"][-1]][0] - ours[cfg["depths"][0]][0], abs=1e-6)
    assert diff.lo <= diff.value <= diff.hi
