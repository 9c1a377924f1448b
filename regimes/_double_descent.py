"""Non-monotonic learning curves: the interpolation peak of ridgeless models."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DoubleDescent(NamedTuple):
    """Where a curve stops decreasing monotonically (arrays over the batch axes).

    ``non_monotonic``: a rise of more than ``tolerance`` above the running minimum;
    ``peak_x``: where the curve peaks after that rise (NaN if monotonic);
    ``rise``: the largest relative rise above the running minimum.
    """

    non_monotonic: np.ndarray
    peak_x: np.ndarray
    rise: np.ndarray


def _as_curves(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape[-1:] != x.shape:
        raise ValueError(f"x must be 1-D and match the last axis of y; got x {x.shape}, y {y.shape}")
    order = np.argsort(x)
    return x[order], y[..., order], order


def detect_double_descent(x, y, *, tolerance: float = 0.05) -> DoubleDescent:
    """Flag curves that rise by more than ``tolerance`` (relative) above their running minimum.

    A power law (or any scaling-law form here) decreases monotonically; a ridgeless
    random-feature or kernel model instead peaks where the number of samples meets the
    number of features (sample-wise double descent), and a power law fitted through the
    peak is meaningless. NaN, infinite and non-positive points are ignored (a relative rise
    needs a positive running minimum).

    Examples
    --------
    >>> import numpy as np, regimes
    >>> D = np.geomspace(10, 1e4, 30)
    >>> peaked = D ** -0.5 + 3 * np.exp(-np.log(D / 300) ** 2 / 0.05)
    >>> dd = regimes.detect_double_descent(D, peaked)
    >>> bool(dd.non_monotonic), 250 < float(dd.peak_x) < 350
    (True, True)
    """
    xs, ys, _ = _as_curves(x, y)
    flat = ys.reshape(-1, xs.size)
    non_mono = np.zeros(flat.shape[0], bool)
    peak = np.full(flat.shape[0], np.nan)
    rise = np.zeros(flat.shape[0])
    for i, row in enumerate(flat):
        ok = np.isfinite(row) & (row > 0)
        xr_, r = xs[ok], row[ok]
        if r.size < 3:
            continue
        run_min = np.minimum.accumulate(r)
        rel = r / run_min - 1.0
        rise[i] = rel.max()
        if rise[i] > tolerance:
            non_mono[i] = True
            j = int(np.argmax(rel))
            # The peak: the highest point of the bump that starts rising before j.
            start = int(np.flatnonzero(r[:j + 1] == run_min[j])[-1])
            end = j + int(np.argmax(np.r_[np.diff(r[j:]) < 0, True]))
            k = start + int(np.argmax(r[start:end + 1]))
            peak[i] = xr_[k]
    shape = ys.shape[:-1]

    def out(a):
        a = a.reshape(shape)
        return a.item() if a.ndim == 0 else a

    return DoubleDescent(out(non_mono), out(peak), out(rise))


def monotone_mask(x, y, *, side: str = "after", tolerance: float = 0.05) -> np.ndarray:
    """Boolean mask (shape of ``y``) of the monotone stretch before or after a peak.

    ``side="after"``: points beyond the peak (e.g. the variance-limited D > P side);
    ``"before"``: points up to the start of the rise; ``"longest"``: whichever has more
    points. Monotonic curves keep every point. NaN, infinite and non-positive points do not
    count towards a rise.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> x = np.arange(1.0, 8.0)
    >>> regimes.monotone_mask(x, [5, 4, 3, 6, 2, 1.5, 1], side="after").astype(int)
    array([0, 0, 0, 0, 1, 1, 1])
    """
    if side not in ("before", "after", "longest"):
        raise ValueError(f"unknown side {side!r}; expected one of: before, after, longest")
    xs, ys, order = _as_curves(x, y)
    flat = ys.reshape(-1, xs.size)
    mask = np.ones_like(flat, dtype=bool)
    for i, row in enumerate(flat):
        finite = np.isfinite(row) & (row > 0)
        r = np.where(finite, row, np.inf)
        run_min = np.minimum.accumulate(np.where(finite, row, np.inf))
        with np.errstate(invalid="ignore"):  # inf / inf before the first usable point
            rel = np.where(finite, r / run_min - 1.0, 0.0)
        if rel.max() <= tolerance:
            continue
        j = int(np.argmax(rel))
        start = int(np.flatnonzero(r[: j + 1] == run_min[j])[-1])
        end = j + int(np.argmax(np.r_[np.diff(np.where(finite[j:], r[j:], -np.inf)) < 0, True]))
        peak = start + int(np.argmax(np.where(finite[start:end + 1], r[start:end + 1], -np.inf)))
        before = np.arange(xs.size) <= start
        after = np.arange(xs.size) > peak
        if side == "longest":
            chosen = before if (before & finite).sum() >= (after & finite).sum() else after
        else:
            chosen = before if side == "before" else after
        mask[i] = chosen
    inverse = np.argsort(order)
    return mask.reshape(ys.shape)[..., inverse]
