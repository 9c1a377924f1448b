"""Fig. 6 (supplement): aspect ratio. Exponents of networks of different depth at a fixed
parameter count (widths chosen by experiments.width_for_parameters).

One sweep per depth, each with its width fixed: every depth trains on the same (D, seed)
training sets (cell keys come from D and seed), so the exponents of two depths are compared
with a bootstrap paired over seeds. ``compute`` returns one Dataset with the per-seed losses,
the fitted laws and bands and the paired difference; ``plot`` and
``rows`` read only that Dataset.
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

import experiments

from ._common import (
    Context,
    Row,
    exponent_from,
    finish,
    fit_to_dataset,
    plot_curve_from,
    run_figure,
    seed_bootstrap_exponent,
)

NAME = "fig6_aspect_ratio"
# Minibatches no larger than the smallest D put every D of a depth in ONE device program
# (experiments trains all D and seeds of a width together); full-batch training needed three
# programs per depth (D padded within factors of 2) and ~7x the work per step. Measured on
# digits, 3 seeds, the same (D, seed) training sets (CPU seconds, one thread, loaded machine):
# alpha_D (depths 1/2/4) 0.68/0.64/0.63 full-batch, 1500 steps (136 s); 0.71/0.67/0.66 with batches of
# 50, 1500 steps; 0.70/0.65/0.64 with batches of 50, 1000 steps (51 s). Halving the parameter count
# saves under 10%: the per-step cost is overhead, not flops, so steps are what cost.
CONFIG = {
    "quick": {"data": "digits", "input_shape": (1, 8, 8, 1), "classes": 10, "depths": [1, 2, 4],
              "n_params": 30_000, "D": [50, 100, 200, 400, 800], "seeds": 3, "steps": 1000, "batch_size": 50,
              "n_test": 400},
    "full": {"data": "cifar10", "input_shape": (1, 32, 32, 3), "classes": 10, "depths": [1, 2, 4, 8],
             "n_params": 2_000_000, "D": [500, 1000, 2000, 4000, 8000, 16000, 32000], "seeds": 3, "steps": 20000,
             "batch_size": 500, "n_test": 10000},
}
N_BOOT = 200  # 3 seeds have 10 distinct resamples: more draws add time, not information


def compute(ctx: Context) -> xr.Dataset:
    """Train every depth over D and seeds; fit alpha_D per depth with seed-bootstrap intervals.

    Examples
    --------
    >>> import xarray as xr
    >>> from paper_figs import Context, fig6_aspect_ratio
    >>> ds = fig6_aspect_ratio.compute(Context("figures", preset="quick"))  # doctest: +SKIP
    >>> rows = fig6_aspect_ratio.rows(xr.load_dataset("figures/data/fig6_aspect_ratio.nc"))  # doctest: +SKIP
    """
    cfg = CONFIG[ctx.preset]
    task = {"kind": cfg["data"]} if cfg["data"] == "digits" else {"kind": cfg["data"], "path": ctx.data_dir}
    train = {"steps": cfg["steps"], "batch_size": cfg["batch_size"], "eval_every": 100, "patience": 5,
             "learning_rate": 2e-3}
    sweeps = {}
    for depth in cfg["depths"]:
        width = experiments.width_for_parameters("mlp", depth, cfg["n_params"], cfg["input_shape"],
                                                 out_dim=cfg["classes"])
        spec = experiments.SweepSpec(task=task, model={"kind": "mlp", "depth": depth, "width": width},
                                     grid={"D": cfg["D"], "seed": list(range(cfg["seeds"]))}, n_test=cfg["n_test"],
                                     train=train, name=f"{NAME}_{ctx.preset}_depth{depth}")
        sweeps[depth] = ctx.sweep(spec)
    return _analyse(sweeps, attrs={"data": cfg["data"], "target_params": cfg["n_params"],
                                   "training": ", ".join(f"{k} {v}" for k, v in train.items())})


def _analyse(sweeps: dict, *, attrs: dict) -> xr.Dataset:
    """The figure's Dataset from one (D, seed) sweep per depth (no training runs)."""
    depths = sorted(sweeps)
    first = sweeps[depths[0]]
    D = first.D.values.astype(float)
    fits, parts = {}, []
    curves = {d: sweeps[d].test_loss.transpose("seed", "D").values for d in depths}
    for depth in depths:
        c = curves[depth]
        # key 0 for every depth: the same resampled seeds, so differences between depths are paired
        fits[depth] = seed_bootstrap_exponent(c, D, key=0, n_boot=N_BOOT)
        parts.append(fit_to_dataset(f"depth{depth}", fits[depth], yerr=c.std(0) / np.sqrt(c.shape[0])))
    shallow, deep = depths[0], depths[-1]
    diff = fits[deep].resampled.params["alpha"] - fits[shallow].resampled.params["alpha"]
    d_lo, d_hi = np.nanquantile(diff, [0.025, 0.975])
    ds = xr.Dataset(
        {"test_loss": (("depth", "seed", "D"), np.stack([curves[d] for d in depths])),
         "steps": (("depth", "seed", "D"), np.stack([sweeps[d].steps.transpose("seed", "D").values for d in depths])),
         "width": ("depth", [int(sweeps[d].width_used.values.flat[0]) for d in depths]),
         "n_params": ("depth", [int(sweeps[d].n_params.values.flat[0]) for d in depths]),
         "alpha_difference": fits[deep].alpha - fits[shallow].alpha,
         "alpha_difference_lo": float(d_lo), "alpha_difference_hi": float(d_hi)},
        coords={"depth": depths, "seed": first.seed.values, "D": first.D.values},
        attrs={**attrs, "n_boot": N_BOOT})
    ds["test_loss"].attrs.update(long_name="test MSE (centred one-hot)", units="1")
    ds["D"].attrs["units"] = "samples"
    ds["width"].attrs["units"] = "hidden units"
    return xr.merge([ds, *parts], combine_attrs="override")


def plot(ds: xr.Dataset):
    """Loss against D per depth with the fitted laws; alpha_D against depth."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.9))
    depths = [int(d) for d in ds.depth.values]
    for depth in depths:
        a, lo, hi = exponent_from(ds, f"depth{depth}")
        width = int(ds.width.sel(depth=depth))
        plot_curve_from(ds, f"depth{depth}", axes[0], fit_label=None,
                        label=f"depth {depth} (width {width}): alpha = {a:.2f} [{lo:.2f}, {hi:.2f}]")
    finish(axes[0], xlabel="D (training points)", ylabel="test MSE (centred one-hot)",
           title=f"{ds.attrs['data']}: MLPs of {int(ds.attrs['target_params'])} parameters")
    ax = axes[1]
    for depth in depths:
        a, lo, hi = exponent_from(ds, f"depth{depth}")
        ax.errorbar([depth], [a], yerr=[[a - lo], [hi - a]], fmt="o", capsize=3, color="C0")
    ax.set_xscale("log", base=2)
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("alpha_D (95% interval)")
    diff, lo, hi = (float(ds[k]) for k in ("alpha_difference", "alpha_difference_lo", "alpha_difference_hi"))
    ax.set_title(f"alpha_D(depth {depths[-1]}) - alpha_D(depth {depths[0]}) = {diff:.2f} [{lo:.2f}, {hi:.2f}]"
                 "\n(95%, paired over seeds)", fontsize=8)
    fig.suptitle("Fig. 6 - aspect ratio at fixed parameter count", fontsize=11)
    fig.tight_layout()
    return fig


def rows(ds: xr.Dataset) -> list[Row]:
    """alpha_D per depth, and the deepest minus the shallowest against 0.

    No regime label: on 5 sizes ``regimes.classify`` cannot tell these exponents from 1 once
    an offset is free (it returns "undetermined" for every depth, at a third of the figure's time).
    """
    depths = [int(d) for d in ds.depth.values]
    out = []
    for depth in depths:
        width, n = int(ds.width.sel(depth=depth)), int(ds.n_params.sel(depth=depth))
        out.append(Row("Fig. 6", f"MLP depth {depth}, width {width}, {n} params: alpha_D",
                       *exponent_from(ds, f"depth{depth}")))
    out.append(Row("Fig. 6", f"alpha_D(depth {depths[-1]}) - alpha_D(depth {depths[0]}) (paired over seeds)",
                   float(ds.alpha_difference), float(ds.alpha_difference_lo), float(ds.alpha_difference_hi), 0.0,
                   "0 (no dependence on depth; the paper: depends less on depth than on width)"))
    return out


def run(ctx: Context) -> list[Row]:
    return run_figure(sys.modules[__name__], ctx)
