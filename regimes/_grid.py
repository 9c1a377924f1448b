"""The four scaling regimes on a (D, P) grid: edge classifications and the regime map."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._classify import classify

EDGES = {
    # name: (varying dim, fixed at, region condition, expected regime)
    "data_at_large_model": ("D", "max", "D <= P / ratio", "resolution-limited"),
    "model_at_large_data": ("P", "max", "P <= D / ratio", "resolution-limited"),
    "data_at_small_model": ("D", "min", "D >= ratio * P", "variance-limited"),
    "model_at_small_data": ("P", "min", "P >= ratio * D", "variance-limited"),
}


LOSS_NAMES = ("test_loss", "test_mse", "loss")


def loss_variable(ds, var: str | None = None) -> xr.DataArray:
    """The loss DataArray of a sweep: ``ds[var]``, or the first of ``test_loss``, ``test_mse``,
    ``loss`` present (sweeps write ``test_loss``; kernels' learning curves ``test_mse``)."""
    if isinstance(ds, xr.DataArray):
        return ds
    if var is not None:
        if var not in ds.data_vars:
            raise ValueError(f"no variable {var!r}; available: {list(ds.data_vars)}")
        return ds[var]
    for name in LOSS_NAMES:
        if name in ds.data_vars:
            return ds[name]
    raise ValueError(f"no loss variable ({', '.join(LOSS_NAMES)}) in {list(ds.data_vars)}: pass var=...")


def _mean_curve(da: xr.DataArray, seed: str | None) -> xr.DataArray:
    if seed and seed in da.dims:
        return da.mean(seed, skipna=True)
    return da


def edge_curves(ds, var: str | None = None, *, D: str = "D", P: str = "P", seed: str | None = "seed",
                ratio: float = 4.0, variance_ratio: float | None = None) -> dict[str, xr.DataArray]:
    """The four edge curves of a loss grid, each restricted to its own regime's region.

    ``data_at_large_model``: loss vs D at the largest P, for D <= P/ratio;
    ``model_at_large_data``: loss vs P at the largest D, for P <= D/ratio;
    ``data_at_small_model``: loss vs D at the smallest P, for D >= variance_ratio P;
    ``model_at_small_data``: loss vs P at the smallest D, for P >= variance_ratio D.

    ``variance_ratio`` defaults to ``2 ratio``: near ``D = P`` a ridgeless model's loss goes
    as ``L_inf D / (D - P)``, whose local exponent ``D / (D - P)`` reaches 1 only far from
    the interpolation threshold.
    """
    da = loss_variable(ds, var)
    for d in (D, P):
        if d not in da.dims:
            raise ValueError(f"dimension {d!r} not in {var!r} dims {da.dims}")
    variance_ratio = 2.0 * ratio if variance_ratio is None else variance_ratio
    if not ratio >= 1 or not variance_ratio >= 1:
        raise ValueError(f"ratio and variance_ratio must be >= 1, got {ratio!r}, {variance_ratio!r}")
    da = _mean_curve(da, seed).transpose(D, P)
    Dv, Pv = da[D].values.astype(float), da[P].values.astype(float)
    curves = {}
    curves["data_at_large_model"] = da.isel({P: -1}).where(da[D] <= Pv[-1] / ratio, drop=True)
    curves["model_at_large_data"] = da.isel({D: -1}).where(da[P] <= Dv[-1] / ratio, drop=True)
    curves["data_at_small_model"] = da.isel({P: 0}).where(da[D] >= variance_ratio * Pv[0], drop=True)
    curves["model_at_small_data"] = da.isel({D: 0}).where(da[P] >= variance_ratio * Dv[0], drop=True)
    return curves


def regime_map(ds, var: str | None = None, *, D: str = "D", P: str = "P", seed: str | None = "seed",
               ratio: float = 4.0, variance_ratio: float | None = None, level: float = 0.95,
               min_points: int = 5) -> xr.Dataset:
    r"""Classify the four edges of a loss grid and label every region of the (D, P) plane.

    The paper's four regimes (Bahri et al. 2021, Fig. 1) live on the edges of the grid:
    data scaling at the largest model and model scaling at the largest data set
    (resolution-limited), data scaling at the smallest model and model scaling at the
    smallest data set (variance-limited, ``L - L_inf ~ 1/x``). Each edge curve (seed
    mean, restricted to its side of ``D = P`` by ``ratio`` for the resolution-limited edges
    and ``variance_ratio`` for the variance-limited ones, see :func:`edge_curves`) is
    classified by :func:`regimes.classify`. Cells with ``D <= P/ratio`` form the over-parameterised
    region, those with ``D >= ratio P`` the under-parameterised one, the band between is
    the crossover; each region carries the labels measured on its edges.

    Returns
    -------
    xarray.Dataset
        ``edge_label, edge_alpha, edge_alpha_lo, edge_alpha_hi, edge_expected,
        edge_n_points`` over ``edge``; ``region (D, P)``, ``regime_along_D (D, P)`` and
        ``regime_along_P (D, P)`` labels; ``loss (D, P)`` (seed mean); attrs ``ratio``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, regimes
    >>> D = P = np.geomspace(10, 1e5, 21)
    >>> L = (D[:, None] ** -0.5 + P[None, :] ** -0.5)   # toy additive law
    >>> m = regimes.regime_map(xr.Dataset({"test_mse": (("D", "P"), L)}, coords={"D": D, "P": P}))
    >>> str(m.edge_label.sel(edge="data_at_large_model").item())
    'resolution-limited'
    """
    da = loss_variable(ds, var)
    curves = edge_curves(ds, var, D=D, P=P, seed=seed, ratio=ratio, variance_ratio=variance_ratio)
    names = list(EDGES)
    labels, alpha, lo, hi, npts, reasons = [], [], [], [], [], []
    for name in names:
        c = curves[name]
        xdim = EDGES[name][0]
        xv = c[D if xdim == "D" else P].values.astype(float)
        yv = c.values.astype(float)
        if np.count_nonzero(np.isfinite(yv)) < min_points:
            labels.append("undetermined")
            alpha.append(np.nan), lo.append(np.nan), hi.append(np.nan)
            npts.append(int(np.count_nonzero(np.isfinite(yv))))
            reasons.append(f"only {np.count_nonzero(np.isfinite(yv))} grid points on this edge's side of D = P")
            continue
        cl = classify(xv, yv, level=level, min_points=min_points, monotone="longest", skipna=True)
        labels.append(cl.label)
        alpha.append(cl.alpha), lo.append(cl.alpha_ci[0]), hi.append(cl.alpha_ci[1])
        npts.append(int(cl.evidence["n_points"]))
        reasons.append(cl.evidence["reason"])
    mean = _mean_curve(da, seed).transpose(D, P)
    Dg, Pg = np.meshgrid(mean[D].values.astype(float), mean[P].values.astype(float), indexing="ij")
    over = Dg <= Pg / ratio
    under = Dg >= ratio * Pg
    region = np.where(over, "over-parameterised", np.where(under, "under-parameterised", "crossover"))
    lab = dict(zip(names, labels))
    along_D = np.where(over, lab["data_at_large_model"], np.where(under, lab["data_at_small_model"], "crossover"))
    along_P = np.where(over, lab["model_at_small_data"], np.where(under, lab["model_at_large_data"], "crossover"))
    out = xr.Dataset(
        {
            "edge_label": ("edge", np.array(labels, dtype=str)),
            "edge_expected": ("edge", np.array([EDGES[n][3] for n in names], dtype=str)),
            "edge_alpha": ("edge", np.array(alpha, dtype=float)),
            "edge_alpha_lo": ("edge", np.array(lo, dtype=float)),
            "edge_alpha_hi": ("edge", np.array(hi, dtype=float)),
            "edge_n_points": ("edge", np.array(npts)),
            "edge_reason": ("edge", np.array(reasons, dtype=str)),
            "region": ((D, P), region.astype(str)),
            "regime_along_D": ((D, P), along_D.astype(str)),
            "regime_along_P": ((D, P), along_P.astype(str)),
            "loss": ((D, P), mean.values),
        },
        coords={"edge": names, D: mean[D].values, P: mean[P].values},
        attrs={**da.attrs, "ratio": float(ratio), "variance_ratio": float(variance_ratio or 2 * ratio),
               "level": float(level), "variable": str(da.name), "D_dim": D, "P_dim": P,
               "loss_units": str(da.attrs.get("units", ""))},
    )
    return out


FEATURE_DIMS = ("P", "features", "n_features", "params", "parameters", "n_params")
"""Names of a model-size dim that counts features or parameters (so ``D = P`` means something)."""


def plot_regime_map(rmap: xr.Dataset, *, ax=None, D: str | None = None, P: str | None = None,
                    counts_features: bool | None = None):
    """Figure of a :func:`regime_map`: loss over the (D, P) plane, the regions, the edges.

    Parameters
    ----------
    rmap : xarray.Dataset
        From :func:`regime_map`; the dim names it was made with (``P="width"``...) are read
        from its attrs, so they need not be repeated.
    ax : matplotlib Axes, optional
    D, P : str, optional
        Override the dim names stored in ``rmap``.
    counts_features : bool, optional
        Whether the model-size axis counts features or parameters (default: its name is one
        of :data:`FEATURE_DIMS`). Only then are the ``D = P`` line and the over- and
        under-parameterised labels drawn; for a width they would compare unlike things.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, xarray as xr, regimes
    >>> D = np.geomspace(10, 1e4, 13); w = np.geomspace(8, 512, 7)
    >>> L = D[:, None] ** -0.4 + 3 / w[None, :]
    >>> m = regimes.regime_map(xr.Dataset({"test_loss": (("D", "width"), L)}, coords={"D": D, "width": w}), P="width")
    >>> ax = regimes.plot_regime_map(m)
    >>> ax.get_xlabel(), ax.texts[0].get_text().splitlines()[0]
    ('model size width', 'along D: resolution-limited, alpha = 0.40 [0.40, 0.40]')
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogLocator, NullFormatter

    D = D or rmap.attrs.get("D_dim", "D")
    P = P or rmap.attrs.get("P_dim", "P")
    for name in (D, P):
        if name not in rmap.dims:
            raise ValueError(f"regime map has no dim {name!r}; dims are {list(rmap.dims)}")
    if counts_features is None:
        counts_features = P in FEATURE_DIMS
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    Dv, Pv = rmap[D].values.astype(float), rmap[P].values.astype(float)
    loss = rmap["loss"].values
    mesh = ax.pcolormesh(Pv, Dv, np.where(loss > 0, loss, np.nan), shading="nearest",
                         norm=LogNorm(), cmap="viridis")
    variable = rmap.attrs.get("variable", "loss")
    units = rmap.attrs.get("loss_units", "")
    bar = plt.colorbar(mesh, ax=ax)
    bar.set_label(f"{variable}{f' ({units})' if units else ''}, seed mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(Pv.min(), Pv.max())
    ax.set_ylim(Dv.min(), Dv.max())
    for axis in (ax.xaxis, ax.yaxis, bar.ax.yaxis):  # decade labels only: minor labels overlap
        axis.set_major_locator(LogLocator(base=10))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
        axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=8)
    ax.set_xlabel(f"model size {P}")
    ax.set_ylabel(f"data set size {D}")

    def describe(edge):
        e = rmap.sel(edge=edge)
        a = float(e.edge_alpha)
        lab = str(e.edge_label.item())
        return f"{lab}, alpha = {a:.2f} [{float(e.edge_alpha_lo):.2f}, {float(e.edge_alpha_hi):.2f}]" \
            if np.isfinite(a) else lab

    box = dict(boxstyle="round", fc="k", alpha=0.55, lw=0)
    if counts_features:
        r = float(rmap.attrs.get("ratio", 2.0))
        lim = [min(Dv.min(), Pv.min()), max(Dv.max(), Pv.max())]
        ax.plot(lim, lim, "w-", lw=1.5, label=f"{D} = {P}")
        ax.plot(lim, [v * r for v in lim], "w:", lw=1)
        ax.plot(lim, [v / r for v in lim], "w:", lw=1, label=f"{D} = {P} x {r:g}^(+-1)")
        ax.legend(loc="center left", fontsize=6.5, framealpha=0.7)
        top = f"over-parameterised ({D} < {P})\n along {D}: {describe('data_at_large_model')}\n" \
              f" along {P}: {describe('model_at_small_data')}"
        bottom = f"under-parameterised ({D} > {P})\n along {D}: {describe('data_at_small_model')}\n" \
                 f" along {P}: {describe('model_at_large_data')}"
    else:  # a width is not a count of features: no D = P line, no over/under-parameterised
        top = f"along {D}: {describe('data_at_large_model')}\nalong {P}: {describe('model_at_small_data')}"
        bottom = f"along {D}: {describe('data_at_small_model')}\nalong {P}: {describe('model_at_large_data')}"
    ax.text(0.03, 0.97, top, transform=ax.transAxes, ha="left", va="top", fontsize=6.5, color="w", bbox=box)
    ax.text(0.97, 0.03, bottom, transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5, color="w", bbox=box)
    return ax
