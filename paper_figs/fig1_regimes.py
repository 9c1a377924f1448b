"""Fig. 1: the four scaling regimes, for random-feature (kernel) models and trained networks.

Random features (linear teacher-student, alpha_K = 0.3, exact population risks), each edge
from its own small sweep so that every fit spans 1.5 decades:

- variance-limited in D: ``P = 4`` features, ``D = 64..2048``; the excess over the best
  4-feature risk (known exactly per draw). For Gaussian features this is ordinary least
  squares with a Gaussian design, so ``E[excess] = floor * P / (D - P - 1)`` exactly: the
  theory compared is the exponent of ``1 / (D - 5)`` fitted over the same window (1.02, not 1).
- variance-limited in P: ``D = 4`` points, ``P = 64..2048``; the excess over the same draw's
  loss at ``P_ref = 65536`` features, with the risk averaged over the part of the projection
  the training points do not see (Rao-Blackwell: same mean, far less seed noise). By the
  exact D <-> P duality of this model, ``E[L(4, P)] = E[L_kernel(4)] (1 + 4 / (P - 5))``: the
  theory is the exponent of ``1/(P - 5) - 1/(P_ref - 5)`` over the same window.
- resolution-limited in D (``P = 2048``, ``D = 4..128``) and in P (``D = 2048``,
  ``P = 4..128``), quick sizes: compared with ``kernels.rf_theory`` fitted over the identical
  sizes (0.284 there, not alpha_K; its curve matches the measured seed means within ~1% down
  to 4 points, measured with 96 seeds).

Trained networks: variance-limited width scaling, ``E|f_width - f_inf|^2 ~ 1/width``, for
centred one-hidden-layer NTK-parameterised ReLU networks trained by gradient descent, against
the infinite-width network trained for the same number of steps (the NTK's linear dynamics,
exact); and resolution-limited data scaling of MLPs on digits (MNIST in the full preset).

``compute`` returns one Dataset with every curve (per-seed values too), fit, band, theory and
label; ``plot`` and ``rows`` read only that Dataset.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import experiments
import kernels
import regimes
import scaling

from ._common import (
    ALPHA_K,
    Context,
    Row,
    exponent_from,
    finish,
    fit_to_dataset,
    plot_curve_from,
    run_figure,
    seed_bootstrap_exponent,
)

NAME = "fig1_regimes"
CONFIG = {
    "quick": {"n_features": 20000,
              "resolution_sizes": [4, 8, 16, 32, 64, 128], "resolution_other": 2048, "resolution_seeds": 16,
              "variance_sizes": [64, 128, 256, 512, 1024, 2048], "variance_other": 4, "reference_P": 65536,
              "variance_seeds_D": 128, "variance_seeds_P": 32,
              "widths": [64, 203, 645, 2048], "width_seeds": 48, "width_D": 16, "width_depth": 1, "steps": 600,
              "digits_D": [50, 100, 200, 400, 800], "digits_width": 128, "digits_seeds": 3, "digits_steps": 800,
              "digits_batch": 50},  # minibatches <= the smallest D: every D in one device program
    "full": {"n_features": 100000,
             "resolution_sizes": [8, 16, 32, 64, 128, 256, 512], "resolution_other": 8192, "resolution_seeds": 32,
             "variance_sizes": [64, 128, 256, 512, 1024, 2048, 4096, 8192], "variance_other": 4,
             "reference_P": 1048576, "variance_seeds_D": 1024, "variance_seeds_P": 256,
             "widths": [64, 128, 256, 512, 1024, 2048, 4096, 8192], "width_seeds": 128, "width_D": 64,
             "width_depth": 1, "steps": 4000,
             "digits_D": [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600], "digits_width": 2048,
             "digits_seeds": 5, "digits_steps": 10000, "digits_batch": None},
}
N_BOOT = 400
PANELS = ("variance_D", "variance_P", "resolution_D", "resolution_P", "width", "digits")


def _task(cfg, **extra) -> dict:
    return {"kind": "teacher_student", "n_features": cfg["n_features"], "alpha": ALPHA_K, **extra}


def resolution_specs(cfg: dict, preset: str) -> tuple[experiments.SweepSpec, experiments.SweepSpec]:
    """Loss vs D at ``P = resolution_other`` and loss vs P at ``D = resolution_other``.

    Ridgeless, exact population risk. The D edge (few points, many features) runs through
    experiments' projected draw, the P edge through the feature covariance; both are cheap.
    """
    sizes, other, seeds = cfg["resolution_sizes"], [cfg["resolution_other"]], list(range(cfg["resolution_seeds"]))
    model = {"kind": "rf_ridge", "ridge": 0.0, "excess_loss": False}
    return (experiments.SweepSpec(task=_task(cfg), model=model, grid={"D": sizes, "P": other, "seed": seeds},
                                  name=f"fig1_resolution_D_{preset}"),
            experiments.SweepSpec(task=_task(cfg), model=model, grid={"D": other, "P": sizes, "seed": seeds},
                                  name=f"fig1_resolution_P_{preset}"))


def variance_specs(cfg: dict, preset: str) -> tuple[experiments.SweepSpec, experiments.SweepSpec]:
    """The variance-limited edges: 4 features (or 4 points) and many seeds.

    D edge: ``excess_loss`` is the loss minus the best 4-feature risk of the same features,
    exactly. P edge: the sizes plus ``reference_P`` features (the same draw's near-kernel
    limit, subtracted per seed), with ``projection_risk="expected"``: each risk is averaged
    over the projection directions the 4 points do not see, which removes a cross term whose
    seed-to-seed spread is ``sqrt(P / D)`` times the ``1/P`` excess measured here.
    """
    sizes, few = cfg["variance_sizes"], [cfg["variance_other"]]
    return (experiments.SweepSpec(task=_task(cfg), model={"kind": "rf_ridge", "ridge": 0.0},
                                  grid={"D": sizes, "P": few, "seed": list(range(cfg["variance_seeds_D"]))},
                                  name=f"fig1_variance_D_{preset}"),
            experiments.SweepSpec(task=_task(cfg, projection_risk="expected"),
                                  model={"kind": "rf_ridge", "ridge": 0.0, "excess_loss": False},
                                  grid={"D": few, "P": sizes + [cfg["reference_P"]],
                                        "seed": list(range(cfg["variance_seeds_P"]))},
                                  name=f"fig1_variance_P_{preset}"))


def width_scaling(cfg: dict, key: int = 0) -> xr.Dataset:
    """Centred finite NTK-parameterised ReLU networks vs width, and their infinite-width limit.

    Each seed trains on ``y + f_0(X)`` and predicts ``f_T - f_0`` (a centred network): in the
    infinite-width limit this is the linear NTK dynamics, ``f_T = Theta(x, X) Theta^-1
    (I - (I - 2 eta Theta / D)^T) y`` after ``T`` steps of gradient descent with step ``eta``
    on ``mean((f - y)^2)``, deterministic, so finite-width deviations are not hidden under the
    O(1) randomness of the initial function, nor under an unconverged slow mode. Records per
    seed the test loss and the mean squared deviation from that predictor, whose expectation
    falls as 1/width.

    Examples
    --------
    >>> cfg = dict(CONFIG["quick"], widths=[64, 256], width_seeds=2, steps=50)
    >>> ds = width_scaling(cfg)  # doctest: +SKIP
    >>> ds.deviation.dims  # doctest: +SKIP
    ('width', 'seed')
    """
    rng = np.random.default_rng(key)
    d, D, n_test, depth = 4, cfg["width_D"], 512, cfg["width_depth"]
    x = rng.uniform(-1, 1, (D + n_test, d)).astype(np.float32)
    teacher = experiments.network("mlp", width=256, depth=2, out_dim=1, parameterization="ntk")
    y = np.asarray(jax.jit(lambda k: teacher.apply(teacher.init(k, (1, d)), x))(jax.random.key(123)), np.float32)
    x_tr, y_tr, x_te, y_te = x[:D], y[:D], x[D:], y[D:]
    arch = kernels.mlp(depth, parameterization="ntk", W_std=np.sqrt(2.0), W_std_out=1.0)
    K = kernels.kernel_matrix(arch, np.concatenate([x_tr, x_te]).astype(np.float64), kind="ntk")
    ev, V = np.linalg.eigh(K[:D, :D] / D)
    lr = 1.0 / float(ev.max() + ev.min())  # the fastest uniform contraction of the residual, |1 - 2 lr ev| < 1
    residual = (1.0 - 2.0 * lr * ev) ** cfg["steps"]  # of each kernel mode after T steps
    learned = V @ ((1.0 - residual) * (V.T @ y_tr[:, 0].astype(np.float64)))
    f_inf = K[D:, :D] @ np.linalg.solve(K[:D, :D], learned)  # infinite width, the same T steps
    L_inf = float(np.mean((f_inf - y_te[:, 0]) ** 2))
    cfg_train = experiments.TrainConfig(loss="mse", optimizer="sgd", learning_rate=lr, schedule="constant",
                                        steps=cfg["steps"], eval_every=cfg["steps"], patience=None)
    S = cfg["width_seeds"]
    losses, deviations = [], []
    for w in cfg["widths"]:
        net = experiments.network("mlp", width=w, depth=depth, out_dim=1, parameterization="ntk")
        keys = jax.vmap(lambda s: jax.random.key(1000 * w + s))(jnp.arange(S))
        # the initial functions of the parameters train() will draw (it initialises from
        # fold_in(key, 0)), on training and test points: one compiled program per width
        f0 = np.asarray(jax.jit(jax.vmap(lambda k: net.apply(net.init(jax.random.fold_in(k, 0), (1, d)), x)))(keys))
        f0_tr, f0_te = f0[:, :D], f0[:, D:]
        res = experiments.train(net, np.broadcast_to(x_tr, (S,) + x_tr.shape), y_tr[None] + f0_tr, x_tr, y_tr,
                                keys=keys, config=cfg_train)
        f = np.asarray(experiments.predict(net, res.params, x_te) - f0_te, np.float64)[..., 0]  # (S, n_test)
        losses.append(np.mean((f - y_te[None, :, 0]) ** 2, axis=1))
        deviations.append(np.mean((f - f_inf[None]) ** 2, axis=1))
    return xr.Dataset({"test_loss": (("width", "seed"), np.array(losses)),
                       "deviation": (("width", "seed"), np.array(deviations)), "L_inf": ((), L_inf)},
                      coords={"width": cfg["widths"], "seed": np.arange(S)},
                      attrs={"D": D, "input_dim": d, "depth": depth, "learning_rate": lr, "steps": cfg["steps"],
                             "slowest_mode_residual": float(np.abs(residual).max()),
                             "description": "centred NTK-parameterised ReLU MLPs trained by full-batch GD; "
                                            "deviation = mean squared distance to the infinite-width network "
                                            "trained for the same steps"})


def digits_spec(cfg: dict, preset: str) -> experiments.SweepSpec:
    return experiments.SweepSpec(
        task={"kind": "digits" if preset == "quick" else "mnist"}, model={"kind": "mlp", "depth": 2},
        grid={"D": cfg["digits_D"], "width": [cfg["digits_width"]], "seed": list(range(cfg["digits_seeds"]))},
        n_test=500 if preset == "quick" else 10000,
        train={"steps": cfg["digits_steps"], "eval_every": 100, "patience": 5, "learning_rate": 2e-3,
               "batch_size": cfg["digits_batch"]},
        name=f"fig1_mlp_data_{preset}")


def _power_exponent(x, y) -> float:
    """The exponent of a power law fitted to a noise-free theory curve over the same sizes."""
    return float(scaling.fit("power", np.asarray(x, float), np.asarray(y, float)).params["alpha"])


def _regime_labels(panels: dict) -> dict:
    """``regimes.classify`` labels of seed-mean curves, ``{prefix: (x, curves, l_inf)}`` ->
    ``{prefix: label}``.

    Curves whose sizes are the same multiples of their first size (and the same ``l_inf``) go
    through ONE batched call, in sizes relative to the first: a power law (with or without an
    offset) is scale-free, so the labels are those of the sizes themselves, and one compiled
    fit serves every curve (a call per curve compiles its own fits: seconds each).
    """
    groups: dict = {}
    for prefix, (x, curves, l_inf) in panels.items():
        rel = tuple(np.round(np.asarray(x, float) / x[0], 9))
        groups.setdefault((rel, l_inf), []).append((prefix, np.nanmean(curves, axis=0)))
    labels = {}
    for (rel, l_inf), members in groups.items():
        res = regimes.classify(np.array(rel), np.stack([m for _, m in members]), l_inf=l_inf, min_points=4,
                               skipna=True)
        for i, (prefix, _) in enumerate(members):
            labels[prefix] = str(np.asarray(res.label).reshape(-1)[i])
    return labels


def _panel(prefix: str, x, curves, *, form: str, key: int, theory: float, theory_label: str, theory_y,
           quantity: str, label: str, **text) -> xr.Dataset:
    """One panel as data: per-seed curves, seed mean and s.e.m., the fit with its band, the
    theory value for the same finite setting (and its curve at the same sizes), and labels."""
    x = np.asarray(x, dtype=float)
    curves = np.asarray(curves, dtype=float)
    fit = seed_bootstrap_exponent(curves, x, form=form, n_boot=N_BOOT, key=key)
    mean = np.nanmean(curves, axis=0)
    sem = np.nanstd(curves, axis=0) / np.sqrt(curves.shape[0])
    ds = fit_to_dataset(prefix, fit, x=x, y=mean, yerr=sem)
    if form == "offset":  # the curve above its fitted floor, for log axes
        floor = float(fit.fit.params["L_inf"])
        ds[f"{prefix}_floor"] = floor
    ds[f"{prefix}_curves"] = ((f"{prefix}_seed", f"{prefix}_point"), curves)
    ds[f"{prefix}_theory_y"] = (f"{prefix}_point", np.full(x.shape, np.nan) if theory_y is None
                                else np.asarray(theory_y, dtype=float))
    ds[f"{prefix}_theory"] = float(theory)
    # labels as dataset attrs (merged by compute): "<prefix>_<field>"
    meta = dict(quantity=quantity, theory_label=theory_label, regime=label, form=form, **text)
    ds.attrs.update({f"{prefix}_{k}": v for k, v in meta.items()})
    return ds


def compute(ctx: Context) -> xr.Dataset:
    """Run Fig. 1's sweeps and fits; one Dataset with every panel (see the module docstring)."""
    cfg = CONFIG[ctx.preset]
    task = experiments.teacher_student(cfg["n_features"], ALPHA_K)
    res_D, res_P = (ctx.sweep(s) for s in resolution_specs(cfg, ctx.preset))
    var_D, var_P = (ctx.sweep(s) for s in variance_specs(cfg, ctx.preset))
    widths = width_scaling(cfg)
    digits = ctx.sweep(digits_spec(cfg, ctx.preset))
    todo = []  # every panel's arguments; labelled together below

    # variance-limited in D: excess over the best P-feature risk (OLS with a Gaussian design)
    p = int(var_D.P[0])
    xD = var_D.D.values.astype(float)
    excess = var_D.excess_loss.isel(P=0).transpose("seed", "D").values
    floor = (var_D.test_loss - var_D.excess_loss).isel(P=0).transpose("seed", "D").values
    todo.append(dict(
        prefix="variance_D", x=xD, curves=excess, form="power", key=0, l_inf=0.0,
        theory=_power_exponent(xD, 1.0 / (xD - p - 1)),
        theory_label=f"1/(D - {p + 1}) over the same window (exact for OLS; 1 asymptotically)",
        theory_y=np.nanmean(floor) * p / (xD - p - 1),
        quantity=f"random features, variance-limited D (P = {p}; excess over the best {p}-feature risk)",
        xlabel="D (training points)", ylabel=f"excess over the best {p}-feature risk",
        title=f"random features: variance-limited in D (P = {p})",
        curve_label=f"excess loss (P = {p})", theory_curve_label=f"E[floor] {p}/(D - {p + 1}) (exact)"))

    # variance-limited in P: excess over the same draw's reference_P loss
    n = int(var_P.D[0])
    L = var_P.test_loss.isel(D=0).transpose("seed", "P").values
    p_ref = int(var_P.P[-1])
    xP = var_P.P.values[:-1].astype(float)
    shape = 1.0 / (xP - n - 1) - 1.0 / (p_ref - n - 1)
    todo.append(dict(
        prefix="variance_P", x=xP, curves=L[:, :-1] - L[:, -1:], form="power", key=1, l_inf=0.0,
        theory=_power_exponent(xP, shape),
        theory_label=f"1/(P - {n + 1}) - 1/({p_ref} - {n + 1}) over the same window (exact by D <-> P duality; "
                     "1 asymptotically)",
        theory_y=np.mean(L[:, -1]) * n * shape / (1.0 + n / (p_ref - n - 1)),
        quantity=f"random features, variance-limited P (D = {n}; excess over P = {p_ref}, same draw)",
        xlabel="P (features)", ylabel=f"L(P) - L(P = {p_ref}), same draw",
        title=f"random features: variance-limited in P (D = {n})",
        curve_label=f"excess loss (D = {n})", theory_curve_label=f"E[L_ref] {n}/(P - {n + 1}) (exact, duality)"))

    # resolution-limited: rf_theory over the identical sizes
    for i, (leg, ds, other) in enumerate((("D", res_D, "P"), ("P", res_P, "D"))):
        x = ds[leg].values.astype(float)
        big = int(ds[other][0])
        curves = ds.test_loss.isel({other: 0}).transpose("seed", leg).values
        sizes = (x, [big]) if leg == "D" else ([big], x)
        th = kernels.rf_theory(task.eigenvalues, task.coefficients, *sizes).test_mse.values.ravel()
        todo.append(dict(
            prefix=f"resolution_{leg}", x=x, curves=curves, form="power", key=2 + i, l_inf=0.0,
            theory=_power_exponent(x, th), theory_label=f"rf_theory, same window and sizes (alpha_K = {ALPHA_K})", theory_y=th,
            quantity=f"random features, resolution-limited {leg} ({other} = {big})",
            xlabel="D (training points) or P (features)", ylabel="test loss (MSE)",
            title="random features: resolution-limited in D and P",
            curve_label=f"loss vs {leg} ({other} = {big})", theory_curve_label=f"rf_theory ({leg})"))

    # trained networks: variance-limited in width
    wv = widths.width.values.astype(float)
    todo.append(dict(
        prefix="width", x=wv, curves=widths.deviation.transpose("seed", "width").values, form="power", key=4, l_inf=0.0,
        theory=1.0, theory_label="1 (leading term of the 1/width expansion)", theory_y=None,
        quantity=f"trained MLP, variance-limited width: output deviation (D = {widths.attrs['D']})",
        xlabel="width (hidden units)", ylabel="MSE to the infinite-width network",
        title=f"trained MLPs (depth {widths.attrs['depth']}): variance-limited in width",
        curve_label=f"E|f(width) - f(inf)|^2, D = {widths.attrs['D']}", theory_curve_label=""))

    # trained networks: data scaling on real data (no theory: the offset and exponent are measured)
    dl = digits.test_loss.isel(width=0).transpose("seed", "D").values
    data_name = "digits" if ctx.preset == "quick" else "MNIST"
    todo.append(dict(
        prefix="digits", x=digits.D.values.astype(float), curves=dl, form="offset", key=5, l_inf=None, theory=np.nan,
        theory_label="", theory_y=None, quantity="trained MLP, data scaling at large width",
        xlabel="D (training points)", ylabel="test loss (MSE)",
        title=f"trained MLPs on {data_name}: resolution-limited in D",
        curve_label=f"MLP width {cfg['digits_width']}", theory_curve_label=""))

    labels = _regime_labels({t["prefix"]: (t["x"], t["curves"], t.pop("l_inf")) for t in todo})
    panels = [_panel(label=labels[t["prefix"]], **t) for t in todo]
    out = xr.merge(panels, compat="no_conflicts", combine_attrs="drop")
    for ds in panels:
        out.attrs.update(ds.attrs)
    out.attrs.update(panels=list(PANELS), alpha_K=ALPHA_K, n_features=cfg["n_features"],
                     width_learning_rate=float(widths.attrs["learning_rate"]), width_steps=int(widths.attrs["steps"]),
                     width_slowest_mode_residual=float(widths.attrs["slowest_mode_residual"]),
                     description="Fig. 1: variance- and resolution-limited scaling; every exponent beside the "
                                 "theory for the same finite setting")
    return out


_META = ("quantity", "theory_label", "regime", "form", "xlabel", "ylabel", "title", "curve_label",
         "theory_curve_label")


def _meta(ds: xr.Dataset, prefix: str) -> dict:
    return {k: str(ds.attrs[f"{prefix}_{k}"]) for k in _META}


def plot(ds: xr.Dataset):
    """Six panels from ``ds`` only: four random-feature edges (two share an axis), trained
    MLPs in width and in data, and every exponent beside its theory."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    where = {"variance_D": axes[0, 0], "variance_P": axes[0, 1], "resolution_D": axes[0, 2],
             "resolution_P": axes[0, 2], "width": axes[1, 0], "digits": axes[1, 1]}
    for prefix in PANELS:
        ax, meta = where[prefix], _meta(ds, prefix)
        if meta["form"] == "offset":
            floor = float(ds[f"{prefix}_floor"])
            x, y, yerr = (ds[f"{prefix}_{k}"].values for k in ("x", "y", "yerr"))
            line = ax.errorbar(x, y - floor, yerr=yerr, fmt="o", ms=4, mec="k", mew=0.4, lw=0.8, capsize=2,
                               label=f"{meta['curve_label']}: L - fitted L_inf ({floor:.3f})")
            a, lo, hi = exponent_from(ds, prefix)
            grid = ds[f"{prefix}_grid"].values
            c = line[0].get_color()
            ax.plot(grid, ds[f"{prefix}_line"].values - floor, "-", color=c, lw=1.2,
                    label=f"fit: alpha = {a:.2f} [{lo:.2f}, {hi:.2f}]")
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            c = plot_curve_from(ds, prefix, ax, label=meta["curve_label"])
        th = ds[f"{prefix}_theory_y"].values
        if np.isfinite(th).any():
            ax.plot(ds[f"{prefix}_x"].values, th, "--", color=c, lw=1, label=meta["theory_curve_label"])
        if prefix in ("variance_D", "variance_P", "width"):
            x, y = ds[f"{prefix}_x"].values, ds[f"{prefix}_y"].values
            ax.plot(x, y[0] * (x / x[0]) ** -1.0, "k:", lw=1, label="slope 1")
        finish(ax, xlabel=meta["xlabel"], ylabel=meta["ylabel"], title=meta["title"])

    ax = axes[1, 2]  # every exponent beside the theory for the same finite setting
    names = [p for p in PANELS if np.isfinite(float(ds[f"{p}_theory"]))]
    for i, prefix in enumerate(names):
        a, lo, hi = exponent_from(ds, prefix)
        ax.errorbar([i], [a], yerr=[[a - lo], [hi - a]], fmt="o", color="C0", ms=5, capsize=3,
                    label="measured (95%)" if i == 0 else None)
        ax.plot([i - 0.3, i + 0.3], [float(ds[f"{prefix}_theory"])] * 2, "k-", lw=1.5,
                label="theory, same finite setting" if i == 0 else None)
    ax.axhline(ALPHA_K, color="0.5", ls=":", lw=0.8, label=f"alpha_K = {ALPHA_K}")
    ax.axhline(1.0, color="0.5", ls="--", lw=0.8, label="1")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([p.replace("_", "\n") for p in names], fontsize=7)
    finish(ax, xlabel="panel", ylabel="exponent", title="exponents: measured vs theory", legend="center right")
    fig.suptitle(f"Fig. 1 - the four scaling regimes (teacher-student, alpha_K = {ALPHA_K})", fontsize=11)
    fig.tight_layout()
    return fig


def rows(ds: xr.Dataset) -> list[Row]:
    """One report row per panel, from ``ds`` only."""
    out = []
    for prefix in PANELS:
        meta = _meta(ds, prefix)
        a, lo, hi = exponent_from(ds, prefix)
        theory = float(ds[f"{prefix}_theory"])
        out.append(Row("Fig. 1", meta["quantity"], a, lo, hi, theory if np.isfinite(theory) else None,
                       meta["theory_label"], meta["regime"]))
    return out


def run(ctx: Context) -> list[Row]:
    return run_figure(sys.modules[__name__], ctx)
