"""Fig. 1: the four scaling regimes, for random-feature (kernel) models and trained networks.

Random features: the teacher-student grid (alpha_K = 0.3). Variance-limited: loss vs D at
the smallest P for D >= 16 P, and loss vs P at the smallest D for P >= 16 D, both
``L - L_inf ~ x^-1``. Resolution-limited: loss vs D at the largest P (D <= P/16) and vs P
at the largest D: ``L ~ x^-alpha_K``.

Trained networks: variance-limited width scaling, ``E[L(width)] - L(inf) ~ 1/width``, for
NTK-parameterised MLPs trained by gradient descent on a random-network teacher, against the
infinite-width ensemble computed by neural-tangents; and resolution-limited data scaling of
wide MLPs on digits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import experiments
import kernels
import regimes
import scaling

from ._common import ALPHA_K, Context, Row, finish, plot_curve, seed_bootstrap_exponent, \
    teacher_student_rf_spec

NAME = "fig1_regimes"
CONFIG = {
    "quick": {"widths": [128, 256, 512, 1024], "width_seeds": 24, "width_D": 16, "steps": 600,
              "digits_D": [50, 100, 200, 400, 800], "digits_width": 256, "digits_seeds": 3, "digits_steps": 1500,
              "digits_batch": 50,  # minibatches <= the smallest D: every D in one device program
              "variance_sizes": [64, 128, 256, 512, 1024, 2048], "variance_seeds_D": 256, "variance_seeds_P": 256},
    "full": {"widths": [128, 256, 512, 1024, 2048, 4096, 8192], "width_seeds": 64, "width_D": 64, "steps": 4000,
             "digits_D": [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600], "digits_width": 2048,
             "digits_seeds": 5, "digits_steps": 10000, "digits_batch": None,
             "variance_sizes": [64, 128, 256, 512, 1024, 2048, 4096, 8192], "variance_seeds_D": 1024,
             "variance_seeds_P": 1024},
}


def variance_specs(cfg, preset):
    """Dedicated sweeps for the variance-limited edges: 4 features (or 4 points) and many
    seeds. The variance term fluctuates by ~sqrt(2/4) of itself per seed, so its shape needs
    hundreds of replicates; they are cheap here. The spectrum's truncation at S = 2e4 does
    not matter in this regime."""
    task = {"kind": "teacher_student", "n_features": 20000, "alpha": ALPHA_K}
    sizes = cfg["variance_sizes"]
    return (experiments.SweepSpec(task=task, model={"kind": "rf_ridge"}, name=f"fig1_variance_D_{preset}",
                                  grid={"D": sizes, "P": [4], "seed": list(range(cfg["variance_seeds_D"]))}),
            # only test_loss is used on this edge: excess_loss=False lets each few-point unit
            # draw student features given the teacher's (exact law, O(S (D + cells)))
            experiments.SweepSpec(task=task, model={"kind": "rf_ridge", "excess_loss": False},
                                  name=f"fig1_variance_P_{preset}",
                                  grid={"D": [4], "P": sizes, "seed": list(range(cfg["variance_seeds_P"]))}))


def rf_edges(grid: xr.Dataset, var_D: xr.Dataset, var_P: xr.Dataset, ratio: float = 16.0):
    """The four regime curves: (x, per-seed losses) each."""
    L = grid.test_loss.transpose("seed", "D", "P")
    D, P = grid.D.values, grid.P.values
    return {
        "variance_D": (var_D.D.values, var_D.excess_loss.isel(P=0).transpose("seed", "D").values),
        "variance_P": (var_P.P.values, var_P.test_loss.isel(D=0).transpose("seed", "P").values),
        "resolution_D": (D[(D >= 16) & (D <= P[-1] / ratio)], L.isel(P=-1).values[:, (D >= 16) & (D <= P[-1] / ratio)]),
        "resolution_P": (P[(P >= 16) & (P <= D[-1] / ratio)], L.isel(D=-1).values[:, (P >= 16) & (P <= D[-1] / ratio)]),
    }


def width_scaling(cfg, key=0) -> xr.Dataset:
    """Centred finite NTK-parameterised MLPs vs width, and their infinite-width limit.

    Each seed trains on ``y + f_0(X)`` and predicts ``f_T - f_0`` (a centred network): in
    the infinite-width limit this is the deterministic NTK predictor ``Theta(x, X)
    Theta^-1 y``, so finite-width deviations are not hidden under the O(1) randomness of
    the initial function. Records per seed the test loss and the mean squared deviation
    from the infinite-width predictor, whose expectation falls as 1/width.
    """
    rng = np.random.default_rng(key)
    d, D, n_test = 4, cfg["width_D"], 512
    x = rng.uniform(-1, 1, (D + n_test, d)).astype(np.float32)
    teacher = experiments.network("mlp", width=256, depth=2, out_dim=1, parameterization="ntk")
    y = np.asarray(teacher.apply(teacher.init(123, (1, d)), x), np.float32)
    x_tr, y_tr, x_te, y_te = x[:D], y[:D], x[D:], y[D:]
    arch = kernels.mlp(2, parameterization="ntk", W_std=np.sqrt(2.0), W_std_out=1.0)
    K = kernels.kernel_matrix(arch, np.concatenate([x_tr, x_te]).astype(np.float64), kind="ntk")
    f_inf = K[D:, :D] @ np.linalg.solve(K[:D, :D], y_tr.astype(np.float64))  # t = inf, infinite width
    L_inf = float(np.mean((f_inf - y_te) ** 2))
    lr = 1.0 / float(np.linalg.eigvalsh(K[:D, :D] / D).max())  # stable GD step for the summed-square mean loss
    cfg_train = experiments.TrainConfig(loss="mse", optimizer="sgd", learning_rate=lr, schedule="constant",
                                        steps=cfg["steps"], eval_every=cfg["steps"], patience=None)
    S = cfg["width_seeds"]
    losses, deviations = [], []
    for w in cfg["widths"]:
        net = experiments.network("mlp", width=w, depth=2, out_dim=1, parameterization="ntk")
        keys = jnp.stack([jax.random.key(1000 * w + s) for s in range(S)])
        # the initial parameters train() will draw (it initialises from fold_in(key, 0))
        p0 = jax.vmap(lambda k: net.init(jax.random.fold_in(k, 0), (1, d)))(keys)
        f0_tr, f0_te = experiments.predict(net, p0, x_tr), experiments.predict(net, p0, x_te)
        res = experiments.train(net, np.broadcast_to(x_tr, (S,) + x_tr.shape), y_tr[None] + f0_tr, x_tr, y_tr,
                                keys=keys, config=cfg_train)
        f = experiments.predict(net, res.params, x_te) - f0_te  # centred predictions, (S, n_test, 1)
        losses.append(np.mean((f - y_te[None]) ** 2, axis=(1, 2)))
        deviations.append(np.mean((f - f_inf[None]) ** 2, axis=(1, 2)))
    return xr.Dataset({"test_loss": (("width", "seed"), np.array(losses)),
                       "deviation": (("width", "seed"), np.array(deviations)), "L_inf": ((), L_inf)},
                      coords={"width": cfg["widths"], "seed": np.arange(S)},
                      attrs={"D": D, "input_dim": d, "learning_rate": lr, "steps": cfg["steps"],
                             "description": "centred NTK-parameterised MLPs (depth 2) trained by full-batch GD; "
                                            "deviation = mean squared distance to the infinite-width NTK predictor"})


def digits_spec(cfg, preset):
    return experiments.SweepSpec(
        task={"kind": "digits" if preset == "quick" else "mnist"}, model={"kind": "mlp", "depth": 2},
        grid={"D": cfg["digits_D"], "width": [cfg["digits_width"]], "seed": list(range(cfg["digits_seeds"]))},
        n_test=500 if preset == "quick" else 10000,
        train={"steps": cfg["digits_steps"], "eval_every": 100, "patience": 5, "learning_rate": 2e-3,
               "batch_size": cfg["digits_batch"]},
        name=f"fig1_mlp_data_{preset}")


def run(ctx: Context) -> list[Row]:
    import matplotlib.pyplot as plt

    cfg = CONFIG[ctx.preset]
    spec = teacher_student_rf_spec(ctx.preset)
    grid = ctx.sweep(spec)
    task = experiments.teacher_student(spec.task["n_features"], spec.task["alpha"])
    exact = kernels.rf_theory(task.eigenvalues, task.coefficients, grid.D.values, grid.P.values).test_mse
    var_D, var_P = (ctx.sweep(s) for s in variance_specs(cfg, ctx.preset))
    edges = rf_edges(grid, var_D, var_P)
    widths = width_scaling(cfg)
    ctx.save_dataset(widths, f"{NAME}_width")
    digits = ctx.sweep(digits_spec(cfg, ctx.preset))

    rows = []
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    panels = [("variance_D", "D", "P = 4", "power", 1.0, "variance-limited"),
              ("variance_P", "P", "D = 4", "offset", 1.0, "variance-limited"),
              ("resolution_D", "D", f"P = {int(grid.P[-1])}", "power", ALPHA_K, "resolution-limited"),
              ("resolution_P", "P", f"D = {int(grid.D[-1])}", "power", ALPHA_K, "resolution-limited")]
    for i, (name, xdim, fixed, form, theory, regime) in enumerate(panels):
        x, curves = edges[name]
        fit = seed_bootstrap_exponent(curves, x, form=form, key=i)
        label = regimes.classify(x, np.nanmean(curves, 0), skipna=True).label if form == "offset" else \
            regimes.classify(x, np.nanmean(curves, 0), l_inf=0.0, min_points=4, skipna=True).label
        if name == "variance_D":
            fixed += "; excess over the best 4-feature risk, known exactly"
        ax = axes[0, i] if i < 3 else axes[0, 2]
        sem = np.nanstd(curves, 0) / np.sqrt(curves.shape[0])
        y = np.nanmean(curves, 0)
        ylabel = "test loss (MSE)"
        if name == "variance_D":
            ylabel = "excess test loss over the best 4-feature risk"
            plot_curve(ax, x, y, label="excess loss (P = 4)", fit=fit, yerr=sem)
            ax.plot(x, y[0] * (x / x[0]) ** -1.0, "k:", lw=1, label="slope 1")
        elif form == "offset":
            floor = float(fit.fit.params["L_inf"])
            ylabel = "test loss - fitted L_inf"
            plot_curve(ax, x, y - floor, label=f"L - L_inf ({fixed})", yerr=sem, band=False)
            grid_x = np.geomspace(x.min(), x.max(), 50)
            line, = ax.plot(grid_x, fit.fit.predict(grid_x) - floor, "-", lw=1.2,
                            label=f"fit: alpha = {fit.alpha:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]")
            if fit.resampled is not None:  # band of L - L_inf, each resample minus its own floor
                excess = fit.resampled.predict(grid_x) - fit.resampled.params["L_inf"][:, None]
                ax.fill_between(grid_x, *np.nanquantile(excess, [0.025, 0.975], axis=0), color=line.get_color(),
                                alpha=0.18, lw=0)
            ax.plot(grid_x, (y[0] - floor) * (grid_x / x[0]) ** -1.0, "k:", lw=1, label="slope 1")
        else:
            plot_curve(ax, x, y, label=f"loss vs {xdim} ({fixed})", fit=fit, yerr=sem)
        finish(ax, xlabel=f"{xdim} ({'training points' if xdim == 'D' else 'features'})",
               ylabel=ylabel, title=f"random features: {regime} in {xdim}")
        theory_label = "1"
        if regime == "resolution-limited":  # the theory's exponent over the same window and sizes
            other = "P" if xdim == "D" else "D"
            th = exact.sel({xdim: x, other: exact[other].values[-1]}).values
            theory = float(scaling.fit(form, np.asarray(x, float), th).params["alpha"])
            theory_label = f"rf_theory, same window (alpha_K = {ALPHA_K})"
        rows.append(Row("Fig. 1", f"random features, {regime} {xdim} ({fixed})", fit.alpha, fit.lo, fit.hi,
                        theory, theory_label, label))
    axes[0, 2].set_title("random features: resolution-limited in D and P", fontsize=9)
    axes[0, 2].set_xlabel("D (training points) or P (features)")

    # Trained networks: width (variance-limited) and data (resolution-limited).
    dev = widths.deviation.values.T  # (seed, width)
    wv = widths.width.values.astype(float)
    fitw = seed_bootstrap_exponent(dev, wv, form="power", key=11)
    ax = axes[1, 0]
    plot_curve(ax, wv, np.mean(dev, 0), label=f"E|f(width) - f(inf)|^2, D = {widths.attrs['D']}", fit=fitw,
               yerr=np.std(dev, 0) / np.sqrt(dev.shape[0]))
    ax.plot(wv, np.mean(dev, 0)[0] * (wv / wv[0]) ** -1.0, "k:", lw=1, label="slope 1")
    finish(ax, xlabel="width (hidden units)", ylabel="MSE to the infinite-width predictor",
           title="trained MLPs: variance-limited in width")
    rows.append(Row("Fig. 1", f"trained MLP, variance-limited width: output deviation (D = {widths.attrs['D']})",
                    fitw.alpha, fitw.lo, fitw.hi, 1.0, "1",
                    regimes.classify(wv, np.mean(dev, 0), l_inf=0.0, min_points=4).label))
    dl = digits.test_loss.isel(width=0).transpose("seed", "D").values
    fitd = seed_bootstrap_exponent(dl, digits.D.values.astype(float), form="offset", key=12)
    ax = axes[1, 1]
    plot_curve(ax, digits.D.values, dl.mean(0), label=f"MLP width {cfg['digits_width']}", fit=fitd,
               yerr=dl.std(0) / np.sqrt(dl.shape[0]))
    finish(ax, xlabel="D (training points)", ylabel="test loss (MSE)",
           title=f"trained MLPs on {'digits' if ctx.preset == 'quick' else 'MNIST'}: resolution-limited in D")
    rows.append(Row("Fig. 1", "trained MLP, data scaling at large width", fitd.alpha, fitd.lo, fitd.hi, None, "",
                    regimes.classify(digits.D.values.astype(float), dl.mean(0)).label))
    ax = axes[1, 2]
    mean = grid.test_loss.mean("seed")
    for p in (16, 64, 256, 1024):
        row = mean.sel(P=p)
        ax.plot(grid.D.values, scaling.local_exponent(grid.D.values, row.values), "o-", ms=3, lw=1, label=f"P = {p}")
        ax.axvline(p, color=ax.lines[-1].get_color(), ls=":", lw=0.8)
    ax.axhline(ALPHA_K, color="k", ls="--", lw=0.8, label="alpha_K")
    ax.set_xscale("log")
    ax.set_ylim(-1.5, 1.5)
    finish(ax, xlabel="D (training points)", ylabel="local exponent -dlog L / dlog D",
           title="random features: crossover at D = P (dotted)", legend="lower left")
    fig.suptitle("Fig. 1 - the four scaling regimes (teacher-student, alpha_K = 0.3)", fontsize=11)
    fig.tight_layout()
    ctx.save_figure(fig, NAME)
    return rows
