"""Local scaling exponents: the slope of log(L - L_inf) against log x, smoothed."""

from __future__ import annotations

import numpy as np

from ._fit import fit
from ._validate import as_float_array


def local_exponent(x, y, l_inf=None, *, bandwidth: float | None = None) -> np.ndarray:
    r"""The local exponent :math:`-d\log(L - L_\infty)/d\log x` at every point.

    A kernel-weighted local linear regression of ``log(y - l_inf)`` on ``log x`` (Gaussian
    weights of width ``bandwidth`` in natural-log units): a finite difference would
    amplify noise, a global fit would hide drifts. A drifting local exponent is the
    signature of a crossover between regimes.

    Parameters
    ----------
    x : array_like, shape (n,)
        Positive, at least 3 distinct values.
    y : array_like, shape (..., n)
    l_inf : None, float, array broadcastable to ``y[..., :1]``, or ``"fit"``
        Subtracted before taking logs; ``"fit"`` uses ``L_inf`` of an offset power-law fit.
    bandwidth : float, optional
        Default: 1.5x the median spacing of ``log x`` (so ~3-5 points carry weight).

    Returns
    -------
    ndarray, shape (..., n)

    Raises
    ------
    ValueError
        Non-finite input, ``x <= 0``, or ``y - l_inf <= 0`` (names the point).

    Examples
    --------
    >>> import numpy as np, scaling
    >>> D = np.geomspace(1e1, 1e5, 20)
    >>> np.round(scaling.local_exponent(D, 0.3 + 2 * D ** -0.6, l_inf=0.3), 3)[[0, -1]]
    array([0.6, 0.6])
    """
    x = as_float_array("x", x)
    y = as_float_array("y", y)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D (shared by every curve), got shape {x.shape}")
    if y.shape[-1:] != x.shape:
        raise ValueError(f"y has shape {y.shape}; its last axis must match x of shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        bad = int(np.flatnonzero(~np.isfinite(x) | (x <= 0))[0])
        raise ValueError(f"x must be finite and > 0; got x[{bad}] = {x[bad]}")
    if np.unique(x).size < 3:
        raise ValueError(f"need at least 3 distinct x values for a local slope, got {np.unique(x).size}")
    if isinstance(l_inf, str):
        if l_inf != "fit":
            raise ValueError(f"l_inf must be None, a number, an array or 'fit'; got {l_inf!r}")
        l_inf = np.asarray(fit("offset", x, y).params["L_inf"])[..., None]
    shifted = y - (0.0 if l_inf is None else np.asarray(l_inf, dtype=np.float64))
    bad = ~np.isfinite(shifted) | (shifted <= 0)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise ValueError(
            f"y - l_inf must be finite and > 0 to take logs; got {shifted[idx]:g} at index {idx}"
            + ("" if l_inf is None else " (is l_inf above the curve?)")
        )
    lx = np.log(x)
    ly = np.log(shifted)
    if bandwidth is None:
        bandwidth = 1.5 * float(np.median(np.diff(np.sort(lx))))
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth!r}")
    # Weighted least squares slope at every evaluation point (rows) over all points (cols).
    k = np.exp(-0.5 * ((lx[:, None] - lx[None, :]) / bandwidth) ** 2)
    k /= k.sum(axis=1, keepdims=True)
    mx = k @ lx
    dx = lx[None, :] - mx[:, None]
    var = np.sum(k * dx**2, axis=1)
    # sum_j k_ij dx_ij = 0, so the weighted covariance needs no centring of log y.
    cov = np.einsum("ij,...j->...i", k * dx, ly)
    return -cov / var
