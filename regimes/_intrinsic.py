"""Intrinsic dimension of data or learned features, and the exponents it predicts."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import scaling

METHODS = ("twonn", "twonn_mle", "mle")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_points(X, name: str = "X") -> np.ndarray:
    """``X`` as a finite 2-D float64 array, or a clear error."""
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                                   or arr.dtype == bool):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (points, features), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _normalize(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre ``X`` and divide by a power of two: ``X = Z * scale + shift`` with ``max |Z|`` in [1, 2).

    Dividing by a power of two is exact, so scaling ``X`` by a power of two leaves ``Z``
    bitwise unchanged, and a shift only perturbs ``Z`` at rounding level. Scaling first and
    centring second keeps every step finite for any finite ``X`` (no overflow of the mean,
    no underflow of squared distances between distinct points at the cloud's own scale).
    """

    def pow2(a):
        m = float(np.max(np.abs(a))) if a.size else 0.0
        return 1.0 if m == 0.0 else float(np.ldexp(1.0, np.frexp(m)[1] - 1))

    s0 = pow2(X)
    Y = X / s0
    Y = Y - Y.mean(axis=0)
    s1 = pow2(Y)
    return Y / s1, s0 * s1


def _distances(diff: np.ndarray) -> np.ndarray:
    """Euclidean norms over the last axis without underflow or overflow of the squares."""
    m = np.max(np.abs(diff), axis=-1, keepdims=True)
    safe = np.where(m > 0, m, 1.0)
    return m[..., 0] * np.sqrt(np.sum((diff / safe) ** 2, axis=-1))


def _neighbors(Z: np.ndarray, k: int, batch_size: int, dtype: np.dtype):
    """Exact ``k`` nearest neighbours of the rows of a normalised cloud ``Z`` (see nearest_neighbors)."""
    n = Z.shape[0]
    c = min(n - 1, k + 8) + 1  # candidates, self included
    bs = min(batch_size, n)
    cand = np.empty((n, c), dtype=np.int64)
    with scaling.enable_x64(dtype == np.float64):  # float64 really is float64, never silently float32
        Zj = jnp.asarray(Z, dtype)
        sq = jnp.sum(Zj * Zj, axis=1)
        for s in range(0, n, bs):
            q = Z[s:s + bs]
            pad = bs - q.shape[0]
            qj = jnp.asarray(np.concatenate([q, np.repeat(q[-1:], pad, axis=0)]) if pad else q, dtype)
            cand[s:s + bs] = np.asarray(_candidates(qj, Zj, sq, c))[: q.shape[0]]
    out_d = np.empty((n, k))
    out_i = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, bs):
        rows = np.arange(s, min(n, s + bs))
        cnd = cand[rows]
        d = _distances(Z[cnd] - Z[rows, None, :])
        d = np.where(cnd == rows[:, None], np.inf, d)  # exclude the point itself
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out_d[rows] = np.take_along_axis(d, order, axis=1)
        out_i[rows] = np.take_along_axis(cnd, order, axis=1)
    return out_d, out_i


def _check_search(n: int, k, batch_size, dtype) -> np.dtype:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, {n - 1}], got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def nearest_neighbors(X, k: int, *, batch_size: int = 1024, dtype=np.float32):
    """Exact ``k`` nearest neighbours of every row of ``X`` (itself excluded), batched in JAX.

    The cloud is first centred and divided by a power of two, so the result does not
    depend on where the cloud sits or on its units. Candidates come from
    ``|q|^2 + |x|^2 - 2 q.x`` in blocks of ``batch_size`` queries (one matmul per block, in
    ``dtype``: float32 halves the cost on CPUs and is the fast path on GPUs; float64 runs
    inside :func:`scaling.enable_x64`); the distances to the ``k + 8`` best candidates are
    then recomputed exactly in float64 from the coordinates, so cancellation in the fast
    formula cannot reorder near neighbours or turn a tiny distance into 0.

    Parameters
    ----------
    X : array (n, features)
    k : int
        Neighbours per point, in ``[1, n - 1]``.
    batch_size : int
        Queries per block.
    dtype : {float32, float64}
        Precision of the candidate search.

    Returns
    -------
    distances : ndarray (n, k), ascending, float64
    indices : ndarray (n, k)

    Raises
    ------
    ValueError
        ``X`` not 2-D or not finite, ``k`` outside ``[1, n - 1]``, an unknown ``dtype``.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> d, i = regimes.nearest_neighbors(np.array([[0.0], [1.0], [3.0]]), 1)
    >>> d.ravel().tolist(), i.ravel().tolist()
    ([1.0, 1.0, 2.0], [1, 0, 1])
    """
    X = _as_points(X)
    dt = _check_search(X.shape[0], k, batch_size, dtype)
    Z, scale = _normalize(X)
    d, i = _neighbors(Z, int(k), int(batch_size), dt)
    return d * scale, i


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
        size (TwoNN, as in Facco et al.'s decimation analysis). Scales where the estimator
        is undefined (every distance ratio 1, as on a regular lattice) are left out.
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


def _check_resolved(ratios):
    bad = int(np.sum(~np.isfinite(ratios).all(axis=-1))) if ratios.ndim > 1 else int(np.sum(~np.isfinite(ratios)))
    if bad:
        raise ValueError(
            f"{bad} points have a neighbour closer than float64 resolves relative to the cloud's extent "
            "(near-duplicates); remove them or rescale the outlying points")


def _twonn_from_distances(r1, r2, discard_fraction, mle):
    """TwoNN estimate from the two nearest-neighbour distances; NaN where it is undefined."""
    with np.errstate(divide="ignore", over="ignore"):
        mu = r2 / r1
    _check_resolved(mu)
    N = mu.size
    n_keep = int(N * (1 - discard_fraction))
    if n_keep < 2:
        raise ValueError(f"too few points ({N}) for TwoNN with discard_fraction={discard_fraction}")
    log_mu = np.log(np.sort(mu)[:n_keep])
    if mle:  # censored maximum likelihood of the Pareto law of mu (Facco et al. 2017)
        denom = np.sum(log_mu) + (N - n_keep) * log_mu[-1]
        return float((n_keep - 1) / denom) if denom > 0 else float("nan")
    n_keep = min(n_keep, N - 1)  # F = 1 at the largest ratio would put -log(1 - F) at infinity
    log_mu = log_mu[:n_keep]
    F = np.arange(1, n_keep + 1) / N
    yv = -np.log(1.0 - F)
    denom = np.sum(log_mu**2)
    return float(np.sum(log_mu * yv) / denom) if denom > 0 else float("nan")  # least-squares line through 0


def _mle_from_distances(dist, k, average):
    """Levina-Bickel estimate from the ``k`` nearest distances; NaN where it is undefined."""
    T = dist[:, :k]
    with np.errstate(divide="ignore", over="ignore"):
        _check_resolved(T[:, -1:] / T[:, :-1])
    s = np.sum(np.log(T[:, -1:] / T[:, :-1]), axis=1)  # >= 0; 0 when all k neighbours are equidistant
    if average == "levina":
        return float(np.mean((k - 1) / s)) if np.all(s > 0) else float("nan")
    inv = np.mean(s) / (k - 1)  # MacKay & Ghahramani: the inverse of the mean inverse
    return float(1.0 / inv) if inv > 0 else float("nan")


def _undefined(method: str) -> ValueError:
    return ValueError(
        f"intrinsic dimension ({method}) is undefined for this cloud: every point's neighbours are equidistant "
        "(nearest-neighbour distance ratios all 1, as on a regular lattice)")


def intrinsic_dimension(X, method: str = "twonn", *, k: int = 20, discard_fraction: float = 0.1,
                        average: str = "mackay", duplicates: str = "drop", scales=None, batch_size: int = 1024,
                        dtype=np.float64, key=0) -> IntrinsicDimension:
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

    The cloud is centred and divided by a power of two before the neighbour search, and
    distances are computed in float64 (inside :func:`scaling.enable_x64`), so the estimate
    does not change when the cloud is shifted (a cloud around 1e4 gives what the same cloud
    around 0 gives) or rescaled.

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
        For ``"mle"`` the ``k`` values (integers ``>= 3``; those ``>= n`` are skipped); for
        TwoNN the subsample fractions in ``(0, 1]`` (default ``1, 1/2, 1/4, 1/8``;
        subsamples under 20 points are skipped).
    batch_size, dtype
        Nearest-neighbour search blocks and precision (see :func:`nearest_neighbors`);
        float64 by default, float32 is faster on accelerators.
    key : int
        Seed of the TwoNN subsamples.

    Returns
    -------
    IntrinsicDimension
        A float with ``.by_scale``, ``.spread``, ``.n_duplicates`` and more.

    Raises
    ------
    ValueError
        Fewer than 3 distinct points, non-finite or non-2-D ``X``, invalid options, or a
        cloud on which the estimator is undefined (all distance ratios 1).
    TypeError
        ``X`` not numeric.

    Examples
    --------
    >>> import numpy as np, regimes
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.standard_normal((2000, 3)) @ rng.standard_normal((3, 50))
    >>> round(float(regimes.intrinsic_dimension(plane)), 0)
    3.0
    >>> round(float(regimes.intrinsic_dimension(plane + 1e4)), 0)  # shifted: the same
    3.0
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    if duplicates not in ("drop", "raise"):
        raise ValueError(f"unknown duplicates {duplicates!r}; expected one of: drop, raise")
    if average not in ("mackay", "levina"):
        raise ValueError(f"unknown average {average!r}; expected one of: mackay, levina")
    if isinstance(discard_fraction, bool) or not isinstance(discard_fraction, (int, float, np.integer, np.floating)) \
            or not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must be a number in [0, 1), got {discard_fraction!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer >= 3, got {k!r}")
    X = _as_points(X)
    if X.shape[0] < 3:
        raise ValueError(f"X must be 2-D with at least 3 points, got shape {X.shape}")
    dt = _check_search(3, 1, batch_size, dtype)
    Z, _ = _normalize(X)
    uniq, first = np.unique(Z, axis=0, return_index=True)
    n_dup = Z.shape[0] - uniq.shape[0]
    if n_dup and duplicates == "raise":
        raise ValueError(f"X has {n_dup} duplicate points (zero nearest-neighbour distance); pass duplicates='drop'")
    Z = Z[np.sort(first)]
    n = Z.shape[0]
    if n < 3:
        raise ValueError(f"X has only {n} distinct points; intrinsic dimension needs at least 3")
    search = functools.partial(_neighbors, batch_size=int(batch_size), dtype=dt)
    if method == "mle":
        if not 3 <= k < n:
            raise ValueError(f"k must be in [3, {n - 1}], got {k}")
        ks = np.asarray(scales if scales is not None else [max(5, k // 4), max(6, k // 2), k, 2 * k], dtype=float)
        if ks.ndim != 1 or not np.all(np.isfinite(ks)) or np.any(ks != np.round(ks)) or np.any(ks < 3):
            raise ValueError(f"scales for 'mle' must be integers >= 3 (neighbourhood sizes k), got {scales!r}")
        ks = np.unique(ks[ks < n].astype(int))
        dist, _ = search(Z, int(max(ks.max(initial=k), k)))
        value = _mle_from_distances(dist, k, average)
        pairs = [(int(kk), _mle_from_distances(dist, int(kk), average)) for kk in ks]
        dim = "k"
    else:
        mle = method == "twonn_mle"
        fracs = np.asarray(scales if scales is not None else [1.0, 0.5, 0.25, 0.125], dtype=float)
        if fracs.ndim != 1 or not np.all(np.isfinite(fracs)) or np.any(fracs <= 0) or np.any(fracs > 1):
            raise ValueError(f"scales for TwoNN must be subsample fractions in (0, 1], got {scales!r}")
        fracs = fracs[fracs * n >= 20]
        rng = np.random.default_rng(key)
        pairs = []
        value = None
        for f in fracs:
            sub = Z if f == 1.0 else Z[np.sort(rng.choice(n, int(f * n), replace=False))]
            dist, _ = search(sub, 2)
            est = _twonn_from_distances(dist[:, 0], dist[:, 1], discard_fraction, mle)
            pairs.append((sub.shape[0], est))
            if f == 1.0:
                value = est
        if value is None:
            dist, _ = search(Z, 2)
            value = _twonn_from_distances(dist[:, 0], dist[:, 1], discard_fraction, mle)
        dim = "n_points"
    if not np.isfinite(value):
        raise _undefined(method)
    pairs = [(s, e) for s, e in pairs if np.isfinite(e)]
    est = [e for _, e in pairs]
    by_scale = xr.DataArray(est, dims=dim, coords={dim: np.asarray([s for s, _ in pairs], dtype=int)},
                            name="intrinsic_dimension")
    by_scale.attrs.update(method=method, units="1")
    spread = (float(np.min(est)), float(np.max(est))) if est else (value, value)
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
