"""Plot fitted scaling laws (data, fit, band, extrapolation) and compute-optimal frontiers.

Figures are drawn from results (``FitResult``) or stored Datasets (``compute_optimal``);
nothing here computes a fit. Tick labels are plain numbers (``1e+06``, ``0.3``), not
LaTeX powers, so they survive copy-paste and any font.
"""

from __future__ import annotations

import numpy as np

from ._result import FitResult, law_values


def _plain_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(NullFormatter())


def plot_fit(result: FitResult, *, ax=None, level: float = 0.95, extrapolate_to: float | None = None,
             label: str | None = None, color=None, xlabel: str | None = None, ylabel: str = "loss",
             show_data: bool = True, kind: str = "auto", labels=None):
    """Log-log plot of fitted curves with their bootstrap bands and extrapolation.

    One-variable forms: one curve, or every curve of a batch (``labels`` names them). The
    law is solid over the data and dashed beyond (to ``extrapolate_to``); the band is the
    ``level`` percentile bootstrap band when the fit was bootstrapped. Two-variable forms
    (``chinchilla``, ``kaplan``): ``kind="isoflop"`` draws loss against ``N`` along each
    compute budget ``C = 6 N D`` of the data (isoFLOP curves), ``kind="slices"`` loss
    against ``N`` at each distinct ``D``. Every curve gets ONE legend entry (its data and
    fit share a colour; a note says markers are data, lines are the fit).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, scaling
    >>> D = np.geomspace(1e2, 1e4, 10)
    >>> ax = scaling.plot_fit(scaling.fit("power", D, 3 * D ** -0.3), extrapolate_to=1e6)
    >>> ax.get_xscale(), len(ax.get_legend().get_texts())
    ('log', 1)
    """
    import matplotlib.pyplot as plt

    if not isinstance(result, FitResult):
        raise TypeError(f"plot_fit draws a FitResult, got {type(result).__name__}")
    if kind not in ("auto", "isoflop", "slices"):
        raise ValueError(f"unknown kind {kind!r}; expected one of: auto, isoflop, slices")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    if len(result.form.variables) == 1:
        _plot_one_variable(result, ax, level, extrapolate_to, label, color, labels, show_data)
        ax.set_xlabel(xlabel or result.form.variables[0])
    else:
        _plot_two_variables(result, ax, "isoflop" if kind == "auto" else kind, labels, show_data)
        ax.set_xlabel(xlabel or "N (parameters)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    _plain_ticks(ax)
    ax.legend(fontsize="small", frameon=False, title="markers: data; lines: fit" if show_data else None,
              title_fontsize="x-small")
    return ax


def _plot_one_variable(result, ax, level, extrapolate_to, label, color, labels, show_data):
    m = int(np.prod(result.batch_shape, dtype=int))
    if labels is not None and len(labels) != m:
        raise ValueError(f"labels has {len(labels)} entries for {m} curves")
    x_all = next(iter(result.x.values()))
    flat = {k: np.asarray(v, dtype=float).reshape(m) for k, v in result.params.items()}
    colors = plt_colors(m) if color is None or m > 1 else [color]
    for i in range(m):
        used = result.w[i] > 0
        x, y = x_all[i][used], result.y[i][used]
        lo, hi = x.min(), x.max()
        top = max(hi, extrapolate_to or hi)
        grid = np.geomspace(lo, top, 200)
        pred = _predict_row(result, flat, i, grid)
        name = (labels[i] if labels is not None else label if m == 1 and label else
                f"{result.form.name} fit" if m == 1 else f"curve {i}")
        inside = grid <= hi
        (line,) = ax.plot(grid[inside], pred[inside], color=colors[i], label=str(name))
        c = line.get_color()
        if top > hi:
            ax.plot(grid[grid >= hi], pred[grid >= hi], ls="--", color=c)
        if result.bootstrap_params is not None:
            blo, bhi = result.predict_ci(grid, level)
            blo, bhi = blo.reshape(m, -1)[i], bhi.reshape(m, -1)[i]
            ax.fill_between(grid, blo, bhi, color=c, alpha=0.2, lw=0)
        if show_data:
            ax.plot(x, y, "o", color=c, ms=4, mec="k", mew=0.5)


def plt_colors(m: int):
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    if m <= len(cycle):
        return cycle[:m]
    return [plt.get_cmap("viridis")(t) for t in np.linspace(0, 0.9, m)]


def _predict_row(result, flat, i, grid_x):
    xs = {result.form.variables[0]: grid_x[None, :]} if len(result.form.variables) == 1 else grid_x
    return law_values(result.form, {k: v[i: i + 1] for k, v in flat.items()}, xs)[0]


def _plot_two_variables(result, ax, kind, labels, show_data):
    if result.batch_shape:
        raise ValueError(f"plot_fit draws a two-variable law for one fit; this result has batch shape "
                         f"{result.batch_shape}: plot fits one at a time")
    if set(result.form.variables) != {"N", "D"}:
        raise ValueError(f"two-variable plots need variables N and D, form {result.form.name!r} has {result.form.variables}")
    used = result.w[0] > 0
    N, D, y = result.x["N"][0][used], result.x["D"][0][used], result.y[0][used]
    flat = {k: np.asarray(v, dtype=float).reshape(1) for k, v in result.params.items()}
    if kind == "isoflop":
        key = np.round(np.log10(6.0 * N * D), 1)
        title = "C = {:.2g}"
    else:
        key = np.round(np.log10(D), 2)
        title = "D = {:.3g}"
    levels = np.unique(key)
    if labels is not None and len(labels) != levels.size:
        raise ValueError(f"labels has {len(labels)} entries for {levels.size} curves")
    colors = plt_colors(levels.size)
    for j, lev in enumerate(levels):
        sel = key == lev
        n_grid = np.geomspace(N[sel].min() / 1.5, N[sel].max() * 1.5, 100)
        if kind == "isoflop":
            c = float(np.median(6.0 * N[sel] * D[sel]))
            d_grid = c / (6.0 * n_grid)
            name = title.format(c)
        else:
            d_grid = np.full_like(n_grid, float(np.median(D[sel])))
            name = title.format(float(np.median(D[sel])))
        pred = law_values(result.form, flat, {"N": n_grid[None], "D": d_grid[None]})[0]
        (line,) = ax.plot(n_grid, pred, color=colors[j], label=str(labels[j]) if labels is not None else name)
        if show_data:
            ax.plot(N[sel], y[sel], "o", color=line.get_color(), ms=4, mec="k", mew=0.5)


def plot_compute_optimal(optimal, *, ax=None, which=("N_opt", "D_opt"), show_bootstrap: bool = True):
    """Draw the compute-optimal frontier of :func:`scaling.compute_optimal`.

    ``N_opt`` and ``D_opt`` (by default) against compute on log-log axes, each with its
    delta-method band (and the bootstrap band, dotted, when present); one legend entry
    per line.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, scaling
    >>> N, D = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6))
    >>> L = (1.7 + 400 / N**0.34 + 410 / D**0.28) * np.exp(0.003 * np.sin(np.arange(36.0))).reshape(6, 6)
    >>> res = scaling.fit("chinchilla", {"N": N.ravel(), "D": D.ravel()}, L.ravel())
    >>> ax = scaling.plot_compute_optimal(scaling.compute_optimal(res, np.geomspace(1e18, 1e24, 7)))
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['N_opt', 'D_opt']
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    c = optimal["compute"].values
    extra = [d for d in optimal["N_opt"].dims if d != "compute"]
    if extra:
        raise ValueError(f"plot_compute_optimal draws one allocation; select along {extra} first (e.g. .isel())")
    for name in which:
        if name not in optimal:
            raise ValueError(f"{name!r} not in the Dataset; expected some of N_opt, D_opt, L_opt")
        (line,) = ax.plot(c, optimal[name].values, label=name)
        ax.fill_between(c, optimal[f"{name}_lower"].values, optimal[f"{name}_upper"].values, color=line.get_color(),
                        alpha=0.2, lw=0)
        if show_bootstrap and f"{name}_boot_lower" in optimal:
            ax.plot(c, optimal[f"{name}_boot_lower"].values, ":", color=line.get_color())
            ax.plot(c, optimal[f"{name}_boot_upper"].values, ":", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"compute C (FLOPs, {optimal.attrs.get('flops_model', 'C = 6 N D')})")
    ax.set_ylabel("compute-optimal size")
    _plain_ticks(ax)
    ax.legend(fontsize="small", frameon=False)
    return ax
