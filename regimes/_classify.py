"""Classify a learning curve as variance-limited, resolution-limited or undetermined."""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr
from scipy import stats

import scaling

from ._double_descent import detect_double_descent, monotone_mask

LABELS = ("variance-limited", "resolution-limited", "undetermined")


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
        """The classification as an ``xarray.Dataset`` over ``dims`` (the batch axes)."""
        lab = np.asarray(self.label)
        dims = tuple(dims) or tuple(f"curve_{i}" for i in range(lab.ndim))
        data = {
            "label": (dims, lab.astype(str)),
            "alpha": (dims, np.asarray(self.alpha, dtype=float)),
            "alpha_lo": (dims, np.asarray(self.alpha_ci[0], dtype=float)),
            "alpha_hi": (dims, np.asarray(self.alpha_ci[1], dtype=float)),
            "L_inf": (dims, np.asarray(self.L_inf, dtype=float)),
        }
        for k in ("p_alpha_is_1", "delta_bic", "p_flat"):
            data[k] = (dims, np.asarray(self.evidence[k], dtype=float))
        data["reason"] = (dims, np.asarray(self.evidence["reason"]).astype(str))
        return xr.Dataset(data)


def _scalar(a):
    a = np.asarray(a)
    if a.ndim:
        return a
    return a.item() if a.dtype.kind in "USbO" else a[()]


def _difference(a, b):
    """a - b where both may be -inf (exact fits): equal infinities differ by 0."""
    with np.errstate(invalid="ignore"):
        d = a - b
    return np.where(np.isneginf(a) & np.isneginf(b), 0.0, d)


def classify(x, y, *, l_inf=None, level: float = 0.95, min_points: int = 5, variance_tolerance: float = 0.25,
             min_effect: float = 0.15, monotone: str | None = None, peak_tolerance: float = 0.05) -> Classification:
    r"""Is ``L(x)`` variance-limited (``L - L_inf ~ 1/x``) or resolution-limited (``~ x^-alpha``)?

    The decision is statistical, on log-space least-squares fits of
    :math:`L_\infty + A x^{-\alpha}` (free exponent) and :math:`L_\infty + A/x` (exponent
    fixed at 1), or of the pure power laws of ``y - l_inf`` when ``l_inf`` is known:

    * **resolution-limited** when the F-test rejects ``alpha = 1`` at ``1 - level`` and the
      profile-likelihood interval of ``alpha`` clears ``1 +- min_effect`` (an exponent of
      0.99 +- 0.01 differs from 1 significantly but not meaningfully, and finite-range
      corrections to ``1/x`` - e.g. a ridgeless model's ``L_inf D / (D - P)`` - bias fitted
      exponents by ~10%);
    * **variance-limited** when the interval lies within ``1 +- variance_tolerance`` and
      reaches ``1 +- min_effect`` (the data pin the exponent at 1);
    * **undetermined** otherwise: too few points (``min_points``), no significant decrease
      (F-test against a constant), a non-monotonic curve (a double-descent peak; pass
      ``monotone="after"``/``"before"`` to classify one side of it), or an interval too wide
      to tell. Ambiguous curves are never labelled with false confidence.

    Parameters
    ----------
    x : array (n,)
    y : array (..., n)
        Losses; leading axes are independent curves, classified in one batched call.
        NaN points are ignored.
    l_inf : float or array, optional
        A known asymptote (e.g. the infinite-width loss): fits the pure power law of
        ``y - l_inf``, which pins the exponent far better.
    level : float
    min_points : int
    variance_tolerance : float
    min_effect : float
        Equivalence margin around 1 (see above).
    monotone : {None, "before", "after", "longest"}
        What to do with a non-monotonic curve: None labels it undetermined; otherwise only
        that monotone stretch (before or after the peak) is classified.
    peak_tolerance : float
        Relative rise above the running minimum that counts as a peak.

    Returns
    -------
    Classification

    Examples
    --------
    >>> import numpy as np, regimes
    >>> D = np.geomspace(1e2, 1e5, 15)
    >>> regimes.classify(D, 0.3 + 20.0 / D).label
    'variance-limited'
    >>> c = regimes.classify(D, 2.0 * D ** -0.35)
    >>> c.label, round(float(c.alpha), 3)
    ('resolution-limited', 0.35)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape[-1:] != x.shape:
        raise ValueError(f"x must be 1-D and match the last axis of y; got x {x.shape}, y {y.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if monotone not in (None, "before", "after", "longest"):
        raise ValueError(f"unknown monotone {monotone!r}; expected one of: None, before, after, longest")
    batch = y.shape[:-1]
    Y = y.reshape(-1, x.size).copy()
    m = Y.shape[0]
    reason = np.full(m, "", dtype=object)
    known = l_inf is not None
    if known:
        linf = np.broadcast_to(np.asarray(l_inf, dtype=np.float64), batch).reshape(m)
        Y = Y - linf[:, None]
    # Non-monotonic curves: flag, or keep one monotone side when asked.
    dd = detect_double_descent(x, Y, tolerance=peak_tolerance)
    peaked = np.asarray(dd.non_monotonic).reshape(m)
    if monotone is not None:
        keep = monotone_mask(x, Y, side=monotone, tolerance=peak_tolerance).reshape(m, -1)
        Y = np.where(keep, Y, np.nan)
    else:
        reason[peaked] = "non-monotonic: a peak (double descent?) breaks the power law; pass monotone='after'"
    bad = ~np.isfinite(Y) | (Y <= 0)
    if known and np.any(np.isfinite(Y) & (Y <= 0)):
        reason[np.any(np.isfinite(Y) & (Y <= 0), axis=1)] = "y - l_inf <= 0 somewhere: is l_inf above the curve?"
    Y = np.where(bad, np.nan, Y)
    n_pts = np.sum(~np.isnan(Y), axis=1)
    short = n_pts < max(min_points, 4)
    reason[short & (reason == "")] = f"too few points (fewer than {max(min_points, 4)})"

    free_form, fixed = ("power", {"alpha": 1.0}) if known else ("offset", {"alpha": 1.0})
    Yfit = np.where(short[:, None], 1.0 + 1.0 / x, Y)  # stand-ins keep the batch finite
    free = scaling.fit(free_form, x, Yfit, skipna=True, errors="ignore")
    fixd = scaling.fit(free_form, x, Yfit, skipna=True, errors="ignore", fixed=fixed)
    n = np.asarray(free.n_points, dtype=float).reshape(m)
    p_free = len(free.form.params)
    rss_free = np.asarray(free.objective, dtype=float).reshape(m)
    rss_fixed = np.asarray(fixd.objective, dtype=float).reshape(m)
    logY = np.log(np.where(np.isnan(Yfit), 1.0, Yfit))
    w = ~np.isnan(Yfit)
    mean = np.sum(logY * w, axis=1) / np.maximum(n, 1)
    rss_const = np.sum(w * (logY - mean[:, None]) ** 2, axis=1)
    dof = np.maximum(n - p_free, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_flat = ((rss_const - rss_free) / (p_free - 1)) / (rss_free / dof)
        f_one = np.where(rss_fixed <= rss_free * (1 + 1e-12), 0.0, (rss_fixed - rss_free) / (rss_free / dof))
    f_flat = np.where(rss_free <= 1e-300, np.inf, f_flat)
    f_one = np.where((rss_free <= 1e-300) & (rss_fixed > 1e-300), np.inf, f_one)
    p_flat = stats.f.sf(f_flat, p_free - 1, dof)
    p_one = stats.f.sf(f_one, 1, dof)
    bic_free = np.asarray(free.bic, dtype=float).reshape(m)
    bic_fixed = np.asarray(fixd.bic, dtype=float).reshape(m)
    alpha = np.asarray(free.params["alpha"], dtype=float).reshape(m)
    lo, hi = free.profile_ci("alpha", level)
    lo, hi = np.asarray(lo, dtype=float).reshape(m), np.asarray(hi, dtype=float).reshape(m)

    sig = 1 - level
    flat = (p_flat > sig) & (reason == "")
    reason[flat] = f"no significant decrease (p = {sig:g} test against a constant)"
    undecided = reason == ""
    resolution = undecided & (p_one < sig) & ((hi < 1 - min_effect) | (lo > 1 + min_effect))
    variance = undecided & ~resolution & (lo <= 1 + min_effect) & (hi >= 1 - min_effect) & (
        lo >= 1 - variance_tolerance) & (hi <= 1 + variance_tolerance)
    label = np.full(m, "undetermined", dtype=object)
    label[resolution] = "resolution-limited"
    label[variance] = "variance-limited"
    for i in np.flatnonzero(resolution):
        reason[i] = (f"alpha = 1 rejected (p = {p_one[i]:.2g}); interval [{lo[i]:.3g}, {hi[i]:.3g}] "
                     f"clears 1 +- {min_effect}")
    for i in np.flatnonzero(variance):
        reason[i] = (f"interval [{lo[i]:.3g}, {hi[i]:.3g}] is consistent with 1 (+- {min_effect}) "
                     f"and lies within 1 +- {variance_tolerance}")
    rest = undecided & ~resolution & ~variance
    for i in np.flatnonzero(rest):
        reason[i] = f"interval [{lo[i]:.3g}, {hi[i]:.3g}] too wide to tell alpha from 1"
    nanned = ~undecided  # not fitted meaningfully: report no numbers
    for a in (alpha, lo, hi):
        a[nanned & short] = np.nan
    L_inf = linf if known else np.asarray(free.params["L_inf"], dtype=float).reshape(m)

    def shape(a):
        return _scalar(np.asarray(a).reshape(batch))

    evidence = {
        "p_alpha_is_1": shape(p_one),
        "delta_bic": shape(_difference(bic_free, bic_fixed)),
        "p_flat": shape(p_flat),
        "n_points": shape(n_pts),
        "reason": shape(reason.astype(str)),
        "level": level,
    }
    return Classification(shape(label.astype(str)), shape(alpha), (shape(lo), shape(hi)), shape(L_inf), evidence)
