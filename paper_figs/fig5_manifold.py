"""Fig. 5 (paper Fig. 3 and Fig. 1b): the data manifold sets the exponent.

Super-classing merges classes into fewer groups: the loss changes, the exponent (nearly)
does not. Input noise thickens the data manifold: the exponent changes. Both are kernel
ridge regression with the NTK of a fully connected ReLU network (the infinite-width limit),
averaged over seeds, beside the exponents eigenlearning predicts from the data's NTK
spectrum and the targets' coefficients over the same window.

Teacher-student on the d-cube ``[-1, 1]^d``: a genuinely d-dimensional teacher (a ReLU
network *with biases*, and a smooth Gaussian-process draw; see
:func:`experiments.hypercube_teacher`) learned by NTK regression whose kernel has biases
too (``b_std > 0``: neither is 1-homogeneous, so the problem does not collapse onto the
sphere ``S^(d-1)``). Per d: the windowed fit and the last-octave slope, each against (a) the
learning curve predicted from the measured NTK spectrum and the teacher's coefficients in its
eigenbasis (eigenlearning on a pool of points, fitted the same way over the same D), and (b)
the paper's heuristic ``4/d``.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import xarray as xr

import experiments
import kernels
import regimes
import scaling

from ._common import (Context, Row, exponent_from, finish, fit_to_dataset, plot_curve_from, run_figure,
                      seed_bootstrap_exponent)

NAME = "fig5_manifold"
KRR = {"kind": "krr", "kernel": "ntk", "depth": 2, "ridge": 1e-3}
CUBE_B_STD = 1.0  # bias std of the teacher networks and of the student NTK
CUBE_RIDGE = 1e-4
SUPERCLASS_SEED = 0
TEACHERS = {"relu_network": "ReLU network with biases", "gaussian_process": "smooth GP draw"}
CONFIG = {
    "quick": {"data": "digits", "D": [50, 100, 200, 400, 800], "seeds": 8, "n_classes": [10, 5, 2],
              "noise": [0.0, 1.0, 3.0], "n_test": 400, "sc_pool": None,
              "dims": [2, 4, 8], "cube_D": [32, 45, 64, 91, 128, 181, 256, 362, 512], "cube_seeds": 6,
              "cube_n_test": 500, "cube_pool": 1024},
    "full": {"data": "cifar100", "D": [250, 500, 1000, 2000, 4000, 8000, 16000], "seeds": 8,
             "n_classes": [100, 20, 10, 5, 2], "noise": [0.0, 0.25, 0.5, 1.0, 2.0], "n_test": 2000, "sc_pool": 20000,
             "dims": [2, 3, 4, 5, 6, 7, 8, 9],
             "cube_D": [256, 362, 512, 724, 1024, 1448, 2048, 2896, 4096], "cube_seeds": 8,
             "cube_n_test": 2000, "cube_pool": 8192},
}
# the whole D window, and its last factor 2 (three points sqrt(2) apart): the last-octave slope
FITS = {"window": slice(None), "last_octave": slice(-3, None)}


def _krr(task, grid, n_test, name, **model):
    return experiments.SweepSpec(task=task, model={**KRR, **model}, grid=grid, n_test=n_test, name=name)


def cube_task(d: int, teacher: str) -> dict:
    """The teacher-student task on ``[-1, 1]^d`` (biases in the network teacher)."""
    return {"kind": "hypercube_teacher", "input_dim": int(d), "teacher": teacher, "b_std": CUBE_B_STD}


def cube_kernel():
    """The student: the NTK of a depth-2 ReLU network with biases (the ``krr`` model's kernel)."""
    return kernels.mlp(KRR["depth"], b_std=CUBE_B_STD)


def spectral_prediction(K, Y, D, *, ridge: float) -> np.ndarray:
    """Held-out KRR test MSE predicted by eigenlearning from a pool's kernel matrix and targets.

    ``K (N, N)`` over a pool of N points, ``Y (N,)`` or ``(N, c)``: the spectrum ``eig(K)/N``
    and the targets' coefficients in its eigenbasis give :func:`kernels.krr_theory`'s curve for
    training sets of size ``D`` drawn from the pool, tested on the rest of the pool (its
    ``heldout_mse``). Several target columns give one curve each, shape ``(c, len(D))``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    >>> lam = np.arange(1, 401) ** -2.0
    >>> K = 400 * (U * lam) @ U.T                      # eig(K)/N = lam exactly
    >>> y = np.sqrt(400) * U @ np.sqrt(lam)             # coefficients v_i = sqrt(lam_i)
    >>> pred = spectral_prediction(K, y, [10, 100], ridge=0.0)
    >>> pred.shape, bool(pred[0, 1] < pred[0, 0])
    ((1, 2), True)
    """
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    s = kernels.spectrum(np.asarray(K, dtype=np.float64), y=Y)
    N = np.shape(K)[0]
    return np.stack([kernels.krr_theory(s.eigenvalues, s.coefficients[:, j], D, ridge=ridge,
                                        population_size=N).heldout_mse.values for j in range(Y.shape[1])])


def _digits_pool(cfg, ctx):
    """The images behind the spectrum's prediction, standardised as the tasks do (the training
    split's mean and std): all of them, or ``sc_pool`` drawn at random (their count must
    exceed every D: the prediction is for training sets drawn from this pool)."""
    ds = experiments.load_digits() if cfg["data"] == "digits" else experiments.load_dataset(cfg["data"], ctx.data_dir)
    mean = ds.x_train.mean(axis=0, keepdims=True)
    std = ds.x_train.std() + 1e-8
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
    x = ((x - mean) / std).reshape(x.shape[0], -1)
    labels = np.concatenate([ds.y_train, ds.y_test]).astype(np.int64)
    if cfg["sc_pool"] is not None and cfg["sc_pool"] < x.shape[0]:
        keep = np.random.default_rng(0).permutation(x.shape[0])[: cfg["sc_pool"]]
        x, labels = x[keep], labels[keep]
    return ds, x, labels


def _superclass_targets(labels, n_classes):
    """Centred one-hot targets after the tasks' super-class map (the same seed)."""
    cols = []
    for k in n_classes:
        lab = labels if k >= int(labels.max()) + 1 else experiments.superclass(
            labels, int(k), key=jax.random.key(SUPERCLASS_SEED))
        cols.append((np.eye(k) - 1.0 / k)[lab])
    return cols


def compute(ctx: Context) -> xr.Dataset:
    """Run the sweeps, the fits and the spectral predictions; everything :func:`plot` and
    :func:`rows` need, as one Dataset."""
    cfg = CONFIG[ctx.preset]
    task = {"kind": cfg["data"], "superclass_seed": SUPERCLASS_SEED}
    if cfg["data"] != "digits":
        task["path"] = ctx.data_dir
    if cfg["data"] == "cifar100":
        task["label"] = "fine"
    seeds = list(range(cfg["seeds"]))
    sc = ctx.sweep(_krr(task, {"D": cfg["D"], "seed": seeds, "n_classes": cfg["n_classes"]}, cfg["n_test"],
                        f"{NAME}_superclass_{ctx.preset}"))
    nz = ctx.sweep(_krr(task, {"D": cfg["D"], "seed": seeds, "noise": cfg["noise"]}, cfg["n_test"],
                        f"{NAME}_noise_{ctx.preset}"))
    D = np.asarray(cfg["D"], float)
    parts = []
    # -- super-classing: measured exponents, their differences, and the spectrum's prediction
    data, x_pool, labels = _digits_pool(cfg, ctx)
    K = kernels.kernel_matrix(kernels.mlp(KRR["depth"]), x_pool, kind="ntk")
    targets = _superclass_targets(labels, cfg["n_classes"])
    s = kernels.spectrum(K, y=np.concatenate(targets, axis=1))
    del K
    theory_sc, start = [], 0
    for Y in targets:
        c = s.coefficients[:, start:start + Y.shape[1]]
        start += Y.shape[1]
        theory_sc.append(kernels.krr_theory(s.eigenvalues, c, D, ridge=KRR["ridge"],
                                            population_size=x_pool.shape[0]).heldout_mse.values)
    fits, th_alpha = {}, []
    for i, k in enumerate(cfg["n_classes"]):
        curves = sc.test_loss.sel(n_classes=k).transpose("seed", "D").values
        # one key: every k resamples the same seed indices. (Not a paired design: a cell's training
        # draw depends on its n_classes, so the k are independent and the joint resampling is just valid.)
        fits[k] = seed_bootstrap_exponent(curves, D, key=0)
        parts.append(fit_to_dataset(f"sc{k}", fits[k], yerr=curves.std(0) / np.sqrt(len(seeds))))
        th_alpha.append(float(_theory_alpha(D, theory_sc[i])))
    k0 = cfg["n_classes"][0]
    diffs = []
    for k in cfg["n_classes"]:
        diff = np.asarray(fits[k].resampled.params["alpha"]) - np.asarray(fits[k0].resampled.params["alpha"])
        diffs.append([fits[k].alpha - fits[k0].alpha, *np.nanquantile(diff, [0.025, 0.975])])
    diffs = np.asarray(diffs)
    parts.append(xr.Dataset(
        {"sc_loss": (("n_classes", "seed", "D"), sc.test_loss.transpose("n_classes", "seed", "D").values),
         "sc_theory": (("n_classes", "D"), np.asarray(theory_sc)),
         "sc_theory_alpha": ("n_classes", np.asarray(th_alpha)),
         "sc_diff": ("n_classes", diffs[:, 0]), "sc_diff_lo": ("n_classes", diffs[:, 1]),
         "sc_diff_hi": ("n_classes", diffs[:, 2]),
         "sc_theory_diff": ("n_classes", np.asarray(th_alpha) - th_alpha[0])},
        coords={"n_classes": list(cfg["n_classes"]), "seed": seeds, "D": D},
        attrs={"sc_theory_pool": int(x_pool.shape[0])}))
    # -- input noise
    for s_ in cfg["noise"]:
        curves = nz.test_loss.sel(noise=s_).transpose("seed", "D").values
        f = seed_bootstrap_exponent(curves, D, key=int(10 * s_))
        parts.append(fit_to_dataset(f"noise{_tag(s_)}", f, yerr=curves.std(0) / np.sqrt(len(seeds))))
    noise_loss = nz.test_loss.transpose("noise", "seed", "D").values
    parts.append(xr.Dataset({"noise_loss": (("noise", "seed", "D"), noise_loss)},
                            coords={"noise": np.asarray(cfg["noise"], float), "seed": seeds, "D": D}))
    # -- teacher-student on d-cubes
    parts.append(_cube(ctx, cfg))
    # -- the real data's intrinsic dimension against its exponent
    X = data.x_train.reshape(data.x_train.shape[0], -1)
    idim = regimes.intrinsic_dimension(X, "twonn")
    pred = regimes.predicted_exponent(idim)
    out = xr.merge(parts, combine_attrs="no_conflicts")
    out.attrs.update({
        "data": cfg["data"], "krr_ridge": KRR["ridge"], "krr_depth": KRR["depth"],
        "intrinsic_dimension": float(idim), "intrinsic_dimension_lo": float(idim.spread[0]),
        "intrinsic_dimension_hi": float(idim.spread[1]),
        "predicted_alpha": float(pred.alpha), "predicted_alpha_lo": float(pred.lo),
        "predicted_alpha_hi": float(pred.hi), "n_seeds": len(seeds)})
    out["D"].attrs["units"] = "samples"
    out["D_cube"].attrs["units"] = "samples"
    return out


def _theory_alpha(D, y) -> float:
    """The exponent of a deterministic (theory) curve, by the same power-law fit as the data's."""
    return float(scaling.fit("power", np.asarray(D, float), np.asarray(y, float)).params["alpha"])


def _tag(s: float) -> str:
    return f"{s:g}".replace(".", "p")




def _cube(ctx: Context, cfg) -> xr.Dataset:
    """Learning curves on d-cubes, their exponents, and the spectrum's predictions."""
    Dc = np.asarray(cfg["cube_D"], float)
    if not np.isclose(Dc[-1] / Dc[-3], 2.0, rtol=0.02):
        raise ValueError(f"cube_D must end with three sizes spanning a factor 2 (the last octave), got {cfg['cube_D']}")
    seeds = list(range(cfg["cube_seeds"]))
    teachers, dims = list(TEACHERS), list(cfg["dims"])
    shape = (len(teachers), len(dims))
    loss = np.full(shape + (len(seeds), len(Dc)), np.nan)
    theory = np.full(shape + (len(Dc),), np.nan)
    alpha = {k: np.full(shape + (len(FITS),), np.nan) for k in ("alpha", "alpha_lo", "alpha_hi", "theory_alpha")}
    for j, d in enumerate(dims):
        # the prediction: one pool of fresh points (a key apart from every cell's), both
        # teachers' values on it, one eigendecomposition of the student's NTK
        x = np.random.default_rng([2**20, d]).uniform(-1.0, 1.0, (cfg["cube_pool"], d))
        Y = np.stack([experiments.hypercube_teacher(d, t, b_std=CUBE_B_STD)(x) for t in teachers], axis=1)
        theory[:, j] = spectral_prediction(kernels.kernel_matrix(cube_kernel(), x, kind="ntk"), Y, Dc,
                                           ridge=CUBE_RIDGE)
        for i, t in enumerate(teachers):
            ds = ctx.sweep(_krr(cube_task(d, t), {"D": cfg["cube_D"], "seed": seeds}, cfg["cube_n_test"],
                                f"{NAME}_cube_{t}_d{d}_{ctx.preset}", ridge=CUBE_RIDGE, b_std=CUBE_B_STD))
            loss[i, j] = ds.test_loss.transpose("seed", "D").values
            for f, sl in enumerate(FITS.values()):
                fit = seed_bootstrap_exponent(loss[i, j][:, sl], Dc[sl], key=d)
                alpha["alpha"][i, j, f], alpha["alpha_lo"][i, j, f], alpha["alpha_hi"][i, j, f] = (
                    fit.alpha, fit.lo, fit.hi)
                alpha["theory_alpha"][i, j, f] = _theory_alpha(Dc[sl], theory[i, j][sl])
    dims3 = ("teacher", "dim", "fit")
    return xr.Dataset(
        {"cube_loss": (("teacher", "dim", "seed_cube", "D_cube"), loss),
         "cube_theory": (("teacher", "dim", "D_cube"), theory),
         **{f"cube_{k}": (dims3, v) for k, v in alpha.items()},
         "cube_heuristic": ("dim", 4.0 / np.asarray(dims, float))},
        coords={"teacher": teachers, "teacher_label": ("teacher", [TEACHERS[t] for t in teachers]), "dim": dims,
                "fit": list(FITS), "seed_cube": seeds, "D_cube": Dc},
        attrs={"cube_b_std": CUBE_B_STD, "cube_ridge": CUBE_RIDGE, "cube_pool": int(cfg["cube_pool"]),
               "cube_n_test": int(cfg["cube_n_test"]), "cube_kernel": f"NTK, depth {KRR['depth']}, ReLU, b_std "
               f"{CUBE_B_STD}", "cube_theory": "eigenlearning (kernels.krr_theory, held-out) from eig(K)/N and the "
               "teacher's coefficients on a pool of N fresh points"})


def rows(ds: xr.Dataset) -> list[Row]:
    """The report rows, from the Dataset alone."""
    out = []
    data = ds.attrs["data"]
    ks = [int(k) for k in ds.n_classes.values]
    for k, th in zip(ks, ds.sc_theory_alpha.values):
        a, lo, hi = exponent_from(ds, f"sc{k}")
        out.append(Row("Fig. 5", f"super-classed to {k} classes: alpha_D", a, lo, hi, float(th),
                       "eigenlearning from the NTK spectrum (same window)", regime="resolution-limited"))
    for k in ks[1:]:
        sel = ds.sel(n_classes=k)
        out.append(Row("Fig. 5", f"alpha_D({k} classes) - alpha_D({ks[0]} classes), seeds resampled jointly",
                       float(sel.sc_diff), float(sel.sc_diff_lo), float(sel.sc_diff_hi), float(sel.sc_theory_diff),
                       "eigenlearning difference from the NTK spectrum (same window)", regime="resolution-limited"))
        out.append(Row("Fig. 5", f"alpha_D({k} classes) - alpha_D({ks[0]} classes), seeds resampled jointly",
                       float(sel.sc_diff), float(sel.sc_diff_lo), float(sel.sc_diff_hi), 0.0,
                       "0 (the paper: exponent independent of N)", regime="resolution-limited"))
    for s in ds.noise.values:
        a, lo, hi = exponent_from(ds, f"noise{_tag(float(s))}")
        out.append(Row("Fig. 5", f"input noise {float(s):g} (x std): alpha_D", a, lo, hi))
    Dc = ds.D_cube.values
    windows = {"window": f"D = {Dc[0]:g}..{Dc[-1]:g}", "last_octave": f"last octave D = {Dc[-3]:g}..{Dc[-1]:g}"}
    for t in ds.teacher.values:
        label = str(ds.teacher_label.sel(teacher=t).values)
        for d in ds.dim.values:
            for f in FITS:
                sel = ds.sel(teacher=t, dim=d, fit=f)
                a, lo, hi = float(sel.cube_alpha), float(sel.cube_alpha_lo), float(sel.cube_alpha_hi)
                q = f"d-cube, {label}, d = {int(d)}: alpha_D ({windows[f]})"
                out.append(Row("Fig. 5", q, a, lo, hi, float(sel.cube_theory_alpha),
                               "KRR theory from the measured NTK spectrum (same D)", regime="resolution-limited"))
                out.append(Row("Fig. 5", q, a, lo, hi, float(sel.cube_heuristic), "4/d (the paper's heuristic)",
                               regime="resolution-limited"))
    a, lo, hi = exponent_from(ds, f"sc{ks[0]}")
    idim = ds.attrs["intrinsic_dimension"]
    out.append(Row("Fig. 5", f"{data}: alpha_D vs 4/d from the TwoNN dimension {idim:.2f}", a, lo, hi,
                   ds.attrs["predicted_alpha"],
                   f"4/d [{ds.attrs['predicted_alpha_lo']:.2f}, {ds.attrs['predicted_alpha_hi']:.2f}]",
                   theory_interval=(ds.attrs["predicted_alpha_lo"], ds.attrs["predicted_alpha_hi"])))
    return out


def plot(ds: xr.Dataset):
    """Four panels from the Dataset alone: super-classing, input noise, d-cube learning curves
    with the spectrum's predictions, and 4/alpha_D against d."""
    import matplotlib.pyplot as plt

    data = ds.attrs["data"]
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8.2))
    ax = axes[0, 0]
    for k in ds.n_classes.values:
        a, lo, hi = exponent_from(ds, f"sc{int(k)}")
        c = plot_curve_from(ds, f"sc{int(k)}", ax, fit_label=None,
                            label=f"{int(k)} classes: alpha = {a:.2f} [{lo:.2f}, {hi:.2f}]")
        th = ds.sc_theory.sel(n_classes=k)
        ax.plot(ds.D.values, th.values, ":", color=c, lw=1.0,
                label=f"  spectrum theory: alpha = {float(ds.sc_theory_alpha.sel(n_classes=k)):.2f}")
    finish(ax, xlabel="D (training points)", ylabel="test MSE (centred one-hot)",
           title=f"super-classing {data}: the exponent (nearly) stays")
    ax = axes[0, 1]
    for s in ds.noise.values:
        a, lo, hi = exponent_from(ds, f"noise{_tag(float(s))}")
        plot_curve_from(ds, f"noise{_tag(float(s))}", ax, fit_label=None,
                        label=f"noise {float(s):g}: alpha = {a:.2f} [{lo:.2f}, {hi:.2f}]")
    finish(ax, xlabel="D (training points)", ylabel="test MSE (centred one-hot)",
           title="input noise: the exponent changes")
    ax = axes[1, 0]
    cmap = plt.get_cmap("viridis")
    Dc = ds.D_cube.values
    dims = ds.dim.values
    markers = {"relu_network": "o", "gaussian_process": "s"}
    for t in ds.teacher.values:
        for j, d in enumerate(dims):
            c = cmap(j / max(len(dims) - 1, 1))
            cur = ds.cube_loss.sel(teacher=t, dim=d)
            m = cur.mean("seed_cube").values
            se = cur.std("seed_cube").values / np.sqrt(cur.sizes["seed_cube"])
            ax.errorbar(Dc, m, yerr=se, fmt=markers.get(str(t), "o"), ms=3.5, color=c, mec="k", mew=0.3, capsize=1.5,
                        lw=0.7, label=f"d = {int(d)}" if t == ds.teacher.values[0] else None)
            ax.plot(Dc, ds.cube_theory.sel(teacher=t, dim=d).values, "-" if t == ds.teacher.values[0] else "--",
                    color=c, lw=1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.plot([], [], "ko-", ms=3.5, lw=1.0, label=f"{ds.teacher_label.values[0]} (theory solid)")
    if ds.sizes["teacher"] > 1:
        ax.plot([], [], "ks--", ms=3.5, lw=1.0, label=f"{ds.teacher_label.values[1]} (theory dashed)")
    finish(ax, xlabel="D (training points)", ylabel="test MSE",
           title="d-cube teachers, NTK regression (b_std > 0); lines: spectrum theory")
    ax = axes[1, 1]
    for i, t in enumerate(ds.teacher.values):
        for f, (mk, off) in zip(FITS, (("o", -0.08), ("D", 0.08))):
            sel = ds.sel(teacher=t, fit=f)
            a = sel.cube_alpha.values
            x = dims + off + 0.04 * i
            inv, inv_lo, inv_hi = 4 / a, 4 / sel.cube_alpha_hi.values, 4 / np.maximum(sel.cube_alpha_lo.values, 1e-3)
            c = f"C{i}"
            ax.errorbar(x, inv, yerr=[inv - inv_lo, inv_hi - inv], fmt=mk, ms=4, color=c, capsize=2, lw=0.8,
                        mfc=c if f == "window" else "white",
                        label=f"{ds.teacher_label.values[i]}, {f.replace('_', ' ')}")
            ax.plot(x, 4 / sel.cube_theory_alpha.values, "x", color=c, ms=6)
    ax.plot([], [], "kx", label="spectrum theory (same fit)")
    a, lo, hi = exponent_from(ds, f"sc{int(ds.n_classes.values[0])}")
    idim = ds.attrs["intrinsic_dimension"]
    ax.errorbar([idim], [4 / a], xerr=[[idim - ds.attrs["intrinsic_dimension_lo"]],
                                       [ds.attrs["intrinsic_dimension_hi"] - idim]],
                yerr=[[4 / a - 4 / hi], [4 / lo - 4 / a]], fmt="*", ms=8, color="C3", capsize=2,
                label=f"{data} (TwoNN dimension {idim:.1f})")
    lim = [0, max(float(dims.max()), idim) + 1]
    ax.plot(lim, lim, "k--", lw=1, label="4/alpha = d (the paper's heuristic)")
    ax.set_xlabel("data manifold dimension d")
    ax.set_ylabel("4 / alpha_D (95% interval)")
    ax.set_title("exponents against the dimension", fontsize=9)
    ax.legend(fontsize=6.0)
    fig.suptitle("Fig. 5 - the data manifold: super-classing, input noise, dimension", fontsize=11)
    fig.tight_layout()
    return fig


def run(ctx: Context) -> list[Row]:
    return run_figure(sys.modules[__name__], ctx)
