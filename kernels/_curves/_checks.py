"""The one check every function taking a ridge (or a noise level) shares."""

from __future__ import annotations

import numpy as np


def check_nonnegative(name: str, value, *, array: bool = False):
    """``value`` as a float (an ndarray with ``array=True``), or a ValueError naming it
    unless every entry is a finite number >= 0."""
    message = f"{name} must be finite and >= 0 ({'numbers' if array else 'one number'}), got {value!r}"
    if isinstance(value, bool) or (not array and np.ndim(value) != 0) or np.asarray(value).dtype.kind not in "iuf":
        raise ValueError(message)
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(message)
    return a if array else float(a)
