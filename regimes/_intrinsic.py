"""Intrinsic dimension of data or learned features, and the exponents it predicts."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

METHODS = ("twonn", "twonn_mle", "mle")


def nearest_neighbors(X, k: int, *, batch_size: int = 1024, dtype=np.float32):
    """Exact ``k`` nearest neighbours of every row of ``X`` (itself excluded), batched in JAX.

    Candidates come from ``|q|^2 + |x|^2 - 2 q.x`` in blocks of ``batch_size`` queries
    (one matmul per block, in ``dtype``; float32 halves the cost on CPUs and is the fast
    path on GPUs); the distances to the ``k + 8`` best candidates are then recomputed
    exactly in float64 from the coordinates, so cancellation in the fast formula cannot
    reorder near neighbours or turn a tiny distance into 0.

    Returns
    -------
    distances : ndarray (n, k), ascending, float64
    indices : ndarray (n, k)

    Examples
    --------
    >>> import numpy as np, regimes
    >>> d, i = regimes.nearest_neighbors(np.array([[0.0], [1.0], [3.0]]), 1)
    >>> d.ravel().tolist(), i.ravel().tolist()
    ([1.0, 1.0, 2.0], [1, 0, 1])
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (points, features), got shape {X.shape}")
    n = X.shape[0]
    if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, {n - 1}], got {k!r}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains non-finite values")
    c = min(n - 1, k + 8) + 1  # candidates, self included
    Xj = jnp.asarray(X, dtype)
    sq = jnp.sum(Xj * Xj, axis=1)
    bs = min(batch_size, n)
    cand = np.empty((n, c), dtype=np.int64)
    for s in range(0, n, bs):
        q = X[s:s + bs]
        pad = bs - q.shape[0]
        qj = jnp.asarray(np.concatenate([q, np.repeat(q[-1:], pad, axis=0)]) if pad else q, dtype)
        idx = _candidates(qj, Xj, sq, c)
        cand[s:s + bs] = np.asarray(idx)[: q.shape[0]]
    Xd = np.asarray(X, dtype=np.float64)
    out_d = np.empty((n, k))
    out_i = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, bs):
        rows = np.arange(s, min(n, s + bs))
        cnd = cand[rows]
        d = np.sqrt(np.sum((Xd[cnd] - Xd[rows, None, :]) ** 2, axis=-1))
        d = np.where(cnd == rows[:, None], np.inf, d)  # exclude the point itself
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out_d[rows] = np.take_along_axis(d, order, axis=1)
        out_i[rows] = np.take_along_axis(cnd, order, axis=1)
    return out_d, out_i


@functools.partial(jax.jit, static_argnums=3)
def _candidates(q, X, sq, c):
    d2 = jnp.sum(q * q, axis=1)[:, None] + sq[None, :] - 2.0 * q @ X.T
    return jax.lax.top_k(-d2, c)[1]


class IntrinsicDimension(float):
    """An intrinsic-dimension estimate: a ``float`` that also carries its details.

    Attributes
    ----------
    method : str
    n_points : int
        Points used (after removing duplicates).
    n_duplicates : int
        Duplicate rows removed (a zero nearest-neighbour distance breaks both estimators).
    by_scale : xarray.DataArray
        Estimates at several scales: by neighbourhood size ``k`` (MLE) or by subsample
        size (TwoNN, as in Facco et al.'s decimation analysis).
    spread : tuple (lo, hi)
        Range of the estimates across scales: a measure of how scale-dependent (and so
        how uncertain) the dimension is.
    """

    def __new__(cls, value, **details):
        obj = super().__new__(cls, value)
        obj.__dict__.update(details)
        return obj

    def __repr__(self):
        lo, hi = self.spread
        return f"IntrinsicDimension({float(self):.4g}, method={self.method!r}, across scales [{lo:.3g}, {hi:.3g}])"


def _twonn_from_distances(r1, r2, discard_fraction, mle):
    mu = r2 / r1
    N = mu.size
    n_keep = int(N * (1 - discard_fraction))
    if n_keep < 2:
        raise ValueError(f"too few points ({N}) for TwoNN with discard_fraction={discard_fraction}")
    log_mu = np.log(np.sort(mu)[:n_keep])
    if mle:  # censored maximum likelihood of the Pareto law of mu (Facco et al. 2017)
        return (n_keep - 1) / (np.sum(log_mu) + (N - n_keep) * log_mu[-1])
    F = np.arange(1, n_keep + 1) / N
    yv = -np.log(1.0 - F)
    return float(np.sum(log_mu * yv) / np.sum(log_mu**2))  # least-squares line through 0


def _mle_from_distances(dist, k, average):
    T = dist[:, :k]
    per_point = (k - 1) / np.sum(np.log(T[:, -1:] / T[:, :-1]), axis=1)
    if average == "levina":
        return float(np.mean(per_point))
    return float(1.0 / np.mean(1.0 / per_point))  # MacKay & Ghahramani's correction


def intrinsic_dimension(X, method: str = "twonn", *, k: int = 20, discard_fraction: float = 0.1,
                        average: str = "mackay", duplicates: str = "drop", scales=None, batch_size: int = 1024,
                        dtype=np.float32, key=0) -> IntrinsicDimension:
    r"""Intrinsic dimension of a point cloud (inputs, or a network's features).

    Methods
    -------
    ``"twonn"`` (Facco et al. 2017): the ratio ``mu = r2/r1`` of the two nearest-neighbour
    distances is Pareto-distributed with exponent ``d``; ``d`` is the slope of
    ``-log(1 - F(mu))`` against ``log mu`` through the origin, after discarding the largest
    ``discard_fraction`` of ratios. ``"twonn_mle"``: the censored maximum-likelihood
    estimate of the same law. (Both follow scikit-dimension's conventions.)
    ``"mle"`` (Levina & Bickel 2004): the likelihood of the ``k`` nearest-neighbour
    distances, averaged over points (``average="levina"``) or as the inverse of the mean
    inverse (``"mackay"``, MacKay & Ghahramani's less biased version).

    Parameters
    ----------
    X : array (n, features)
    method : {"twonn", "twonn_mle", "mle"}
    k : int
        Neighbourhood size for ``"mle"``.
    discard_fraction : float
        TwoNN's discarded fraction of the largest ratios.
    duplicates : {"drop", "raise"}
        Duplicate points have ``r1 = 0``; they are removed (and counted) or refused.
    scales : sequence, optional
        For ``"mle"`` the ``k`` values; for TwoNN the subsample fractions (default
        ``1, 1/2, 1/4, 1/8``).
    batch_size, dtype
        Nearest-neighbour search blocks and precision (see :func:`nearest_neighbors`).
    key : int
        Seed of the TwoNN subsamples.

    Returns
    -------
    IntrinsicDimension
        A float with ``.by_scale``, ``.spread``, ``.n_duplicates`` and more.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.standard_normal((2000, 3)) @ rng.standard_normal((3, 50))
    >>> round(float(regimes.intrinsic_dimension(plane)), 0)
    3.0
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    if duplicates not in ("drop", "raise"):
        raise ValueError(f"unknown duplicates {duplicates!r}; expected one of: drop, raise")
    if average not in ("mackay", "levina"):
        raise ValueError(f"unknown average {average!r}; expected one of: mackay, levina")
    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3:
        raise ValueError(f"X must be 2-D with at least 3 points, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains non-finite values")
    uniq, first = np.unique(X, axis=0, return_index=True)
    n_dup = X.shape[0] - uniq.shape[0]
    if n_dup and duplicates == "raise":
        raise ValueError(f"X has {n_dup} duplicate points (zero nearest-neighbour distance); pass duplicates='drop'")
    X = X[np.sort(first)]
    n = X.shape[0]
    if method == "mle":
        ks = np.asarray(scales if scales is not None else [max(5, k // 4), max(6, k // 2), k, 2 * k], dtype=int)
        ks = ks[(ks >= 3) & (ks < n)]
        if k >= n or k < 3:
            raise ValueError(f"k must be in [3, {n - 1}], got {k}")
        dist, _ = nearest_neighbors(X, int(max(ks.max(), k)), batch_size=batch_size, dtype=dtype)
        value = _mle_from_distances(dist, k, average)
        est = [_mle_from_distances(dist, int(kk), average) for kk in ks]
        by_scale = xr.DataArray(est, dims="k", coords={"k": ks}, name="intrinsic_dimension")
    else:
        mle = method == "twonn_mle"
        fracs = np.asarray(scales if scales is not None else [1.0, 0.5, 0.25, 0.125], dtype=float)
        fracs = fracs[fracs * n >= 20]
        rng = np.random.default_rng(key)
        est = []
        for f in fracs:
            sub = X if f == 1.0 else X[np.sort(rng.choice(n, int(f * n), replace=False))]
            dist, _ = nearest_neighbors(sub, 2, batch_size=batch_size, dtype=dtype)
            est.append(_twonn_from_distances(dist[:, 0], dist[:, 1], discard_fraction, mle))
        if 1.0 in fracs:
            value = est[list(fracs).index(1.0)]
        else:
            dist, _ = nearest_neighbors(X, 2, batch_size=batch_size, dtype=dtype)
            value = _twonn_from_distances(dist[:, 0], dist[:, 1], discard_fraction, mle)
        by_scale = xr.DataArray(est, dims="n_points", coords={"n_points": (fracs * n).astype(int)},
                                name="intrinsic_dimension")
    by_scale.attrs.update(method=method, units="1")
    spread = (float(np.min(est)), float(np.max(est))) if len(est) else (value, value)
    return IntrinsicDimension(value, method=method, n_points=n, n_duplicates=int(n_dup), by_scale=by_scale,
                              spread=spread)


class PredictedExponent(NamedTuple):
    """``alpha ~ 4/d`` with the interval implied by the spread of the dimension estimates."""

    alpha: float
    lo: float
    hi: float
    dimension: float


def predicted_exponent(d, *, spread=None, numerator: float = 4.0) -> PredictedExponent:
    r"""Resolution-limited exponent predicted from an intrinsic dimension: ``alpha ~ 4/d``.

    A piecewise-linear fit resolves a ``d``-dimensional manifold to distances
    ``~ D^{-1/d}`` and its squared error scales as the 4th power of that distance (Bahri
    et al. 2021, Sec. 2.2; Sharma & Kaplan 2020), so ``alpha_D ~ 4/d``.

    Parameters
    ----------
    d : float, IntrinsicDimension, or array of estimates
        With several estimates (methods, scales) the median is used and their range sets
        the interval; an :class:`IntrinsicDimension` contributes its ``spread``.
    spread : (lo, hi), optional
        The range of ``d`` to propagate.

    Examples
    --------
    >>> import regimes
    >>> regimes.predicted_exponent([7.5, 8.0, 8.5])
    PredictedExponent(alpha=0.5, lo=0.47058823529411764, hi=0.5333333333333333, dimension=8.0)
    """
    if isinstance(d, IntrinsicDimension) and spread is None:
        spread = d.spread
    arr = np.atleast_1d(np.asarray(d, dtype=np.float64))
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"dimension estimates must be finite and > 0, got {d!r}")
    centre = float(np.median(arr))
    lo_d, hi_d = (float(arr.min()), float(arr.max())) if spread is None else map(float, spread)
    lo_d, hi_d = min(lo_d, centre), max(hi_d, centre)
    return PredictedExponent(numerator / centre, numerator / hi_d, numerator / lo_d, centre)
