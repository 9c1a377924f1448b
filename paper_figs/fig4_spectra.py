"""Fig. 4: NNGP/NTK spectra of image data, their exponents, and the learning curves they predict.

For each kernel (fully connected NNGP and NTK, convolutional NTK) on the image data: the
spectrum (eig(K)/n) and its exponent alpha_K; the kernel ridge regression learning curve
predicted by eigenlearning theory from that spectrum (held-out error, finite pool) and the
one measured on held-out images; the exponents of both.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import experiments
import kernels

from ._common import Context, Row, finish, fit_exponent, seed_bootstrap_exponent

NAME = "fig4_spectra"
CONFIG = {
    "quick": {"data": "digits", "n": None, "D": [20, 40, 80, 160, 320, 640], "n_test": 500, "seeds": 8,
              "ridge": 1e-2},
    "full": {"data": "cifar10", "n": 10000, "D": [50, 100, 200, 400, 800, 1600, 3200, 6400], "n_test": 2000,
             "seeds": 8, "ridge": 1e-2},
}


def kernels_for(data: str):
    fc_depth = 2
    return {
        "FC NNGP": (kernels.mlp(fc_depth), "nngp", True),
        "FC NTK": (kernels.mlp(fc_depth), "ntk", True),
        "CNN NTK": (kernels.cnn(2, pool="flatten"), "ntk", False),
    }


def run(ctx: Context) -> list[Row]:
    import matplotlib.pyplot as plt

    cfg = CONFIG[ctx.preset]
    ds = experiments.load_digits() if cfg["data"] == "digits" else experiments.load_dataset(cfg["data"], ctx.data_dir)
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
    labels = np.concatenate([ds.y_train, ds.y_test])
    if cfg["n"] is not None:
        keep = np.random.default_rng(0).permutation(x.shape[0])[: cfg["n"]]
        x, labels = x[keep], labels[keep]
    x = (x - x.mean(0)) / (x.std() + 1e-12)
    Y = (np.eye(ds.n_classes) - 1.0 / ds.n_classes)[labels]
    N = x.shape[0]
    D = np.asarray(cfg["D"])
    rows, curves = [], {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for name, (arch, kind, flat) in kernels_for(cfg["data"]).items():
        inputs = x.reshape(N, -1) if flat else x
        K = kernels.kernel_matrix(arch, inputs, kind=kind, batch_size=1024)
        s = kernels.spectrum(K, y=Y)
        ak = kernels.spectral_exponent(s.eigenvalues[: N // 2])
        th = kernels.krr_theory(s.eigenvalues, s.coefficients, D, ridge=cfg["ridge"], population_size=N)
        meas = kernels.krr_learning_curve(K, Y, D, n_test=cfg["n_test"], ridge=cfg["ridge"], seeds=cfg["seeds"])
        fit_th = fit_exponent(D, th.heldout_mse.values, bootstrap=100)
        fit_me = seed_bootstrap_exponent(meas.test_mse.values, D)
        curves[name] = xr.Dataset({"eigenvalues": ("index", s.eigenvalues), "theory_heldout_mse": ("D", th.heldout_mse.values),
                                   "measured_mse": (("seed", "D"), meas.test_mse.values)},
                                  coords={"index": np.arange(1, N + 1), "D": D, "seed": meas.seed.values},
                                  attrs={"alpha_K": ak.alpha, "alpha_D_theory": fit_th.alpha,
                                         "alpha_D_measured": fit_me.alpha})
        idx = np.arange(1, N + 1)
        l, = axes[0].loglog(idx, np.maximum(s.eigenvalues, 1e-18), ".", ms=2,
                            label=f"{name}: alpha_K = {ak.alpha:.2f} [{ak.ci[0]:.2f}, {ak.ci[1]:.2f}]")
        c = l.get_color()
        axes[1].loglog(D, th.heldout_mse, "-", color=c, lw=1.2, label=f"{name} theory: alpha = {fit_th.alpha:.2f}")
        m = meas.test_mse.mean("seed")
        axes[1].errorbar(D, m, yerr=meas.test_mse.std("seed") / np.sqrt(cfg["seeds"]), fmt="o", ms=3, color=c,
                         capsize=2, label=f"{name} measured: alpha = {fit_me.alpha:.2f} [{fit_me.lo:.2f}, {fit_me.hi:.2f}]")
        axes[2].errorbar([fit_th.alpha], [fit_me.alpha], yerr=[[fit_me.alpha - fit_me.lo], [fit_me.hi - fit_me.alpha]],
                         fmt="o", color=c, capsize=3, label=name)
        rows += [Row("Fig. 4", f"{name} spectral exponent alpha_K ({cfg['data']})", ak.alpha, ak.ci[0], ak.ci[1]),
                 Row("Fig. 4", f"{name} KRR alpha_D measured vs predicted from the spectrum", fit_me.alpha, fit_me.lo,
                     fit_me.hi, fit_th.alpha, "theory from spectrum")]
    lim = [0, max(0.8, axes[2].get_xlim()[1])]
    axes[2].plot(lim, lim, "k--", lw=1, label="measured = predicted")
    finish(axes[0], xlabel="index i", ylabel="eigenvalue (eig(K)/n)", title=f"kernel spectra on {cfg['data']}")
    finish(axes[1], xlabel="D (training points)", ylabel="held-out test MSE",
           title=f"KRR learning curves (ridge {cfg['ridge']})")
    axes[2].set_xlabel("alpha_D predicted from the spectrum")
    axes[2].set_ylabel("alpha_D measured (95% interval)")
    axes[2].set_title("learning-curve exponents: theory vs measurement", fontsize=9)
    axes[2].legend(fontsize=6.5)
    fig.suptitle("Fig. 4 - kernel spectra of real data and the exponents they predict", fontsize=11)
    fig.tight_layout()
    ctx.save_figure(fig, NAME)
    ctx.save_dataset(xr.concat([v.expand_dims(kernel=[k]) for k, v in curves.items()], "kernel", combine_attrs="drop"),
                     NAME)
    return rows
