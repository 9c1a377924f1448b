"""Fig. 3 (supplement): random-feature models on pretrained embeddings.

The embeddings are the penultimate layer of an MLP trained here on the image data (or any
user-provided embeddings, ``--embeddings`` with ``--labels``). Student features are random
projections of them; the loss over (D, P) gives alpha_D vs alpha_P, and the spectrum of the
embedding kernel gives alpha_K.
"""

from __future__ import annotations

import jax
import numpy as np
import xarray as xr

import experiments
import kernels
import regimes

from ._common import Context, Row, finish, plot_curve, seed_bootstrap_exponent

NAME = "fig3_pretrained"
RATIO = 16  # fit sizes <= the other size / RATIO, as in Fig. 2
CONFIG = {
    "quick": {"data": "digits", "width": 1024, "steps": 1000, "sizes": [16, 24, 32, 48, 64, 96, 128, 256, 512, 1024],
              "seeds": 8},
    "full": {"data": "cifar10", "width": 1024, "steps": 20000,
             "sizes": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], "seeds": 16},
}


def train_embedding_network(ctx: Context, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Train an MLP on the image data set; return penultimate features of every image, and labels."""
    ds = experiments.load_dataset(cfg["data"], ctx.data_dir) if cfg["data"] != "digits" else experiments.load_digits()
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float32)
    labels = np.concatenate([ds.y_train, ds.y_test])
    mean, std = ds.x_train.mean(0), ds.x_train.std() + 1e-8
    xs = (x - mean) / std
    n_tr = ds.x_train.shape[0]
    net = experiments.network("mlp", width=cfg["width"], depth=2, out_dim=ds.n_classes)
    y = (np.eye(ds.n_classes) - 1.0 / ds.n_classes)[labels].astype(np.float32)
    res = experiments.train(net, xs[None, :n_tr], y[None, :n_tr], xs[n_tr:], y[n_tr:], keys=jax.random.key(0)[None],
                            config=experiments.TrainConfig(steps=cfg["steps"], eval_every=100, patience=5,
                                                           learning_rate=2e-3))
    params = jax.tree_util.tree_map(lambda a: a[0], res.params)
    return experiments.penultimate_features(net, params, xs), labels


def run(ctx: Context) -> list[Row]:
    import matplotlib.pyplot as plt

    cfg = CONFIG[ctx.preset]
    data = ctx.out / "data"
    if ctx.embeddings:
        emb_path, lab_path, source = ctx.embeddings, ctx.labels, "user-provided embeddings"
        if lab_path is None:
            raise ValueError("Fig. 3 with --embeddings needs --labels (a .npy of integer labels)")
    else:
        emb_path, lab_path = data / f"{NAME}_embeddings.npy", data / f"{NAME}_labels.npy"
        if not emb_path.exists():
            E, labels = train_embedding_network(ctx, cfg)
            np.save(emb_path, E)
            np.save(lab_path, labels)
        source = f"penultimate layer of an MLP trained on {cfg['data']}"
    E = experiments.load_embeddings(emb_path)
    sizes = [s for s in cfg["sizes"] if s <= int(0.8 * E.shape[0])]
    spec = experiments.SweepSpec(
        task={"kind": "embeddings", "path": str(emb_path), "labels": str(lab_path), "test_fraction": 0.2},
        # ridge 1e-2: with 1e-3 the min-norm interpolation peak (at D ~ the embedding's rank, a
        # few hundred) puts a bump inside the fitting window; 1e-2 removes it
        model={"kind": "rf_ridge", "features": "linear", "ridge": 1e-2},
        grid={"D": sizes, "P": sizes, "seed": list(range(cfg["seeds"]))}, n_test=10_000,
        name=f"{NAME}_{ctx.preset}" + ("_user" if ctx.embeddings else ""))
    grid = ctx.sweep(spec)
    # the window before the curves reach the label-noise floor (~D, P = 100 on digits)
    dual = regimes.duality(grid, ratio=RATIO, form="power", min_size=16, bootstrap=400)
    Es = (E - E.mean(0)) / (E.std() + 1e-12)
    s = kernels.spectrum(Es @ Es.T)
    n_eig = min(E.shape[1], s.eigenvalues.size)
    # the automatic range stops before the rounding floor (trained features have low rank)
    ak = kernels.spectral_exponent(np.maximum(s.eigenvalues[:n_eig], 0.0))
    ctx.save_dataset(xr.Dataset({"alpha": dual.alpha, "alpha_lo": dual.alpha_lo, "alpha_hi": dual.alpha_hi,
                                 "eigenvalues": ("index", s.eigenvalues)},
                                coords={"index": np.arange(1, s.eigenvalues.size + 1)},
                                attrs={"alpha_K": ak.alpha, "source": source}), NAME)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    top = sizes[-1]
    for leg, other, color, marker in (("D", "P", "C0", "o"), ("P", "D", "C1", "s")):
        # the windows regimes.duality fitted: the other size at its largest, this one <= top/RATIO
        edge = grid.test_loss.sel({other: top}).transpose("seed", leg)
        sel = (edge[leg].values >= 16) & (edge[leg].values <= top / RATIO)
        fit = seed_bootstrap_exponent(edge.values[:, sel], edge[leg].values[sel].astype(float), key=3)
        plot_curve(axes[0], edge[leg].values, edge.mean("seed").values, fit=fit, color=color, marker=marker,
                   yerr=edge.std("seed").values / np.sqrt(edge.sizes["seed"]), label=f"vs {leg} at {other} = {top}")
    finish(axes[0], xlabel="D (training points) or P (features)", ylabel="test loss (MSE, one-hot targets)",
           title="loss vs D tracks loss vs P (fits over the resolution-limited windows)", legend="upper right")
    ax = axes[1]
    for i, leg in enumerate(("D", "P")):
        v, lo, hi = (float(dual[k].sel(leg=leg)) for k in ("alpha", "alpha_lo", "alpha_hi"))
        ax.errorbar([i], [v], yerr=[[v - lo], [hi - v]], fmt="os"[i], ms=7, capsize=4, label=f"alpha_{leg}")
    ax.errorbar([2], [ak.alpha], yerr=[[ak.alpha - ak.ci[0]], [ak.ci[1] - ak.alpha]], fmt="^", ms=7, capsize=4,
                label="alpha_K (embedding kernel)")
    ax.set_xticks(range(3))
    ax.set_xticklabels(["alpha_D", "alpha_P", "alpha_K"])
    ax.set_ylabel("exponent")
    ax.legend(fontsize=6.5)
    ax.set_title(f"exponents (95% intervals); {source}", fontsize=8)
    ev = s.eigenvalues[s.eigenvalues > 1e-10 * s.eigenvalues[0]]  # beyond the numerical rank is rounding
    idx = np.arange(1, ev.size + 1)
    axes[2].loglog(idx, ev, ".", ms=3, label="embedding kernel E E^T")
    lo_i, hi_i = ak.index_range
    i_fit = np.arange(lo_i, hi_i + 1)
    amp = np.exp(np.mean(np.log(ev[lo_i - 1:hi_i]) + (1 + ak.alpha) * np.log(i_fit)))
    axes[2].loglog(i_fit, amp * i_fit ** -(1 + ak.alpha), "-", color="C3", lw=1.5,
                   label=f"fit lambda_i ~ i^-(1 + {ak.alpha:.2f})")
    finish(axes[2], xlabel="index i", ylabel="eigenvalue (eig(K)/n)",
           title=f"spectrum: alpha_K = {ak.alpha:.2f} [{ak.ci[0]:.2f}, {ak.ci[1]:.2f}] "
                 f"(i = {ak.index_range[0]}..{ak.index_range[1]})")
    fig.suptitle("Fig. 3 - random features on pretrained embeddings", fontsize=11)
    fig.tight_layout()
    ctx.save_figure(fig, NAME)
    d = float(dual.difference)
    return [
        Row("Fig. 3", "alpha_D, random features on embeddings", float(dual.alpha.sel(leg="D")),
            float(dual.alpha_lo.sel(leg="D")), float(dual.alpha_hi.sel(leg="D")), float(dual.alpha.sel(leg="P")),
            "alpha_P (duality)"),
        Row("Fig. 3", "alpha_P, random features on embeddings", float(dual.alpha.sel(leg="P")),
            float(dual.alpha_lo.sel(leg="P")), float(dual.alpha_hi.sel(leg="P")), None),
        Row("Fig. 3", "alpha_D - alpha_P", d, float(dual.difference_lo), float(dual.difference_hi), 0.0, "0 (duality)"),
        Row("Fig. 3", "alpha_K of the embedding kernel", ak.alpha, ak.ci[0], ak.ci[1], None),
    ]
