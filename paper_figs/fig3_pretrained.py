"""Fig. 3 (supplement): random-feature models on pretrained embeddings.

The embeddings are the penultimate layer of an MLP trained here on part of the image data
(or any user-provided embeddings, ``--embeddings`` with ``--labels``); the random-feature
study runs on the images the network never saw, as a network pretrained elsewhere would be
used. Student features are random projections of the embeddings; the loss over (D, P) gives
alpha_D vs alpha_P (the duality), and the spectrum of the embedding kernel gives alpha_K.

``compute`` returns one Dataset with the per-seed loss grid, the fitted edges with their 95%
bands, the duality test and the spectrum; ``plot`` and ``rows`` read only that Dataset.
"""

from __future__ import annotations

import hashlib
import sys
import warnings

import jax
import numpy as np
import xarray as xr

import experiments
import kernels
import regimes

from ._common import (
    Context,
    Row,
    finish,
    fit_to_dataset,
    plot_curve_from,
    run_figure,
    seed_bootstrap_exponent,
)

NAME = "fig3_pretrained"
RATIO = 16  # fit sizes <= the other size / RATIO, as in Fig. 2
MIN_SIZE = 16
# n_pretrain: images the embedding network trains on (the rest, never seen by it, are the
# random-feature study's data; before, the study's test images were among the network's training
# images). Width 512 and minibatches of 100: training the embedding took 35 s instead of 285 s
# (full batch, width 1024) in cProfile runs on the same loaded 2-core machine (10.5 s of CPU on
# one thread); width 256 costs the same time (per-step overhead) with a worse validation loss.
CONFIG = {
    "quick": {"data": "digits", "n_pretrain": 497, "width": 512, "steps": 1000, "batch_size": 100,
              "sizes": [16, 24, 32, 48, 64, 96, 128, 256, 512, 1024], "seeds": 8},
    "full": {"data": "cifar10", "n_pretrain": 25_000, "width": 1024, "steps": 20000, "batch_size": 256,
             "sizes": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], "seeds": 16},
}


def train_embedding_network(ctx: Context, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Train an MLP on ``cfg["n_pretrain"]`` images; return the penultimate features and the
    labels of every OTHER image (the held-out images the random-feature study uses)."""
    ds = experiments.load_dataset(cfg["data"], ctx.data_dir) if cfg["data"] != "digits" else experiments.load_digits()
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float32)
    labels = np.concatenate([ds.y_train, ds.y_test])
    perm = np.random.default_rng(0).permutation(x.shape[0])
    seen, held_out = perm[:cfg["n_pretrain"]], perm[cfg["n_pretrain"]:]
    n_val = max(1, len(seen) // 5)  # early stopping on a fifth of the pretraining images
    fit_idx, val_idx = seen[n_val:], seen[:n_val]
    mean, std = x[seen].mean(0), x[seen].std() + 1e-8
    xs = (x - mean) / std
    net = experiments.network("mlp", width=cfg["width"], depth=2, out_dim=ds.n_classes)
    y = (np.eye(ds.n_classes) - 1.0 / ds.n_classes)[labels].astype(np.float32)
    res = experiments.train(net, xs[None, fit_idx], y[None, fit_idx], xs[val_idx], y[val_idx],
                            keys=jax.random.key(0)[None],
                            config=experiments.TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"],
                                                           eval_every=50, patience=5, learning_rate=2e-3))
    params = jax.tree_util.tree_map(lambda a: a[0], res.params)
    return experiments.penultimate_features(net, params, xs[held_out]), labels[held_out]


def _embeddings(ctx: Context, cfg):
    """(embeddings path, labels path, description) for the study."""
    if ctx.embeddings:
        if ctx.labels is None:
            raise ValueError("Fig. 3 with --embeddings needs --labels (a .npy of integer labels)")
        return str(ctx.embeddings), str(ctx.labels), "user-provided embeddings"
    data = ctx.out / "data"
    emb_path, lab_path = data / f"{NAME}_{ctx.preset}_embeddings.npy", data / f"{NAME}_{ctx.preset}_labels.npy"
    if not (emb_path.exists() and lab_path.exists()):
        E, labels = train_embedding_network(ctx, cfg)
        np.save(emb_path, E)
        np.save(lab_path, labels)
    return (str(emb_path), str(lab_path),
            f"penultimate layer (width {cfg['width']}) of an MLP trained on {cfg['n_pretrain']} other {cfg['data']} "
            "images")


def _embedding_spectrum(E: np.ndarray):
    """Eigenvalues of the standardised embedding kernel E E^T / n, and alpha_K.

    The kernel has rank <= the embedding width, and its nonzero eigenvalues are those of the
    width x width covariance E^T E: ``kernels.spectrum`` of that matrix scaled by width / n
    returns exactly eig(E E^T) / n, at (width / n)^3 of the cost.
    """
    n, w = E.shape
    Es = (E - E.mean(0)) / (E.std() + 1e-12)
    small = w < n
    s = kernels.spectrum(Es.T @ Es * (w / n) if small else Es @ Es.T)
    ev = np.maximum(s.eigenvalues[:min(n, w)], 0.0)
    # the automatic range stops before the rounding floor (trained features have low rank)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        ak = kernels.spectral_exponent(ev)
    note = "; ".join(str(c.message) for c in caught if issubclass(c.category, RuntimeWarning))
    return ev, ak, note


def compute(ctx: Context) -> xr.Dataset:
    """Embeddings, the (D, P, seed) random-feature sweep, the duality test and the spectrum.

    Examples
    --------
    >>> import xarray as xr
    >>> from paper_figs import Context, fig3_pretrained
    >>> ds = fig3_pretrained.compute(Context("figures", preset="quick"))  # doctest: +SKIP
    >>> rows = fig3_pretrained.rows(xr.load_dataset("figures/data/fig3_pretrained.nc"))  # doctest: +SKIP
    """
    cfg = CONFIG[ctx.preset]
    emb_path, lab_path, source = _embeddings(ctx, cfg)
    E = experiments.load_embeddings(emb_path)
    digest = hashlib.sha256(np.ascontiguousarray(E).tobytes()).hexdigest()[:8]  # a new embedding, a new store
    n_train = int(0.8 * E.shape[0])
    sizes = [s for s in cfg["sizes"] if s <= n_train]
    spec = experiments.SweepSpec(
        task={"kind": "embeddings", "path": emb_path, "labels": lab_path, "test_fraction": 0.2},
        # ridge 1e-2: with 1e-3 the min-norm interpolation peak (at D ~ the embedding's rank, a
        # few hundred) puts a bump inside the fitting window; 1e-2 removes it
        model={"kind": "rf_ridge", "features": "linear", "ridge": 1e-2},
        grid={"D": sizes, "P": sizes, "seed": list(range(cfg["seeds"]))}, n_test=10_000,
        name=f"{NAME}_{ctx.preset}_{digest}")
    return _analyse(ctx.sweep(spec), E, source)


def _analyse(grid: xr.Dataset, E: np.ndarray, source: str) -> xr.Dataset:
    """The figure's Dataset from a (D, P, seed) loss grid and the embeddings (no sweep runs)."""
    loss = grid.test_loss.transpose("seed", "D", "P")
    # the window before the curves reach the label-noise floor (~D, P = 100 on digits)
    dual = regimes.duality(grid, ratio=RATIO, form="power", min_size=MIN_SIZE, bootstrap=400)
    top_D, top_P = int(grid.D.values[-1]), int(grid.P.values[-1])
    parts = []
    for leg, other, top_other in (("D", "P", top_P), ("P", "D", top_D)):
        # the windows regimes.duality fitted: the other size at its largest, this one in the window
        edge = loss.sel({other: top_other}).transpose("seed", leg)
        x = edge[leg].values.astype(float)
        sel = (x >= MIN_SIZE) & (x <= top_other / RATIO)
        fit = seed_bootstrap_exponent(edge.values[:, sel], x[sel], key=3)
        parts.append(fit_to_dataset(f"edge_{leg}", fit, x=x, y=edge.mean("seed").values,
                                    yerr=edge.std("seed").values / np.sqrt(edge.sizes["seed"])))
    ev, ak, note = _embedding_spectrum(E)
    lo_i, hi_i = ak.index_range
    i_fit = np.arange(lo_i, hi_i + 1)
    amp = np.exp(np.mean(np.log(ev[lo_i - 1:hi_i]) + (1 + ak.alpha) * np.log(i_fit)))
    ds = xr.Dataset(
        {"test_loss": loss.reset_coords(drop=True),
         "alpha": dual.alpha, "alpha_lo": dual.alpha_lo, "alpha_hi": dual.alpha_hi,
         "difference": dual.difference, "difference_lo": dual.difference_lo, "difference_hi": dual.difference_hi,
         "eigenvalues": ("index", ev), "spectrum_fit": ("fit_index", amp * i_fit ** -(1 + ak.alpha))},
        coords={"index": np.arange(1, ev.size + 1), "fit_index": i_fit},
        attrs={"alpha_K": float(ak.alpha), "alpha_K_lo": float(ak.ci[0]), "alpha_K_hi": float(ak.ci[1]),
               "alpha_K_index_lo": int(lo_i), "alpha_K_index_hi": int(hi_i), "alpha_K_note": note,
               "source": source, "ratio": RATIO, "min_size": MIN_SIZE, "ridge": 1e-2,
               "interval_method": dual.attrs["interval_method"], "n_seeds": int(grid.sizes["seed"]),
               "embedding_shape": list(E.shape)})
    ds["test_loss"].attrs.update(long_name="test MSE (one-hot targets)", units="1")
    ds["eigenvalues"].attrs.update(long_name="eigenvalues of the embedding kernel, eig(K)/n")
    return xr.merge([ds, *parts], combine_attrs="override")


def plot(ds: xr.Dataset):
    """The two edges with their fits, the exponents side by side, the embedding spectrum."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    top = {"D": int(ds.D.values[-1]), "P": int(ds.P.values[-1])}
    for leg, other, color, marker in (("D", "P", "C0", "o"), ("P", "D", "C1", "s")):
        plot_curve_from(ds, f"edge_{leg}", axes[0], color=color, marker=marker,
                        label=f"vs {leg} at {other} = {top[other]}")
    finish(axes[0], xlabel="D (training points) or P (features)", ylabel="test loss (MSE, one-hot targets)",
           title="loss vs D tracks loss vs P (fits over the resolution-limited windows)", legend="upper right")
    ax = axes[1]
    for i, leg in enumerate(("D", "P")):
        v, lo, hi = (float(ds[k].sel(leg=leg)) for k in ("alpha", "alpha_lo", "alpha_hi"))
        ax.errorbar([i], [v], yerr=[[v - lo], [hi - v]], fmt="os"[i], ms=7, capsize=4, label=f"alpha_{leg}")
    ak, ak_lo, ak_hi = (float(ds.attrs[k]) for k in ("alpha_K", "alpha_K_lo", "alpha_K_hi"))
    ax.errorbar([2], [ak], yerr=[[ak - ak_lo], [ak_hi - ak]], fmt="^", ms=7, capsize=4,
                label="alpha_K (embedding kernel)")
    ax.set_xticks(range(3))
    ax.set_xticklabels(["alpha_D", "alpha_P", "alpha_K"])
    ax.set_ylabel("exponent")
    ax.legend(fontsize=6.5, loc="lower center")
    ax.set_title(f"exponents (95% intervals; alpha_K: local-slope range)\n{ds.attrs['source']}", fontsize=7)
    ev = ds.eigenvalues.values
    ev = ev[ev > 1e-10 * ev[0]]  # beyond the numerical rank is rounding
    axes[2].loglog(np.arange(1, ev.size + 1), ev, ".", ms=3, label="embedding kernel E E^T")
    axes[2].loglog(ds.fit_index.values, ds.spectrum_fit.values, "-", color="C3", lw=1.5,
                   label=f"fit lambda_i ~ i^-(1 + {ak:.2f})")
    lo_i, hi_i = int(ds.attrs["alpha_K_index_lo"]), int(ds.attrs["alpha_K_index_hi"])
    finish(axes[2], xlabel="index i", ylabel="eigenvalue (eig(K)/n)",
           title=f"spectrum: alpha_K = {ak:.2f} [{ak_lo:.2f}, {ak_hi:.2f}] (i = {lo_i}..{hi_i})"
                 + (" - under a decade" if np.log10(hi_i / lo_i) < 1 else ""))
    fig.suptitle("Fig. 3 - random features on pretrained embeddings", fontsize=11)
    fig.tight_layout()
    return fig


def rows(ds: xr.Dataset) -> list[Row]:
    """alpha_D and alpha_P (their intervals must overlap), their paired difference against 0
    (the duality), and alpha_K of the embedding kernel (reported; its range is stated)."""
    aD, aP = (tuple(float(ds[k].sel(leg=leg)) for k in ("alpha", "alpha_lo", "alpha_hi")) for leg in ("D", "P"))
    top_D, top_P = int(ds.D.values[-1]), int(ds.P.values[-1])
    r, m = int(ds.attrs["ratio"]), int(ds.attrs["min_size"])
    lo_i, hi_i = int(ds.attrs["alpha_K_index_lo"]), int(ds.attrs["alpha_K_index_hi"])
    short = " (under a decade: poorly determined)" if np.log10(hi_i / lo_i) < 1 else ""
    return [
        Row("Fig. 3", f"alpha_D, random features on embeddings (P = {top_P}, {m} <= D <= P/{r})", *aD, aP[0],
            "alpha_P (duality; the two intervals overlap)", theory_interval=(aP[1], aP[2])),
        Row("Fig. 3", f"alpha_P, random features on embeddings (D = {top_D}, {m} <= P <= D/{r})", *aP, None),
        Row("Fig. 3", "alpha_D - alpha_P (paired over seeds)", float(ds.difference), float(ds.difference_lo),
            float(ds.difference_hi), 0.0, "0 (duality)"),
        Row("Fig. 3", f"alpha_K of the embedding kernel (i = {lo_i}..{hi_i}){short}", float(ds.attrs["alpha_K"]),
            float(ds.attrs["alpha_K_lo"]), float(ds.attrs["alpha_K_hi"]), None),
    ]


def run(ctx: Context) -> list[Row]:
    return run_figure(sys.modules[__name__], ctx)
