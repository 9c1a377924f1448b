"""Where a curve changes regime: a broken power law against a single one, and local exponents."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

import scaling

# Log-space residuals below this (root mean square) are rounding, not noise: a noise-free curve
# fitted by both laws must not "reject" the single one because one optimum is 1e-12 closer.
_RMS_FLOOR = 1e-6
# A break must explain more than this (relative, rms) misfit of the single law: smooth finite-size
# curvature of a noise-free curve (e.g. L_inf D / (D - P)) is not a change of regime.
BREAK_RMS_FLOOR = 2e-3
# Residual degrees of freedom the lack-of-fit test needs (F with 1 or 2 is all tail).
BREAK_MIN_DOF = 3


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


class BreakTest(NamedTuple):
    """Lack-of-fit test of one power law against a broken one, for a batch of curves (shape ``(m,)``).

    ``p``: F-test p-value of the single law against the broken one (NaN where too few points);
    ``x_break``, ``alpha_before``, ``alpha_after``: the broken fit's break and asymptotic
    exponents; ``slope_first``, ``slope_last``: the broken fit's local exponent at the first
    and last ``x`` (the slope change the data actually see); ``delta_bic``: BIC(broken) -
    BIC(single); ``rss_single``, ``rss_broken``: log-space residual sums of squares.
    """

    p: np.ndarray
    x_break: np.ndarray
    alpha_before: np.ndarray
    alpha_after: np.ndarray
    slope_first: np.ndarray
    slope_last: np.ndarray
    delta_bic: np.ndarray
    rss_single: np.ndarray
    rss_broken: np.ndarray


def break_test(x: np.ndarray, y: np.ndarray, *, known: bool, single=None) -> BreakTest:
    """Fit one and broken power laws to every curve of ``y`` (``(m, n)``, NaN = absent) and test.

    ``known``: ``y`` is already ``L - L_inf`` (pure power laws, ``L_inf`` of the broken law
    fixed at 0); otherwise both laws carry a free offset. ``single``: an already computed
    single-law fit of the same ``y`` (saves one fit). The F statistic compares the drop in the
    residual sum of squares (3 extra parameters: break, sharpness, exponent change) with the
    broken law's residual variance, floored at ``BREAK_RMS_FLOOR`` (0.2%) rms: smooth curvature
    below that is not a regime change. Curves with fewer than 3 residual degrees of freedom get
    ``p = NaN`` and NaN for every field of the broken fit (not tested; when no curve of the
    batch can be tested, the broken law is not fitted at all).
    """
    m = y.shape[0]
    n = np.sum(np.isfinite(y), axis=1).astype(float)
    p_broken = 5 if known else 6
    dof = n - p_broken
    testable = dof >= BREAK_MIN_DOF
    if not testable.any():
        nan = np.full(m, np.nan)
        rss = nan if single is None else np.asarray(single.objective, dtype=float).reshape(m)
        return BreakTest(nan, nan, nan, nan, nan, nan, nan, rss, nan)
    if single is None:
        single = scaling.fit("offset" if not known else "power", x, y, skipna=True, errors="ignore")
    fixed = {"L_inf": 0.0} if known else None
    broken = scaling.fit("broken", x, y, skipna=True, errors="ignore", fixed=fixed)
    rss1 = np.asarray(single.objective, dtype=float).reshape(m)
    rss2 = np.asarray(broken.objective, dtype=float).reshape(m)
    floor = n * BREAK_RMS_FLOOR**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.maximum(rss1 - rss2, 0.0) / 3.0 / (np.maximum(rss2, floor) / dof)
    p = np.where((dof >= BREAK_MIN_DOF) & np.isfinite(f), stats.f.sf(f, 3, np.maximum(dof, 1)), np.nan)
    prm = {k: np.asarray(v, dtype=float).reshape(m) for k, v in broken.params.items()}
    a0, da, xb, fb = prm["alpha_0"], prm["dalpha_1"], prm["x_1"], prm["f_1"]
    xv = np.where(np.isfinite(y), x[None, :], np.nan)

    def slope(at):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            z = (np.log(at) - np.log(xb)) / fb
            return a0 + da * (1.0 / (1.0 + np.exp(-z)))

    with np.errstate(invalid="ignore"):
        dbic = np.asarray(broken.bic, dtype=float).reshape(m) - np.asarray(single.bic, dtype=float).reshape(m)
    dbic = np.where(np.isneginf(np.asarray(broken.bic, dtype=float).reshape(m))
                    & np.isneginf(np.asarray(single.bic, dtype=float).reshape(m)), 0.0, dbic)
    first = np.nanmin(np.where(np.isnan(xv), np.inf, xv), axis=1)
    last = np.nanmax(np.where(np.isnan(xv), -np.inf, xv), axis=1)
    def tested(a):
        return np.where(testable, a, np.nan)

    return BreakTest(p, tested(xb), tested(a0), tested(a0 + da), tested(slope(first)), tested(slope(last)),
                     tested(dbic), rss1, tested(rss2))


def crossover(x, y, *, l_inf=None, min_delta_bic: float = 10.0) -> Crossover:
    """Detect a crossover between regimes along one curve (e.g. resolution- to
    variance-limited in ``D`` as ``D`` passes ``P``).

    Compares a broken power law (one break, Caballero et al. 2022) with a single offset
    power law by BIC; a difference beyond ``min_delta_bic`` (10: "very strong" evidence) is
    a crossover. The local exponent ``-dlog(L - l_inf)/dlog x`` is returned alongside: its
    drift is the model-free view of the same thing. :func:`regimes.classify` runs the same
    comparison (as an F-test) on every curve it labels.

    Raises
    ------
    ValueError
        If ``x``, ``y`` are not 1-D of one length, ``x`` is not finite and positive, or
        fewer than 8 finite points remain.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> D = np.geomspace(10, 1e5, 16)
    >>> L = D ** -0.3 * (1 + D / 1e3) ** -0.7   # exponent 0.3 below 1e3, 1.0 above
    >>> c = regimes.crossover(D, L)
    >>> c.found, round(c.alpha_before, 2), round(c.alpha_after, 2)
    (True, 0.3, 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"crossover works on one curve: x and y must be 1-D of the same length, got {x.shape}, {y.shape}")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"x must be finite and > 0; got {x[~(np.isfinite(x) & (x > 0))][:3].tolist()}")
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 8:
        raise ValueError(f"need at least 8 points to locate a crossover, got {x.size}")
    target = y if l_inf is None else y - l_inf
    # 16 copies: the batch size regimes.classify fits in, so both share compiled programs.
    t = break_test(x, np.repeat(target[None, :], 16, axis=0), known=l_inf is not None)
    found = bool(t.delta_bic[0] < -min_delta_bic and x.min() < t.x_break[0] < x.max())
    local = scaling.local_exponent(x, target)
    return Crossover(found, float(t.x_break[0]), float(t.alpha_before[0]), float(t.alpha_after[0]),
                     float(t.delta_bic[0]), x, local)
