"""Fig. 5 (paper Fig. 3 and Fig. 1b): the data manifold sets the exponent.

Super-classing merges classes into fewer groups: the loss changes, the exponent does not.
Input noise thickens the data manifold: the exponent changes. Teacher-student data on
d-dimensional hypercubes, and real inputs with a measured intrinsic dimension, set
against alpha ~ 4/d. Learning curves are kernel ridge regression with the NTK of a
fully connected ReLU network (the infinite-width limit), averaged over seeds.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import experiments
import regimes

from ._common import Context, Row, finish, plot_curve, seed_bootstrap_exponent

NAME = "fig5_manifold"
CONFIG = {
    "quick": {"data": "digits", "D": [50, 100, 200, 400, 800], "seeds": 8, "n_classes": [10, 5, 2],
              "noise": [0.0, 1.0, 3.0], "dims": [2, 3, 4, 6, 8], "ts_D": [32, 64, 128, 256, 512, 1024], "n_test": 400},
    "full": {"data": "cifar100", "D": [250, 500, 1000, 2000, 4000, 8000, 16000], "seeds": 8,
             "n_classes": [100, 20, 10, 5, 2], "noise": [0.0, 0.25, 0.5, 1.0, 2.0], "dims": [2, 3, 4, 5, 6, 7, 8, 9],
             "ts_D": [64, 128, 256, 512, 1024, 2048, 4096, 8192], "n_test": 2000},
}


def _krr(task, grid, n_test, name):
    return experiments.SweepSpec(task=task, model={"kind": "krr", "kernel": "ntk", "depth": 2, "ridge": 1e-3},
                                 grid=grid, n_test=n_test, name=name)


def run(ctx: Context) -> list[Row]:
    import matplotlib.pyplot as plt

    cfg = CONFIG[ctx.preset]
    task = {"kind": cfg["data"]} if cfg["data"] == "digits" else {"kind": cfg["data"], "path": ctx.data_dir}
    if cfg["data"] == "cifar100":
        task["label"] = "fine"
    seeds = list(range(cfg["seeds"]))
    sc = ctx.sweep(_krr(task, {"D": cfg["D"], "seed": seeds, "n_classes": cfg["n_classes"]}, cfg["n_test"],
                        f"{NAME}_superclass_{ctx.preset}"))
    nz = ctx.sweep(_krr(task, {"D": cfg["D"], "seed": seeds, "noise": cfg["noise"]}, cfg["n_test"],
                        f"{NAME}_noise_{ctx.preset}"))
    ts = {}
    for d in cfg["dims"]:
        ts[d] = ctx.sweep(_krr({"kind": "random_network_teacher", "input_dim": d, "depth": 2, "width": 256},
                               {"D": cfg["ts_D"], "seed": seeds}, cfg["n_test"], f"{NAME}_hypercube_d{d}_{ctx.preset}"))
    D = np.asarray(cfg["D"], float)
    rows = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    fits = {}
    for k in cfg["n_classes"]:
        curves = sc.test_loss.sel(n_classes=k).transpose("seed", "D").values
        f = seed_bootstrap_exponent(curves, D, key=0)  # one key: the same seed resamples for every k (paired)
        fits[k] = f
        plot_curve(axes[0], D, curves.mean(0), fit=f, yerr=curves.std(0) / np.sqrt(len(seeds)), fit_label=None,
                   label=f"{k} classes: alpha = {f.alpha:.2f} [{f.lo:.2f}, {f.hi:.2f}]")
    k0 = cfg["n_classes"][0]
    base = fits[k0]
    for k, f in fits.items():
        rows.append(Row("Fig. 5", f"super-classed to {k} classes: alpha_D", f.alpha, f.lo, f.hi, regime="resolution-limited"))
    for k, f in list(fits.items())[1:]:
        # the claim is that the exponent does not change: the paired (same seed resamples) difference
        diff = np.asarray(f.resampled.params["alpha"]) - np.asarray(base.resampled.params["alpha"])
        lo, hi = np.nanquantile(diff, [0.025, 0.975])
        rows.append(Row("Fig. 5", f"alpha_D({k} classes) - alpha_D({k0} classes), paired over seeds",
                        f.alpha - base.alpha, float(lo), float(hi), 0.0, "0 (exponent independent of N)",
                        regime="resolution-limited"))
    finish(axes[0], xlabel="D (training points)", ylabel="test MSE (centred one-hot)",
           title=f"super-classing {cfg['data']}: the exponent stays")
    for s in cfg["noise"]:
        curves = nz.test_loss.sel(noise=s).transpose("seed", "D").values
        f = seed_bootstrap_exponent(curves, D, key=int(10 * s))
        plot_curve(axes[1], D, curves.mean(0), fit=f, yerr=curves.std(0) / np.sqrt(len(seeds)), fit_label=None,
                   label=f"noise {s:g}: alpha = {f.alpha:.2f} [{f.lo:.2f}, {f.hi:.2f}]")
        rows.append(Row("Fig. 5", f"input noise {s:g} (x std): alpha_D", f.alpha, f.lo, f.hi))
    finish(axes[1], xlabel="D (training points)", ylabel="test MSE (centred one-hot)",
           title="input noise: the exponent changes")
    # 4/alpha against the data manifold's dimension
    Dt = np.asarray(cfg["ts_D"], float)
    dims, inv = [], []
    for d, dsd in ts.items():
        f = seed_bootstrap_exponent(dsd.test_loss.transpose("seed", "D").values, Dt, key=d)
        dims.append(d)
        inv.append((4 / f.alpha, 4 / f.hi, 4 / f.lo))
        rows.append(Row("Fig. 5", f"hypercube teacher d = {d}: alpha_D (NTK regression)", f.alpha, f.lo, f.hi, 4 / d,
                        "4/d", regime="resolution-limited"))
    inv = np.array(inv)
    axes[2].errorbar(dims, inv[:, 0], yerr=[inv[:, 0] - inv[:, 1], inv[:, 2] - inv[:, 0]], fmt="o", capsize=3,
                     label="teacher-student on d-cubes (NTK regression)")
    ds = experiments.load_digits() if cfg["data"] == "digits" else experiments.load_dataset(cfg["data"], ctx.data_dir)
    X = ds.x_train.reshape(ds.x_train.shape[0], -1)
    idim = regimes.intrinsic_dimension(X, "twonn")
    pred = regimes.predicted_exponent(idim)
    fit0 = fits[cfg["n_classes"][0]]
    axes[2].errorbar([float(idim)], [4 / fit0.alpha], xerr=[[float(idim) - idim.spread[0]], [idim.spread[1] - float(idim)]],
                     fmt="s", capsize=3, label=f"{cfg['data']} (TwoNN dimension {float(idim):.1f})")
    lim = [0, max(max(dims), float(idim)) + 1]
    axes[2].plot(lim, lim, "k--", lw=1, label="4/alpha = d")
    axes[2].set_xlabel("data manifold dimension d")
    axes[2].set_ylabel("4 / alpha_D")
    axes[2].set_title("exponents against the intrinsic dimension", fontsize=9)
    axes[2].legend(fontsize=6.5)
    rows.append(Row("Fig. 5", f"{cfg['data']}: alpha_D vs 4/d from the TwoNN dimension {float(idim):.2f}", fit0.alpha,
                    fit0.lo, fit0.hi, pred.alpha, f"4/d [{pred.lo:.2f}, {pred.hi:.2f}]",
                    theory_interval=(pred.lo, pred.hi)))
    fig.suptitle("Fig. 5 - the data manifold: super-classing, input noise, dimension", fontsize=11)
    fig.tight_layout()
    ctx.save_figure(fig, NAME)
    ctx.save_dataset(xr.Dataset({"superclass_loss": sc.test_loss, "noise_loss": nz.test_loss}), NAME)
    return rows
