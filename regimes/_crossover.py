"""Where a curve changes regime: a broken power law against a single one, and local exponents."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import scaling


class Crossover(NamedTuple):
    """A detected change of exponent along a curve.

    ``found``: the broken power law beats the single one by more than ``min_delta_bic``;
    ``x_break``: the break location; ``alpha_before`` / ``alpha_after``: the exponents well
    below and well above it; ``delta_bic``: BIC(broken) - BIC(single); ``local_x``,
    ``local_alpha``: the smoothed local exponent along the curve.
    """

    found: bool
    x_break: float
    alpha_before: float
    alpha_after: float
    delta_bic: float
    local_x: np.ndarray
    local_alpha: np.ndarray


def crossover(x, y, *, l_inf=None, min_delta_bic: float = 10.0) -> Crossover:
    """Detect a crossover between regimes along one curve (e.g. resolution- to
    variance-limited in ``D`` as ``D`` passes ``P``).

    Compares a broken power law (one break, Caballero et al. 2022) with a single offset
    power law by BIC; a difference beyond ``min_delta_bic`` (10: "very strong" evidence) is
    a crossover. The local exponent ``-dlog(L - l_inf)/dlog x`` is returned alongside: its
    drift is the model-free view of the same thing.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> D = np.geomspace(10, 1e5, 40)
    >>> L = D ** -0.3 * (1 + D / 1e3) ** -0.7   # exponent 0.3 below 1e3, 1.0 above
    >>> c = regimes.crossover(D, L)
    >>> c.found, round(c.alpha_before, 2), round(c.alpha_after, 2)
    (True, 0.3, 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"crossover works on one curve: x and y must be 1-D of the same length, got {x.shape}, {y.shape}")
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 8:
        raise ValueError(f"need at least 8 points to locate a crossover, got {x.size}")
    target = y if l_inf is None else y - l_inf
    single = scaling.fit("offset" if l_inf is None else "power", x, target)
    broken = scaling.fit("broken", x, target)
    dbic = float(broken.bic - single.bic)
    a0 = float(broken.params["alpha_0"])
    a1 = a0 + float(broken.params["dalpha_1"])
    found = dbic < -min_delta_bic and x.min() < broken.params["x_1"] < x.max()
    local = scaling.local_exponent(x, target)
    return Crossover(bool(found), float(broken.params["x_1"]), a0, a1, dbic, x, local)
