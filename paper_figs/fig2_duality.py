"""Fig. 2: duality in the linear random-feature teacher-student model.

Loss over the (D, P) grid: curves in D for several P and in P for several D with the
random-feature theory (kernels.rf_theory) drawn over the measurements, the interpolation
peak at D = P (ridgeless), the regime map, the kernel spectrum, and alpha_D, alpha_P,
alpha_K side by side.

``compute`` returns one Dataset: ``measured_mean``/``measured_sem``/``theory`` over
``(D, P)``; ``alpha``, ``alpha_lo``, ``alpha_hi`` and the finite-window ``theory_alpha`` over
``leg`` (D, P); the paired ``difference`` with its interval; the empirical and task
spectra with alpha_K; and the regime map (``regime_*`` variables). ``plot`` and ``rows``
read only that.
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

import experiments
import kernels
import regimes

from ._common import ALPHA_K, Context, Row, finish, run_figure, teacher_student_rf_spec

NAME = "fig2_duality"
# Resolution-limited windows: 16 <= size <= other size / WINDOW (16..256 at 1024): the regime map's
# over-parameterised side (D <= P/4). The finite-window theory is fitted over the same window, so it
# is the exact comparison at any width; measured on the quick grid (16 seeds), 16..P/8 gave alpha_D
# intervals 0.091-0.100 wide (three bootstrap seeds), 16..P/4 gives 0.055-0.062.
WINDOW = 4
MIN_SIZE = 16
# what plot_regime_map reads from a regime map's attrs (kept on the stored regime_loss variable)
_REGIME_ATTRS = ("ratio", "variance_ratio", "level", "variable", "D_dim", "P_dim", "loss_units")


def compute(ctx: Context) -> xr.Dataset:
    """The grid's sweep, rf_theory over it, the duality fits (measured and finite-window theory),
    the kernel spectra and the regime map."""
    spec = teacher_student_rf_spec(ctx.preset)
    grid = ctx.sweep(spec)
    return analyse(grid, spec)


def analyse(grid: xr.Dataset, spec) -> xr.Dataset:
    """Everything Fig. 2 draws and reports, from the stored sweep ``grid`` of ``spec``."""
    task = experiments.teacher_student(spec.task["n_features"], spec.task["alpha"])
    D, P = grid.D.values, grid.P.values
    theory = kernels.rf_theory(task.eigenvalues, task.coefficients, D, P).test_mse.transpose("D", "P")
    dual = regimes.duality(grid, ratio=WINDOW, form="power", min_size=MIN_SIZE, bootstrap=400, key=0)
    # The theory for this finite setting: the same fits (window, sizes, form) on rf_theory's grid.
    finite = regimes.duality(theory.rename("test_loss").to_dataset(), seed=None, ratio=WINDOW, form="power",
                             min_size=MIN_SIZE, bootstrap=10, key=0)
    # alpha_K measured from an empirical kernel: the student kernel of one seed's 1024 points
    n_emp = int(min(1024, P[-1]))
    f, _ = task.sample_features(0, n_emp, int(P[-1]))
    spec_emp = kernels.spectrum(kernels.random_feature_kernel(f))
    ak = kernels.spectral_exponent(spec_emp.eigenvalues, index_range=(3, 100))
    ak_true = kernels.spectral_exponent(task.eigenvalues, index_range=(3, 10_000))
    rmap = regimes.regime_map(grid, ratio=4, variance_ratio=8)
    regime = {f"regime_{k}": v.variable for k, v in rmap.data_vars.items()}
    regime["regime_loss"].attrs = {k: rmap.attrs[k] for k in _REGIME_ATTRS if k in rmap.attrs}
    legs = ["D", "P"]
    out = xr.Dataset(
        {"measured_mean": grid.test_loss.mean("seed").transpose("D", "P").variable,
         "measured_sem": (grid.test_loss.std("seed") / np.sqrt(grid.sizes["seed"])).transpose("D", "P").variable,
         "theory": theory.variable,
         "alpha": ("leg", dual.alpha.sel(leg=legs).values), "alpha_lo": ("leg", dual.alpha_lo.sel(leg=legs).values),
         "alpha_hi": ("leg", dual.alpha_hi.sel(leg=legs).values),
         "theory_alpha": ("leg", finite.alpha.sel(leg=legs).values),
         "difference": float(dual.difference), "difference_lo": float(dual.difference_lo),
         "difference_hi": float(dual.difference_hi),
         "empirical_eigenvalues": ("index", spec_emp.eigenvalues),
         "task_eigenvalues": ("task_index", task.eigenvalues[:1024]),
         "alpha_K_empirical": ak.alpha, "alpha_K_empirical_lo": ak.ci[0], "alpha_K_empirical_hi": ak.ci[1],
         "alpha_K_true": ak_true.alpha, **regime},
        coords={"D": D, "P": P, "leg": legs, "edge": rmap.edge.values,
                "index": np.arange(1, spec_emp.eigenvalues.size + 1), "task_index": np.arange(1, 1025)},
        attrs={"n_seeds": int(grid.sizes["seed"]), "window": int(WINDOW), "min_size": int(MIN_SIZE),
               "alpha_K_task": float(ALPHA_K), "n_features_task": int(spec.task["n_features"]),
               "empirical_kernel_points": n_emp, "interval_method": dual.attrs["interval_method"],
               "fit_form": dual.attrs["form"], "consistent": int(dual.attrs["consistent"]),
               "D_edge": dual.attrs["D_edge"], "P_edge": dual.attrs["P_edge"], "sweep": spec.name})
    out["theory"].attrs.update(long_name="kernels.rf_theory population test MSE")
    out["measured_mean"].attrs.update(long_name="seed-mean population test MSE")
    out["theory_alpha"].attrs.update(long_name="power-law exponent of rf_theory over the measured window")
    return out


def _regime_map_from(ds: xr.Dataset) -> xr.Dataset:
    names = [k for k in ds.data_vars if k.startswith("regime_")]
    rmap = ds[names].rename({k: k[len("regime_"):] for k in names})
    return rmap.assign_attrs(dict(ds["regime_loss"].attrs))


def plot(ds: xr.Dataset):
    """Loss vs D and vs P with theory, the exponents, the regime map, the spectrum, measured/theory."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    mean, sem, theory = ds.measured_mean, ds.measured_sem, ds.theory
    D, P = ds.D.values, ds.P.values
    cmap = plt.get_cmap("viridis")
    for ax, vary, fixed_dim in ((axes[0, 0], "D", "P"), (axes[0, 1], "P", "D")):
        picks = [v for v in (16, 64, 256, 1024) if v in ds[fixed_dim].values]
        for j, v in enumerate(picks):
            c = cmap(j / max(1, len(picks) - 1))
            m = mean.sel({fixed_dim: v})
            ok = np.isfinite(m.values) & (m.values < 1e3)
            ax.errorbar(m[vary].values[ok], m.values[ok], yerr=sem.sel({fixed_dim: v}).values[ok], fmt="o", ms=3,
                        color=c, capsize=1.5, lw=0.7, label=f"{fixed_dim} = {v} (measured)")
            th = theory.sel({fixed_dim: v})
            tok = np.isfinite(th.values) & (th.values < 1e3)
            ax.plot(th[vary].values[tok], th.values[tok], "-", color=c, lw=1)
        ax.plot([], [], "k-", lw=1, label="theory (kernels.rf_theory)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.2, 30)  # the interpolation peaks (up to ~1e3) are clipped
        finish(ax, xlabel=f"{vary} ({'training points' if vary == 'D' else 'features'})", ylabel="test loss (MSE)",
               title=f"loss vs {vary}; ridgeless peaks at D = P (clipped)", legend="upper right")
    # exponents side by side
    ax = axes[0, 2]
    legs = [(f"alpha_D (data, P = {P[-1]})", *(float(ds[v].sel(leg="D")) for v in ("alpha", "alpha_lo", "alpha_hi"))),
            (f"alpha_P (model, D = {D[-1]})", *(float(ds[v].sel(leg="P")) for v in ("alpha", "alpha_lo", "alpha_hi"))),
            ("alpha_K (empirical kernel)", *(float(ds[v]) for v in ("alpha_K_empirical", "alpha_K_empirical_lo",
                                                                      "alpha_K_empirical_hi")))]
    for i, (lab, v, lo, hi) in enumerate(legs):
        ax.errorbar([i], [v], yerr=[[v - lo], [hi - v]], fmt="os"[i % 2], ms=7, capsize=4, label=lab)
    ak_task = ds.attrs["alpha_K_task"]
    ax.axhline(ak_task, color="k", ls="--", lw=1, label=f"alpha_K of the task = {ak_task:g}")
    ax.set_xticks(range(3))
    ax.set_xticklabels(["alpha_D", "alpha_P", "alpha_K"])
    ax.set_ylim(0, 0.6)
    ax.set_ylabel("exponent")
    ax.set_title("duality: alpha_D = alpha_P = alpha_K (95% intervals)", fontsize=9)
    ax.legend(fontsize=6.5)
    # regime map and spectrum
    regimes.plot_regime_map(_regime_map_from(ds), ax=axes[1, 0])
    axes[1, 0].set_title(f"regime map of the grid ({ds.attrs['n_seeds']} seeds)", fontsize=9)
    ax = axes[1, 1]
    ax.loglog(ds.index.values, ds.empirical_eigenvalues.values, ".", ms=3,
              label=f"student kernel F F^T / P on {ds.attrs['empirical_kernel_points']} points")
    ax.loglog(ds.task_index.values, ds.task_eigenvalues.values, "-", lw=1,
              label=f"task spectrum lambda_i ~ i^-{1 + ak_task:g}")
    ak, lo, hi = legs[2][1:]
    finish(ax, xlabel="index i", ylabel="eigenvalue (eig(K)/n)",
           title=f"kernel spectrum: alpha_K = {ak:.3f} [{lo:.3f}, {hi:.3f}] (i = 3..100)")
    ax = axes[1, 2]
    ratio = (mean / theory).transpose("D", "P").values
    finite = np.isfinite(ratio) & (ratio > 0)
    im = ax.pcolormesh(P, D, np.where(finite, ratio, np.nan), shading="nearest", cmap="coolwarm", vmin=0.5, vmax=1.5)
    plt.colorbar(im, ax=ax, label="measured / theory")
    ax.set_xscale("log")
    ax.set_yscale("log")
    finish(ax, xlabel="P (features)", ylabel="D (training points)", legend="",
           title=f"measured / theory: median |ratio - 1| = {np.median(np.abs(ratio[finite] - 1)):.3f}")
    fig.suptitle("Fig. 2 - duality in the random-feature teacher-student model", fontsize=11)
    fig.tight_layout()
    return fig


def rows(ds: xr.Dataset) -> list[Row]:
    """alpha_D and alpha_P against the finite-window theory, their paired difference, alpha_K."""
    D, P = ds.D.values, ds.P.values
    w, m, ak_task = ds.attrs["window"], ds.attrs["min_size"], ds.attrs["alpha_K_task"]
    a = {leg: tuple(float(ds[v].sel(leg=leg)) for v in ("alpha", "alpha_lo", "alpha_hi", "theory_alpha"))
         for leg in ("D", "P")}
    label = f"rf_theory, same window (alpha_K = {ak_task:g})"
    return [
        Row("Fig. 2", f"alpha_D (P = {P[-1]}, {m} <= D <= P/{w})", *a["D"], label, "resolution-limited"),
        Row("Fig. 2", f"alpha_P (D = {D[-1]}, {m} <= P <= D/{w})", *a["P"], label, "resolution-limited"),
        Row("Fig. 2", "alpha_D - alpha_P (paired over seeds)", float(ds.difference), float(ds.difference_lo),
            float(ds.difference_hi), a["D"][3] - a["P"][3], "rf_theory, same windows"),
        Row("Fig. 2", "alpha_K of the empirical student kernel (i = 3..100)", float(ds.alpha_K_empirical),
            float(ds.alpha_K_empirical_lo), float(ds.alpha_K_empirical_hi), float(ds.alpha_K_true),
            "task spectrum, i = 3..10^4"),
    ]


def run(ctx: Context) -> list[Row]:
    """compute -> data/fig2_duality.nc -> plot -> figures/fig2_duality.png|pdf -> rows."""
    return run_figure(sys.modules[__name__], ctx)
