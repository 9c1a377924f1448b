"""Plot a fitted scaling law: data, fit, confidence band, extrapolation."""

from __future__ import annotations

import numpy as np

from ._result import FitResult


def plot_fit(result: FitResult, *, ax=None, level: float = 0.95, extrapolate_to: float | None = None,
             label: str | None = None, color=None, xlabel: str = "x", ylabel: str = "loss",
             show_data: bool = True):
    """Log-log plot of one fitted curve with its bootstrap band and extrapolation.

    The fitted law is solid over the data range and dashed beyond it (to
    ``extrapolate_to``); the band is the ``level`` percentile bootstrap band when the fit
    was bootstrapped.

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
    >>> ax.get_xscale()
    'log'
    """
    import matplotlib.pyplot as plt

    if result.batch_shape:
        raise ValueError(f"plot_fit draws one curve; this result holds a batch of shape {result.batch_shape}")
    if len(result.form.variables) != 1:
        raise ValueError(f"plot_fit draws one-variable forms; {result.form.name!r} has {result.form.variables}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    x = next(iter(result.x.values()))[0]
    y = result.y[0]
    used = result.w[0] > 0
    x, y = x[used], y[used]
    lo, hi = x.min(), x.max()
    top = max(hi, extrapolate_to or hi)
    grid = np.geomspace(lo, top, 200)
    pred = result.predict(grid)
    inside = grid <= hi
    name = label or f"{result.form.name} fit"
    line, = ax.plot(grid[inside], pred[inside], color=color, label=name)
    c = line.get_color()
    if top > hi:
        ax.plot(grid[~inside | (grid == grid[inside][-1])], pred[~inside | (grid == grid[inside][-1])],
                ls="--", color=c, label="extrapolation")
    if result.bootstrap_params is not None:
        blo, bhi = result.predict_ci(grid, level)
        ax.fill_between(grid, blo, bhi, color=c, alpha=0.2, lw=0, label=f"{level:.0%} band")
    if show_data:
        ax.plot(x, y, "o", color=c, ms=4, mec="k", mew=0.5, label="data")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small", frameon=False)
    return ax
