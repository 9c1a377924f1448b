"""Fig. 4: NNGP/NTK spectra of image data, their exponents, and the learning curves they predict.

For each kernel (fully connected NNGP and NTK, convolutional NTK) on the image data: the
spectrum (eig(K)/n) and its exponent alpha_K; the kernel ridge regression learning curve
predicted by eigenlearning theory from that spectrum (held-out error, finite pool) and the
one measured on held-out images; the exponents of both.

``compute`` returns one Dataset over ``kernel``: ``eigenvalues (kernel, index)``,
``alpha_K``/``alpha_K_lo``/``alpha_K_hi``, ``theory_heldout_mse (kernel, D)``,
``measured_mse (kernel, seed, D)``, ``alpha_D_theory`` and ``alpha_D_measured`` with its
95% interval (seed bootstrap); ``plot`` and ``rows`` read only that.
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

import experiments
import kernels

from ._common import Context, Row, finish, fit_exponent, run_figure, seed_bootstrap_exponent

NAME = "fig4_spectra"
CONFIG = {
    "quick": {"data": "digits", "n": None, "D": [20, 40, 80, 160, 320, 640], "n_test": 500, "seeds": 8,
              "ridge": 1e-2},
    "full": {"data": "cifar10", "n": 10000, "D": [50, 100, 200, 400, 800, 1600, 3200, 6400], "n_test": 2000,
             "seeds": 8, "ridge": 1e-2},
}
# Tiles of the kernel matrix. The CNN kernel's cost is per pair of images and position, and small
# tiles stay in cache and compute little beyond the upper triangle: measured on 768 digits (same
# run, loaded 2-core machine, identical matrices) 768-wide tiles 16-21 s, 128: 7-11 s, 64: 5-7 s,
# 32: 2.1-2.2 s, 16: 2.8-3.2 s. The fully connected kernels are cheapest in one large tile.
TILE = {"FC NNGP": 1024, "FC NTK": 1024, "CNN NTK": 32}


def kernels_for(data: str):
    fc_depth = 2
    return {
        "FC NNGP": (kernels.mlp(fc_depth), "nngp", True),
        "FC NTK": (kernels.mlp(fc_depth), "ntk", True),
        "CNN NTK": (kernels.cnn(2, pool="flatten"), "ntk", False),
    }


def _images(cfg, data_dir):
    ds = experiments.load_digits() if cfg["data"] == "digits" else experiments.load_dataset(cfg["data"], data_dir)
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
    labels = np.concatenate([ds.y_train, ds.y_test])
    if cfg["n"] is not None:
        keep = np.random.default_rng(0).permutation(x.shape[0])[: cfg["n"]]
        x, labels = x[keep], labels[keep]
    x = (x - x.mean(0)) / (x.std() + 1e-12)
    return x, (np.eye(ds.n_classes) - 1.0 / ds.n_classes)[labels]


def compute(ctx: Context) -> xr.Dataset:
    """Spectra, predicted and measured KRR learning curves, and their exponents, per kernel."""
    cfg = CONFIG[ctx.preset]
    x, Y = _images(cfg, ctx.data_dir)
    N = x.shape[0]
    D = np.asarray(cfg["D"])
    per_kernel = []
    for name, (arch, kind, flat) in kernels_for(cfg["data"]).items():
        inputs = x.reshape(N, -1) if flat else x
        K = kernels.kernel_matrix(arch, inputs, kind=kind, batch_size=min(TILE[name], N))
        s = kernels.spectrum(K, y=Y)
        ak = kernels.spectral_exponent(s.eigenvalues[: N // 2])
        th = kernels.krr_theory(s.eigenvalues, s.coefficients, D, ridge=cfg["ridge"], population_size=N)
        meas = kernels.krr_learning_curve(K, Y, D, n_test=cfg["n_test"], ridge=cfg["ridge"], seeds=cfg["seeds"])
        fit_th = fit_exponent(D, th.heldout_mse.values, bootstrap=100)
        fit_me = seed_bootstrap_exponent(meas.test_mse.values, D)
        per_kernel.append(xr.Dataset(
            {"eigenvalues": ("index", s.eigenvalues), "theory_heldout_mse": ("D", th.heldout_mse.values),
             "measured_mse": (("seed", "D"), meas.test_mse.values),
             "alpha_K": ak.alpha, "alpha_K_lo": ak.ci[0], "alpha_K_hi": ak.ci[1],
             "alpha_D_theory": fit_th.alpha, "alpha_D_measured": fit_me.alpha,
             "alpha_D_measured_lo": fit_me.lo, "alpha_D_measured_hi": fit_me.hi},
            coords={"index": np.arange(1, N + 1), "D": D, "seed": meas.seed.values}))
    out = xr.concat(per_kernel, xr.DataArray(list(kernels_for(cfg["data"])), dims="kernel", name="kernel"))
    out["eigenvalues"].attrs.update(long_name="eigenvalue of K / n", units="")
    out["theory_heldout_mse"].attrs.update(long_name="eigenlearning prediction of the held-out MSE (finite pool)")
    out["measured_mse"].attrs.update(long_name="measured held-out MSE of kernel ridge regression")
    out["D"].attrs.update(long_name="training points")
    return out.assign_attrs(data=cfg["data"], ridge=float(cfg["ridge"]), n_test=int(cfg["n_test"]),
                            pool_size=int(N), n_seeds=int(cfg["seeds"]),
                            alpha_K_window=f"eigenvalues 1..{N // 2} (kernels.spectral_exponent)",
                            alpha_D_interval="measured: bootstrap over seeds; theory: the curve's own fit")


def plot(ds: xr.Dataset):
    """Spectra, learning curves (theory lines, measured points) and predicted vs measured exponents."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    D = ds.D.values
    for name in ds.kernel.values:
        k = ds.sel(kernel=name)
        name = str(name)
        ak, lo, hi = float(k.alpha_K), float(k.alpha_K_lo), float(k.alpha_K_hi)
        l, = axes[0].loglog(k.index.values, np.maximum(k.eigenvalues.values, 1e-18), ".", ms=2,
                            label=f"{name}: alpha_K = {ak:.2f} [{lo:.2f}, {hi:.2f}]")
        c = l.get_color()
        a_th, a_me = float(k.alpha_D_theory), float(k.alpha_D_measured)
        me_lo, me_hi = float(k.alpha_D_measured_lo), float(k.alpha_D_measured_hi)
        axes[1].loglog(D, k.theory_heldout_mse.values, "-", color=c, lw=1.2, label=f"{name} theory: alpha = {a_th:.2f}")
        meas = k.measured_mse.transpose("seed", "D").values
        axes[1].errorbar(D, meas.mean(0), yerr=meas.std(0) / np.sqrt(meas.shape[0]), fmt="o", ms=3, color=c,
                         capsize=2, label=f"{name} measured: alpha = {a_me:.2f} [{me_lo:.2f}, {me_hi:.2f}]")
        axes[2].errorbar([a_th], [a_me], yerr=[[a_me - me_lo], [me_hi - a_me]], fmt="o", color=c, capsize=3,
                         label=name)
    lim = [0, max(0.8, axes[2].get_xlim()[1])]
    axes[2].plot(lim, lim, "k--", lw=1, label="measured = predicted")
    data = ds.attrs["data"]
    finish(axes[0], xlabel="index i", ylabel="eigenvalue (eig(K)/n)", title=f"kernel spectra on {data}")
    finish(axes[1], xlabel="D (training points)", ylabel="held-out test MSE",
           title=f"KRR learning curves (ridge {ds.attrs['ridge']:g})")
    axes[2].set_xlabel("alpha_D predicted from the spectrum")
    axes[2].set_ylabel("alpha_D measured (95% interval)")
    axes[2].set_title("learning-curve exponents: theory vs measurement", fontsize=9)
    axes[2].legend(fontsize=6.5)
    fig.suptitle("Fig. 4 - kernel spectra of real data and the exponents they predict", fontsize=11)
    fig.tight_layout()
    return fig


def rows(ds: xr.Dataset) -> list[Row]:
    """Per kernel: alpha_K, and the measured KRR alpha_D beside the one its spectrum predicts."""
    out = []
    data = ds.attrs["data"]
    for name in ds.kernel.values:
        k = ds.sel(kernel=name)
        out += [Row("Fig. 4", f"{name} spectral exponent alpha_K ({data})", float(k.alpha_K), float(k.alpha_K_lo),
                    float(k.alpha_K_hi)),
                Row("Fig. 4", f"{name} KRR alpha_D measured vs predicted from the spectrum", float(k.alpha_D_measured),
                    float(k.alpha_D_measured_lo), float(k.alpha_D_measured_hi), float(k.alpha_D_theory),
                    "theory from spectrum")]
    return out


def run(ctx: Context) -> list[Row]:
    """compute -> data/fig4_spectra.nc -> plot -> figures/fig4_spectra.png|pdf -> rows."""
    return run_figure(sys.modules[__name__], ctx)
