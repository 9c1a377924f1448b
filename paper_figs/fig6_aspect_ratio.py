"""Fig. 6 (supplement): aspect ratio. Exponents of networks of different depth at a fixed
parameter count (widths chosen by experiments.width_for_parameters).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import experiments

from ._common import Context, Row, finish, plot_curve, seed_bootstrap_exponent

NAME = "fig6_aspect_ratio"
CONFIG = {
    "quick": {"data": "digits", "depths": [1, 2, 4], "n_params": 30_000, "D": [50, 100, 200, 400, 800], "seeds": 3,
              "steps": 1500, "n_test": 400},
    "full": {"data": "cifar10", "depths": [1, 2, 4, 8], "n_params": 2_000_000,
             "D": [500, 1000, 2000, 4000, 8000, 16000, 32000], "seeds": 3, "steps": 20000, "n_test": 10000},
}


def run(ctx: Context) -> list[Row]:
    import matplotlib.pyplot as plt

    cfg = CONFIG[ctx.preset]
    task = {"kind": cfg["data"]} if cfg["data"] == "digits" else {"kind": cfg["data"], "path": ctx.data_dir}
    spec = experiments.SweepSpec(
        task=task, model={"kind": "mlp"},
        grid={"D": cfg["D"], "depth": cfg["depths"], "P": [cfg["n_params"]], "seed": list(range(cfg["seeds"]))},
        n_test=cfg["n_test"], train={"steps": cfg["steps"], "eval_every": 100, "patience": 5, "learning_rate": 2e-3},
        name=f"{NAME}_{ctx.preset}")
    ds = ctx.sweep(spec)
    D = np.asarray(cfg["D"], float)
    rows = []
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.9))
    alphas = []
    for depth in cfg["depths"]:
        sel = ds.sel(depth=depth).isel(P=0)
        curves = sel.test_loss.transpose("seed", "D").values
        f = seed_bootstrap_exponent(curves, D, key=depth)
        width = int(sel.width_used.values.flat[0])
        alphas.append((depth, f))
        plot_curve(axes[0], D, curves.mean(0), fit=f, yerr=curves.std(0) / np.sqrt(curves.shape[0]), fit_label=None,
                   label=f"depth {depth} (width {width}): alpha = {f.alpha:.2f} [{f.lo:.2f}, {f.hi:.2f}]")
        rows.append(Row("Fig. 6", f"MLP depth {depth}, width {width}, {cfg['n_params']} params: alpha_D", f.alpha, f.lo,
                        f.hi))
    finish(axes[0], xlabel="D (training points)", ylabel="test MSE (centred one-hot)",
           title=f"{cfg['data']}: MLPs of {cfg['n_params']} parameters")
    ax = axes[1]
    for depth, f in alphas:
        ax.errorbar([depth], [f.alpha], yerr=[[f.alpha - f.lo], [f.hi - f.alpha]], fmt="o", capsize=3, color="C0")
    ax.set_xscale("log", base=2)
    ax.set_xticks(cfg["depths"], [str(d) for d in cfg["depths"]])
    ax.minorticks_off()
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("alpha_D (95% interval)")
    ax.set_title("the exponent depends little on the aspect ratio", fontsize=9)
    fig.suptitle("Fig. 6 - aspect ratio at fixed parameter count", fontsize=11)
    fig.tight_layout()
    ctx.save_figure(fig, NAME)
    ctx.save_dataset(xr.Dataset({"alpha": ("depth", [f.alpha for _, f in alphas]),
                                 "alpha_lo": ("depth", [f.lo for _, f in alphas]),
                                 "alpha_hi": ("depth", [f.hi for _, f in alphas])},
                                coords={"depth": cfg["depths"]}), NAME)
    return rows
