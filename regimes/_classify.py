"""Classify a learning curve as variance-limited, resolution-limited or undetermined."""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr
from scipy import stats

import scaling

from ._crossover import _RMS_FLOOR, BreakTest, break_test
from ._double_descent import detect_double_descent, monotone_mask

LABELS = ("variance-limited", "resolution-limited", "undetermined")

_EVIDENCE = ("p_alpha_is_1", "p_equivalent", "p_break", "delta_bic", "p_flat")


@dataclasses.dataclass(frozen=True)
class Classification:
    """The regime of one curve (or a batch of curves: every field then has the batch shape).

    Attributes
    ----------
    label : str or ndarray of str
        ``"variance-limited"``, ``"resolution-limited"`` or ``"undetermined"``.
    alpha : float or ndarray
        Exponent of ``L - L_inf ~ x^-alpha`` (free-exponent fit).
    alpha_ci : tuple (lo, hi)
        Profile-likelihood interval of ``alpha`` at ``level``.
    L_inf : float or ndarray
        Asymptote of the free fit (the given ``l_inf`` if one was given).
    evidence : dict
        ``p_alpha_is_1`` (F-test of the fixed-exponent form against the free one),
        ``p_equivalent`` (TOST p-value of ``|alpha - 1| >= margin``: small means the exponent
        is shown to be within the margin of 1), ``p_break`` (F-test of one power law against
        a broken one), ``x_break``, ``alpha_before``, ``alpha_after`` (the broken fit),
        ``delta_bic`` (BIC of the free form minus the fixed one: negative favours the free
        exponent), ``p_flat`` (F-test of any decrease at all), ``n_points``, and ``reason``
        (why the label was chosen, in words).
    """

    label: object
    alpha: object
    alpha_ci: tuple
    L_inf: object
    evidence: dict

    def to_dataset(self, dims: tuple[str, ...] = ()) -> xr.Dataset:
        """The classification as an ``xarray.Dataset`` over ``dims`` (the batch axes).

        Examples
        --------
        >>> import numpy as np, regimes
        >>> D = np.geomspace(1e2, 1e5, 15)
        >>> ds = regimes.classify(D, np.stack([0.3 + 20 / D, 2 * D ** -0.4])).to_dataset(("width",))
        >>> ds.label.values.tolist()
        ['variance-limited', 'resolution-limited']
        """
        lab = np.asarray(self.label)
        dims = tuple(dims) or tuple(f"curve_{i}" for i in range(lab.ndim))
        data = {
            "label": (dims, lab.astype(str)),
            "alpha": (dims, np.asarray(self.alpha, dtype=float)),
            "alpha_lo": (dims, np.asarray(self.alpha_ci[0], dtype=float)),
            "alpha_hi": (dims, np.asarray(self.alpha_ci[1], dtype=float)),
            "L_inf": (dims, np.asarray(self.L_inf, dtype=float)),
        }
        for k in (*_EVIDENCE, "x_break", "alpha_before", "alpha_after"):
            data[k] = (dims, np.asarray(self.evidence[k], dtype=float))
        data["n_points"] = (dims, np.asarray(self.evidence["n_points"], dtype=np.int64))
        data["reason"] = (dims, np.asarray(self.evidence["reason"]).astype(str))
        return xr.Dataset(data, attrs={"level": float(self.evidence["level"]),
                                       "margin": float(self.evidence["margin"])})


def _scalar(a):
    a = np.asarray(a)
    if a.ndim:
        return a
    return a.item() if a.dtype.kind in "USbO" else a[()]


_CHUNK = 16  # curves per fit call: every batch size shares one compiled program per form


def _fits(x, Y, todo, *, known: bool, level: float) -> dict:
    """Free, fixed (alpha = 1) and broken fits of the curves ``Y[todo]`` (others: NaN), in chunks."""
    m = Y.shape[0]
    form = "power" if known else "offset"
    keys = ("n", "rss_free", "rss_fixed", "bic_free", "bic_fixed", "alpha", "lo", "hi", "L_inf")
    out = {k: np.full(m, np.nan) for k in keys}
    out["p_free"] = len(scaling.forms.get(form).params)
    parts = {k: np.full(m, np.nan) for k in BreakTest._fields}
    rows = np.flatnonzero(todo)
    for start in range(0, rows.size, _CHUNK):
        idx = rows[start:start + _CHUNK]
        chunk = np.concatenate([Y[idx], np.repeat(Y[idx[:1]], _CHUNK - idx.size, axis=0)])
        free = scaling.fit(form, x, chunk, skipna=True, errors="ignore")
        fixd = scaling.fit(form, x, chunk, skipna=True, errors="ignore", fixed={"alpha": 1.0})
        lo, hi = free.profile_ci("alpha", level)
        got = {"n": free.n_points, "rss_free": free.objective, "rss_fixed": fixd.objective, "bic_free": free.bic,
               "bic_fixed": fixd.bic, "alpha": free.params["alpha"], "lo": lo, "hi": hi,
               "L_inf": free.params.get("L_inf", np.zeros(_CHUNK))}
        for k, v in got.items():
            out[k][idx] = np.asarray(v, dtype=float).reshape(-1)[:idx.size]
        for k, v in break_test(x, chunk, known=known, single=free)._asdict().items():
            parts[k][idx] = np.asarray(v, dtype=float)[:idx.size]
    out["n"] = np.where(todo, out["n"], np.sum(np.isfinite(Y), axis=1))
    # An interval contains its estimate (the profile of an exact fit can miss it by rounding).
    out["lo"], out["hi"] = np.fmin(out["lo"], out["alpha"]), np.fmax(out["hi"], out["alpha"])
    out["break"] = BreakTest(**parts)
    return out


def _difference(a, b):
    """a - b where both may be -inf (exact fits): equal infinities differ by 0."""
    with np.errstate(invalid="ignore"):
        d = a - b
    return np.where(np.isneginf(a) & np.isneginf(b), 0.0, d)


def _check(x, y, l_inf, level, min_points, margin, min_effect, monotone, skipna):
    """Validate ``classify``'s inputs; every refusal names the value and what is allowed."""
    if not isinstance(level, (float, int, np.floating, np.integer)) or isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if isinstance(min_points, bool) or not isinstance(min_points, (int, np.integer)) or min_points < 4:
        raise ValueError(f"min_points must be an integer >= 4, got {min_points!r}")
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin!r}")
    if not 0 <= min_effect < 1:
        raise ValueError(f"min_effect must be in [0, 1), got {min_effect!r}")
    if monotone not in (None, "before", "after", "longest"):
        raise ValueError(f"unknown monotone {monotone!r}; expected one of: None, before, after, longest")
    try:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"x and y must be numeric arrays: {err}") from None
    if x.ndim != 1 or y.ndim < 1 or y.shape[-1:] != x.shape:
        raise ValueError(f"x must be 1-D and match the last axis of y; got x {x.shape}, y {y.shape}")
    bad_x = ~np.isfinite(x) | (x <= 0)
    if bad_x.any():
        raise ValueError(f"x must be finite and > 0 (sizes D, P, width); got x = {x[bad_x][:3].tolist()} "
                         f"at index {np.flatnonzero(bad_x)[:3].tolist()}")
    if np.any(np.diff(x) <= 0):
        i = int(np.flatnonzero(np.diff(x) <= 0)[0])
        raise ValueError(f"x must be strictly increasing (sorted sizes, no repeats); got x[{i}] = {x[i]:g} "
                         f">= x[{i + 1}] = {x[i + 1]:g}")
    if np.isinf(y).any():
        raise ValueError(f"y must be finite; got {np.count_nonzero(np.isinf(y))} infinite value(s)")
    if np.isnan(y).any() and not skipna:
        raise ValueError(f"y has {np.count_nonzero(np.isnan(y))} NaN value(s); pass skipna=True to classify "
                         f"the remaining points (they are counted in evidence['n_points'])")
    if l_inf is None and np.any(y <= 0):
        raise ValueError(f"losses must be > 0 for a log-space fit; got min(y) = {np.nanmin(y):g}. "
                         f"Pass l_inf= to classify y - l_inf, or shift the losses")
    if l_inf is not None:
        try:
            linf = np.asarray(l_inf, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"l_inf must be a number or an array of numbers, got {l_inf!r}") from None
        if not np.all(np.isfinite(linf)):
            raise ValueError(f"l_inf must be finite (or None to fit it); got {l_inf!r}")
        try:
            linf = np.broadcast_to(linf, y.shape[:-1])
        except ValueError:
            raise ValueError(f"l_inf of shape {linf.shape} does not broadcast to the batch shape {y.shape[:-1]}") from None
        l_inf = linf
    return x, y, l_inf


def classify(x, y, *, l_inf=None, level: float = 0.95, min_points: int = 5, margin: float = 0.05,
             min_effect: float = 0.15, monotone: str | None = None, peak_tolerance: float = 0.05,
             skipna: bool = False) -> Classification:
    r"""Is ``L(x)`` variance-limited (``L - L_inf ~ 1/x``) or resolution-limited (``~ x^-alpha``)?

    The decision is statistical, on log-space least-squares fits of
    :math:`L_\infty + A x^{-\alpha}` (free exponent) and :math:`L_\infty + A/x` (exponent
    fixed at 1), or of the pure power laws of ``y - l_inf`` when ``l_inf`` is known. In order:

    1. **undetermined** when there are too few points (``min_points``), no significant
       decrease (F-test against a constant), or a non-monotonic curve (a double-descent
       peak; pass ``monotone="after"``/``"before"`` to classify one side of it);
    2. **undetermined** when one power law does not describe the curve: a lack-of-fit F-test
       of the single law against a broken one (the :func:`regimes.crossover` model, one break,
       3 more parameters) rejects at ``1 - level`` *and* the broken fit's local exponent
       changes by more than ``min_effect`` across the data. The reason says where ("slope
       changes near D = ...") and gives both slopes: fit each side separately. The broken law's
       residual variance is floored at 0.2% rms, so the smooth curvature of a noise-free
       finite-size curve is not a break. (Curves with fewer than 9 points, 8 with ``l_inf``,
       cannot be tested; the reason says so.)
    3. **variance-limited** only by an equivalence test (TOST, two one-sided tests): the
       whole ``level`` profile-likelihood interval of ``alpha`` lies inside
       ``[1 - margin, 1 + margin]`` (that is TOST at ``(1 - level) / 2``, stricter than the
       usual 90%-interval TOST at 5%) *and* the F-test does not reject ``alpha = 1``;
    4. **resolution-limited** when the F-test rejects ``alpha = 1`` and the interval clears
       ``1 +- min_effect`` (finite-range corrections to ``1/x``, e.g. a ridgeless model's
       ``L_inf D / (D - P)``, bias fitted exponents by ~10%, so an interval just below 1 is
       not evidence of a resolution-limited law);
    5. **undetermined** otherwise, with the interval in the reason.

    An exponent near 1 alone cannot separate the two regimes: a resolution-limited curve with
    ``alpha_K`` near 1 (a smooth kernel, a low-dimensional manifold) decays like ``1/x`` too,
    and no test on the exponent can tell them apart; the default ``margin`` of 0.05 only keeps
    exponents of 0.95 or less from being called variance-limited. What does separate them is
    the limit: a variance-limited curve approaches a limit that exists and is not zero - the
    loss of the infinitely large model at this ``D`` or the infinite-data loss at this ``P`` -
    so a fitted offset ``L_inf`` well above zero, or better the known limit passed as
    ``l_inf`` (the infinite-width kernel's loss, the ``P``-feature floor), is the evidence;
    a resolution-limited curve keeps decaying towards the target's irreducible loss.

    Parameters
    ----------
    x : array (n,)
        Sizes (``D``, ``P``, width): finite, > 0 and strictly increasing.
    y : array (..., n)
        Losses (> 0 unless ``l_inf`` is given); leading axes are independent curves,
        classified in one batched call. NaN raises unless ``skipna``.
    l_inf : float or array, optional
        A known, finite asymptote (e.g. the infinite-width loss): fits the pure power law of
        ``y - l_inf``, which pins the exponent far better. A curve with ``y - l_inf <= 0``
        somewhere is labelled undetermined (is ``l_inf`` above the curve?).
    level : float
        Confidence level of every test and interval.
    min_points : int
        Fewest points (>= 4) a curve needs to be labelled.
    margin : float
        Equivalence margin of the TOST for ``alpha = 1``.
    min_effect : float
        Smallest exponent difference that counts: clearance from 1 for "resolution-limited",
        slope change for a break.
    monotone : {None, "before", "after", "longest"}
        What to do with a non-monotonic curve: None labels it undetermined; otherwise only
        that monotone stretch (before or after the peak) is classified.
    peak_tolerance : float
        Relative rise above the running minimum that counts as a peak.
    skipna : bool
        Classify what is left of curves with NaN points (default: NaN raises).

    Returns
    -------
    Classification

    Raises
    ------
    ValueError
        Non-finite, non-positive or unsorted ``x``; infinite ``y``; NaN ``y`` without ``skipna``;
        ``y <= 0`` without ``l_inf``; non-finite ``l_inf``; options out of range.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> D = np.geomspace(1e2, 1e5, 15)
    >>> regimes.classify(D, 0.3 + 20.0 / D).label
    'variance-limited'
    >>> c = regimes.classify(D, 2.0 * D ** -0.35)
    >>> c.label, round(float(c.alpha), 3)
    ('resolution-limited', 0.35)
    >>> c = regimes.classify(D, D ** -0.3 * (1 + D / 3000) ** -0.7)   # 0.3, then 1.0 past 3000
    >>> c.label, c.evidence["reason"][:24]
    ('undetermined', 'slope changes near D = 3')
    """
    x, y, l_inf = _check(x, y, l_inf, level, min_points, margin, min_effect, monotone, skipna)
    batch = y.shape[:-1]
    Y = y.reshape(-1, x.size).copy()
    m = Y.shape[0]
    reason = np.full(m, "", dtype=object)
    known = l_inf is not None
    if known:
        linf = np.asarray(l_inf).reshape(m)
        Y = Y - linf[:, None]
        nonpos = np.any(np.isfinite(Y) & (Y <= 0), axis=1)
        reason[nonpos] = "y - l_inf <= 0 somewhere: is l_inf above the curve?"
    # Non-monotonic curves: flag, or keep one monotone side when asked.
    dd = detect_double_descent(x, Y, tolerance=peak_tolerance)
    peaked = np.asarray(dd.non_monotonic).reshape(m)
    if monotone is not None:
        keep = monotone_mask(x, Y, side=monotone, tolerance=peak_tolerance).reshape(m, -1)
        Y = np.where(keep, Y, np.nan)
    else:
        reason[peaked & (reason == "")] = \
            "non-monotonic: a peak (double descent?) breaks the power law; pass monotone='after'"
    Y = np.where(np.isfinite(Y) & (Y > 0), Y, np.nan)
    n_pts = np.sum(~np.isnan(Y), axis=1)
    short = n_pts < min_points
    reason[short & (reason == "")] = f"too few points ({min_points} needed)"

    todo = (n_pts >= 4) & (reason == "")
    Yfit = np.where(todo[:, None], Y, (1.0 + 1.0 / x)[None, :])
    with np.errstate(all="ignore"):  # extreme sizes overflow inside the fits: the tests below see NaN
        fits = _fits(x, Yfit, todo, known=known, level=level)
    n, p_free = fits["n"], fits["p_free"]
    rss_free, rss_fixed = fits["rss_free"], fits["rss_fixed"]
    logY = np.log(np.where(np.isnan(Yfit), 1.0, Yfit))
    w = ~np.isnan(Yfit)
    mean = np.sum(logY * w, axis=1) / np.maximum(n, 1)
    rss_const = np.sum(w * (logY - mean[:, None]) ** 2, axis=1)
    dof = np.maximum(n - p_free, 1)
    floor = n * _RMS_FLOOR**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f_flat = ((rss_const - rss_free) / (p_free - 1)) / (np.maximum(rss_free, floor) / dof)
        f_one = np.maximum(rss_fixed - rss_free, 0.0) / (np.maximum(rss_free, floor) / dof)
    p_flat = stats.f.sf(f_flat, p_free - 1, dof)
    p_one = stats.f.sf(f_one, 1, dof)
    bic_free, bic_fixed = fits["bic_free"], fits["bic_fixed"]
    alpha, lo, hi = fits["alpha"], fits["lo"], fits["hi"]
    brk = fits["break"]
    # TOST p-value from the profile interval's normal approximation (reported; the label uses the interval).
    se = np.maximum(hi - lo, 1e-300) / (2 * stats.norm.ppf(0.5 + level / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_equiv = np.maximum(stats.norm.sf((alpha - (1 - margin)) / se), stats.norm.sf(((1 + margin) - alpha) / se))

    sig = 1 - level
    flat = (p_flat > sig) & (reason == "")
    reason[flat] = f"no significant decrease (p = {sig:g} test against a constant)"
    undecided = reason == ""
    change = np.abs(brk.slope_last - brk.slope_first)
    broken = undecided & (brk.p < sig) & (change > min_effect)
    finite_x = np.where(np.isnan(Yfit), np.nan, x[None, :])
    for i in np.flatnonzero(broken):
        test = f"(one power law rejected against a broken one, p = {brk.p[i]:.2g})"
        if np.nanmin(finite_x[i]) < brk.x_break[i] < np.nanmax(finite_x[i]):
            reason[i] = (f"slope changes near D = {brk.x_break[i]:.3g}: alpha {brk.alpha_before[i]:.3g} before, "
                         f"{brk.alpha_after[i]:.3g} after {test}; classify each side separately")
        else:  # the broken law bends outside the data: the local exponent drifts across it
            reason[i] = (f"the local exponent drifts from {brk.slope_first[i]:.3g} to {brk.slope_last[i]:.3g} "
                         f"across the data {test}: not one power law")
    undecided &= ~broken
    untested = undecided & ~np.isfinite(brk.p)
    resolution = undecided & (p_one < sig) & ((hi < 1 - min_effect) | (lo > 1 + min_effect))
    variance = undecided & ~resolution & (p_one >= sig) & (lo >= 1 - margin) & (hi <= 1 + margin)
    label = np.full(m, "undetermined", dtype=object)
    label[resolution] = "resolution-limited"
    label[variance] = "variance-limited"
    for i in np.flatnonzero(resolution):
        reason[i] = (f"alpha = 1 rejected (p = {p_one[i]:.2g}); interval [{lo[i]:.3g}, {hi[i]:.3g}] "
                     f"clears 1 +- {min_effect}")
    for i in np.flatnonzero(variance):
        reason[i] = (f"equivalent to 1: interval [{lo[i]:.3g}, {hi[i]:.3g}] lies within 1 +- {margin} "
                     f"and alpha = 1 is not rejected (p = {p_one[i]:.2g})")
    rest = undecided & ~resolution & ~variance
    for i in np.flatnonzero(rest):
        why = (f"alpha = 1 rejected but the interval does not clear 1 +- {min_effect}" if p_one[i] < sig
               else f"interval not within 1 +- {margin}")
        reason[i] = f"interval [{lo[i]:.3g}, {hi[i]:.3g}]: {why}; cannot tell alpha from 1"
    for i in np.flatnonzero(untested):
        reason[i] += " (too few points to test for a break)"
    nofit = (n_pts < 4) | ~(undecided | broken | flat)  # not fitted meaningfully: report no numbers
    for a in (alpha, lo, hi):
        a[nofit] = np.nan
    L_inf = linf if known else fits["L_inf"]
    L_inf = np.where(nofit & ~known, np.nan, L_inf)
    tested = ~nofit & ~flat

    def shape(a):
        return _scalar(np.asarray(a).reshape(batch))

    def masked(a):
        return shape(np.where(tested, a, np.nan))

    evidence = {
        "p_alpha_is_1": masked(p_one),
        "p_equivalent": masked(p_equiv),
        "p_break": masked(brk.p),
        "x_break": masked(brk.x_break),
        "alpha_before": masked(brk.alpha_before),
        "alpha_after": masked(brk.alpha_after),
        "delta_bic": masked(_difference(bic_free, bic_fixed)),
        "p_flat": masked(p_flat),
        "n_points": shape(n_pts),
        "reason": shape(reason.astype(str)),
        "level": level,
        "margin": margin,
    }
    return Classification(shape(label.astype(str)), shape(alpha), (shape(lo), shape(hi)), shape(L_inf), evidence)
