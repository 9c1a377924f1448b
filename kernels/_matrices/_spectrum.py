"""Kernel spectra (operator eigenvalues eig(K)/n) and their power-law exponents."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

METHODS = ("auto", "eigh", "randomized", "lanczos")


class Spectrum(NamedTuple):
    """Eigen-decomposition of a kernel matrix, normalised as operator eigenvalues.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        Descending, ``eig(K) / n``: estimates of the eigenvalues of the kernel's integral
        operator under the data distribution.
    eigenvectors : ndarray (n, k) or None
        Unit-norm eigenvectors ``u_i`` of ``K``; the eigenfunctions on the sample are
        ``phi_i = sqrt(n) u_i`` (so that ``mean(phi_i**2) = 1``).
    coefficients : ndarray (k,) or (k, c), or None
        Target coefficients ``v_i = phi_i . y / n = u_i . y / sqrt(n)``; ``sum v_i**2`` is
        the target's mean square.
    n : int
    method : str
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    coefficients: np.ndarray | None
    n: int
    method: str


def _shape(K):
    if isinstance(K, scipy.sparse.linalg.LinearOperator):
        return K.shape
    if hasattr(K, "shape") and len(K.shape) == 2:
        return tuple(K.shape)
    raise TypeError(
        f"K must be a square array, a zarr array or a scipy LinearOperator, got {type(K).__name__}"
    )


def _matmat(K, Q: np.ndarray, block_rows: int) -> np.ndarray:
    """``K @ Q`` in float64; arrays on disk (zarr) are streamed in row blocks.

    Raises ValueError when the product is not finite (NaN or inf in ``K``), so that no
    eigensolver ever sees them.
    """
    if isinstance(K, scipy.sparse.linalg.LinearOperator):
        out = np.asarray(K.matmat(Q), dtype=np.float64)
    elif isinstance(K, np.ndarray):
        out = np.asarray(K, dtype=np.float64) @ Q
    else:
        n = K.shape[0]
        out = np.empty((n, Q.shape[1]))
        for i in range(0, n, block_rows):
            out[i:i + block_rows] = np.asarray(K[i:i + block_rows], dtype=np.float64) @ Q
    if not np.all(np.isfinite(out)):
        raise ValueError("K contains non-finite values (NaN or inf): its products with vectors are not finite")
    return out


def _validate(K, n: int, block_rows: int, key) -> None:
    """Finite and symmetric, for every method: arrays in memory entry by entry, matrices
    on disk or operators by a random probe (``u . K v`` against ``v . K u``)."""
    if isinstance(K, np.ndarray):
        # row blocks: no temporary of the matrix's size, however large it is
        bad, first, asym, top = 0, None, 0.0, 0.0
        for i in range(0, n, 2048):
            rows = K[i:i + 2048]
            finite = np.isfinite(rows)
            if not finite.all():
                bad += int(np.count_nonzero(~finite))
                first = first or tuple(int(v) for v in np.argwhere(~finite)[0] + [i, 0])
                continue
            top = max(top, float(np.max(np.abs(rows))))
            asym = max(asym, float(np.max(np.abs(rows - K[:, i:i + 2048].T))))
        if bad:
            raise ValueError(f"K contains {bad} non-finite values (first at {first})")
        if asym > 1e-8 * max(top, 1e-300):
            raise ValueError(f"K is not symmetric (max |K - K^T| = {asym:.3g}); spectra are defined for "
                             "symmetric kernel matrices")
        return
    rng = np.random.default_rng(int(np.asarray(jax.random.key_data(key)).ravel()[-1]) if not isinstance(
        key, (int, np.integer)) else int(key))
    uv = rng.standard_normal((n, 2))
    Kuv = _matmat(K, uv, block_rows)
    a, b = uv[:, 0] @ Kuv[:, 1], uv[:, 1] @ Kuv[:, 0]
    scale = max(np.linalg.norm(Kuv) * np.linalg.norm(uv), 1e-300)
    if abs(a - b) > 1e-8 * scale:
        raise ValueError(f"K is not symmetric (a random probe gives u.Kv = {a:.6g} but v.Ku = {b:.6g})")


def _warn_if_not_psd(w: np.ndarray, diag_min: float, dtype) -> None:
    """RuntimeWarning when K has a clearly negative eigenvalue or diagonal entry (beyond rounding)."""
    scale = np.max(np.abs(w)) if w.size else 0.0
    tol = np.sqrt(np.finfo(dtype).eps) * scale
    if w.size and (np.min(w) < -tol or diag_min < -tol):
        worst = min(float(np.min(w)), float(diag_min))
        warnings.warn(f"K is not positive semi-definite (an eigenvalue or diagonal entry is {worst:.3g}, "
                      f"largest |eigenvalue| {scale:.3g}): not a kernel matrix, the spectrum's meaning is doubtful",
                      RuntimeWarning, stacklevel=3)


def spectrum(K, k: int | None = None, *, y=None, return_vectors: bool = False, method: str = "auto",
             oversample: int | None = None, n_iter: int = 4, key=0, block_rows: int = 4096,
             product_dtype=np.float64) -> Spectrum:
    r"""Eigenvalues (descending, divided by ``n``) of a symmetric PSD kernel matrix, in float64.

    Parameters
    ----------
    K : array (n, n), zarr array, or scipy LinearOperator
        The Gram matrix. For ``"randomized"``/``"lanczos"`` only products ``K @ Q`` are
        needed: zarr arrays on disk are streamed in ``block_rows`` row blocks, so kernels
        too large for memory have spectra too.
    k : int, optional
        Number of leading eigenvalues (default: all, which needs ``"eigh"``).
    y : array (n,) or (n, c), optional
        Targets: their coefficients ``v_i`` in the eigenbasis are returned.
    return_vectors : bool
    method : {"auto", "eigh", "randomized", "lanczos"}
        ``"eigh"``: exact LAPACK (``scipy.linalg.eigh``, a subset when ``k`` is given).
        ``"randomized"``: subspace iteration with ``k + oversample`` vectors and ``n_iter``
        power steps, then Rayleigh-Ritz (Halko, Martinsson & Tropp 2011): needs only
        ``n_iter + 2`` block products. ``"lanczos"``: ARPACK (``scipy.sparse.linalg.eigsh``).
        ``"auto"``: ``"randomized"`` for ``k <= n/10`` on large matrices, else ``"eigh"``.
    oversample : int, optional
        Extra randomized vectors (default ``k``, i.e. a block of ``2k``).
    key : int or jax key
        Seed of the randomized method's Gaussian test matrix.
    product_dtype : numpy dtype
        Precision of the randomized method's products ``K @ Q``. ``float32`` halves their
        cost; orthonormalisation and the Rayleigh-Ritz step stay float64, and the leading
        eigenvalues keep ~1e-5 relative accuracy (measured in ``benchmarks/spectrum.py``).

    Returns
    -------
    Spectrum

    Raises
    ------
    FloatingPointError
        Non-finite eigenvalues (never returned silently; e.g. jax's CPU ``eigh`` returns
        NaN for n >= 32767, jax issue 10420, which is why LAPACK is used on CPU).

    Examples
    --------
    >>> import numpy as np, kernels
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    >>> lam = np.arange(1, 51) ** -2.0
    >>> K = 50 * (U * lam) @ U.T
    >>> np.allclose(kernels.spectrum(K).eigenvalues, lam)
    True
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    n, m = _shape(K)
    if n != m:
        raise ValueError(f"K must be square, got shape {(n, m)}")
    if k is not None and (not isinstance(k, (int, np.integer)) or not 1 <= k <= n):
        raise ValueError(f"k must be an integer in [1, {n}], got {k!r}")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"y must have {n} rows (one per row of K), got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains non-finite values (NaN or inf)")
    if method == "auto":
        method = "randomized" if (k is not None and k <= n // 10 and n > 2000) else "eigh"
    if method == "eigh" and not isinstance(K, np.ndarray):
        K = np.asarray(K[:] if not isinstance(K, scipy.sparse.linalg.LinearOperator) else K.matmat(np.eye(n)))
    if method != "eigh" and k is None:
        raise ValueError(f"method {method!r} computes the leading k eigenvalues: pass k")
    if (isinstance(K, np.ndarray) and not np.issubdtype(K.dtype, np.number)) or np.iscomplexobj(K):
        raise TypeError(f"K must hold real numbers, got dtype {K.dtype}")
    dtype = K.dtype if isinstance(K, np.ndarray) and K.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    _validate(K, n, block_rows, key)
    want_vectors = return_vectors or y is not None
    # Eigenvalues scale with K: solve for K / max|K| (no overflow or underflow at 1e+-300)
    scale = 1.0
    if isinstance(K, np.ndarray):
        if K.dtype.kind != "f":
            K = K.astype(np.float64)
        top = max(float(K.max()), -float(K.min())) if K.size else 1.0  # no |K| temporary
        if top > 0 and not 1e-100 < top < 1e100:  # rescale only where products could over/underflow
            scale = top
            K = K / scale
    if method == "lanczos" and isinstance(K, np.ndarray) and not np.any(K):
        method = "eigh"  # K = 0: ARPACK's Krylov space collapses (its error -9); the dense solver is exact
    if method == "lanczos" and k >= n - 1:
        if not isinstance(K, np.ndarray):
            raise ValueError(f"method 'lanczos' (ARPACK) needs k < n - 1 = {n - 1}, got k = {k}; use 'eigh'")
        method = "eigh"  # ARPACK cannot return that many: the dense solver can

    if method == "eigh":
        Kd = np.asarray(K, dtype=np.float64)
        subset = None if k is None else [n - k, n - 1]
        res = scipy.linalg.eigh(Kd, subset_by_index=subset, eigvals_only=not want_vectors,
                                driver="evr" if subset else "evd")
        w, V = res if want_vectors else (res, None)
    elif method == "randomized":
        w, V = _randomized_eigh(K, k, oversample if oversample is not None else k, n_iter, key, block_rows,
                                product_dtype)
    else:
        op = K if isinstance(K, scipy.sparse.linalg.LinearOperator) else scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=lambda v: _matmat(K, v.reshape(n, -1), block_rows).ravel(),
            matmat=lambda Q: _matmat(K, Q, block_rows), dtype=np.float64)
        try:
            w, V = scipy.sparse.linalg.eigsh(op, k=k, which="LA")
        except scipy.sparse.linalg.ArpackError as exc:
            raise ValueError(f"method 'lanczos' (ARPACK) failed on this n = {n} matrix ({exc}); "
                             "use method='eigh' or 'randomized'") from None
    w = np.asarray(w, dtype=np.float64) * scale
    if not np.all(np.isfinite(w)):
        raise FloatingPointError(
            f"the {method} eigensolver returned {np.count_nonzero(~np.isfinite(w))} non-finite eigenvalues "
            f"for an n = {n} matrix; check K for NaN/inf"
        )
    _warn_if_not_psd(w, float(np.min(np.diagonal(K))) * scale if isinstance(K, np.ndarray) else 0.0, dtype)
    order = np.argsort(w)[::-1]
    w = w[order]
    if k is not None:
        w = w[:k]
    vecs = None
    coef = None
    if want_vectors:
        V = np.asarray(V)[:, order][:, : len(w)]
        vecs = V if return_vectors else None
        if y is not None:
            coef = (V.T @ y) / math.sqrt(n)
    return Spectrum(w / n, vecs, coef, n, method)


def _orthonormal_basis(Y):
    """A basis of range(Y) by Cholesky-QR (two passes): a Gram product and a triangular
    solve instead of Householder QR, several times faster for tall blocks."""
    for _ in range(2):
        G = Y.T @ Y
        G += np.eye(G.shape[0], dtype=G.dtype) * (np.finfo(G.dtype).eps * np.trace(G))
        try:
            R = scipy.linalg.cholesky(G, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            return np.linalg.qr(Y)[0]
        Y = scipy.linalg.solve_triangular(R, Y.T, trans="T", lower=False, check_finite=False).T
    return Y


def _randomized_eigh(K, k, oversample, n_iter, key, block_rows, product_dtype):
    n = _shape(K)[0]
    ell = min(n, k + max(oversample, 0))
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    omega = np.asarray(jax.random.normal(key, (n, ell)), dtype=np.float64)
    low = np.dtype(product_dtype) != np.float64 and isinstance(K, np.ndarray)
    Kp = K.astype(product_dtype) if low else K

    def prod(Q):
        return _matmat(Kp, Q.astype(product_dtype) if low else Q, block_rows) if not low else Kp @ Q.astype(product_dtype)

    Q = _orthonormal_basis(prod(omega))
    for _ in range(n_iter):
        Q = _orthonormal_basis(prod(Q))
    Q, _ = np.linalg.qr(np.asarray(Q, dtype=np.float64))
    B = Q.T @ np.asarray(prod(Q), dtype=np.float64)
    w, S = np.linalg.eigh(0.5 * (B + B.T))
    return w, Q @ S


# ---------------------------------------------------------------- exponents


class SpectralExponent(NamedTuple):
    """A power-law exponent fitted to a decaying sequence over an index range.

    ``alpha`` with ``ci``, the index range ``(lo, hi)`` used, the local exponents over it
    (``local_index``, ``local_alpha``) and a ``note`` reminding that a finite spectrum has
    only local exponents.
    """

    alpha: float
    ci: tuple[float, float]
    index_range: tuple[int, int]
    local_index: np.ndarray
    local_alpha: np.ndarray
    note: str

    def __repr__(self) -> str:  # the local-exponent arrays would drown the numbers a reader wants
        lo, hi = self.ci
        return (f"SpectralExponent(alpha={self.alpha:.4g}, ci=({lo:.4g}, {hi:.4g}), "
                f"index_range={tuple(int(i) for i in self.index_range)}, note={self.note!r})")


def _local_slopes(logi, logv, centers, half_width):
    """Slopes of log v vs log i in windows of +-half_width (log units), uniform in log i."""
    slopes = np.full(centers.size, np.nan)
    for j, c in enumerate(centers):
        sel = np.abs(logi - c) <= half_width
        if sel.sum() < 3:
            continue
        x, yv = logi[sel], logv[sel]
        wts = np.exp(-x)  # indices are dense in log space at large i: weight 1/i evens that out
        wts /= wts.sum()
        mx = np.sum(wts * x)
        my = np.sum(wts * yv)
        slopes[j] = np.sum(wts * (x - mx) * (yv - my)) / np.sum(wts * (x - mx) ** 2)
    return slopes


def _power_law_index_fit(values, shift: float, index_range, level, half_width_decades, what):
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 8:
        raise ValueError(f"need at least 8 {what} to fit an exponent, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} contain non-finite values")
    i = np.arange(1, v.size + 1, dtype=np.float64)
    floor = 1e-12 * np.max(np.abs(v))
    usable = v > floor
    if index_range is None or index_range == "auto":
        last = int(np.flatnonzero(usable)[-1]) + 1 if usable.any() else 0
        lo_cap, hi_cap = 3, max(8, min(last, v.size))
    else:
        lo_cap, hi_cap = map(int, index_range)
        if not (1 <= lo_cap < hi_cap <= v.size):
            raise ValueError(f"index_range must satisfy 1 <= lo < hi <= {v.size}, got {index_range}")
        if not np.all(usable[lo_cap - 1:hi_cap]):
            raise ValueError(f"{what} in index_range {index_range} include values <= 0 (or below 1e-12 of the max)")
    sel = (i >= lo_cap) & (i <= hi_cap) & usable
    logi, logv = np.log(i[sel]), np.log(v[sel])
    if logi.size < 8:
        raise ValueError(f"fewer than 8 usable {what} in the index range [{lo_cap}, {hi_cap}]")
    hw = half_width_decades * np.log(10)
    centers = np.linspace(logi[0] + hw, logi[-1] - hw, 40) if logi[-1] - logi[0] > 2 * hw else np.array(
        [0.5 * (logi[0] + logi[-1])])
    local = -_local_slopes(logi, logv, centers, hw) - shift
    ok = np.isfinite(local)
    centers, local = centers[ok], local[ok]
    if index_range is None or index_range == "auto":
        # The widest window whose local exponents stay within tol of their median.
        best = (0.0, 0, len(centers) - 1)
        for a in range(len(centers)):
            for b in range(a, len(centers)):
                seg = local[a:b + 1]
                med = np.median(seg)
                if np.max(np.abs(seg - med)) <= 0.1 * max(1.0, abs(med) + shift):
                    if centers[b] - centers[a] > best[0]:
                        best = (centers[b] - centers[a], a, b)
        _, a, b = best
        lo_i = max(lo_cap, int(np.floor(np.exp(centers[a] - hw))))
        hi_i = min(hi_cap, int(np.ceil(np.exp(centers[b] + hw))))
        keep = (centers >= centers[a]) & (centers <= centers[b])
        centers, local = centers[keep], local[keep]
    else:
        lo_i, hi_i = lo_cap, hi_cap
    in_range = (i >= lo_i) & (i <= hi_i) & usable
    x, yv = np.log(i[in_range]), np.log(v[in_range])
    w = np.exp(-x)
    w /= w.sum()
    mx, my = np.sum(w * x), np.sum(w * yv)
    sxx = np.sum(w * (x - mx) ** 2)
    slope = np.sum(w * (x - mx) * (yv - my)) / sxx
    if not slope < -1e-3:
        raise ValueError(
            f"the {what} do not decay over indices [{lo_i}, {hi_i}] (log-log slope {slope:+.3g}): a flat or "
            "increasing sequence has no power-law exponent (sort eigenvalues in descending order)"
        )
    resid = yv - my - slope * (x - mx)
    n_eff = 1.0 / np.sum(w**2)
    se = math.sqrt(max(np.sum(w * resid**2) / sxx / max(n_eff - 2, 1.0), 0.0))
    alpha = -slope - shift
    q = [(1 - level) / 2, (1 + level) / 2]
    lo_q, hi_q = np.quantile(local, q) if local.size else (alpha, alpha)
    z = 2.0
    ci = (float(min(lo_q, alpha - z * se)), float(max(hi_q, alpha + z * se)))
    decades = math.log10(hi_i / lo_i)
    note = (f"local exponent of a finite sequence over indices [{lo_i}, {hi_i}] ({decades:.1f} decades); "
            f"local exponents there range over [{local.min():.3g}, {local.max():.3g}]" if local.size else "")
    if decades < 1.0:
        warnings.warn(f"the {what} follow a power law over only {decades:.2f} decades (indices {lo_i}-{hi_i}): "
                      "the exponent is poorly determined", RuntimeWarning, stacklevel=3)
    return SpectralExponent(float(alpha), ci, (int(lo_i), int(hi_i)), np.exp(centers), local, note)


def spectral_exponent(eigenvalues, *, index_range=None, level: float = 0.9,
                      half_width_decades: float = 0.25) -> SpectralExponent:
    r"""Exponent ``alpha_K`` of a power-law spectrum :math:`\lambda_i \sim i^{-(1+\alpha_K)}`.

    Fits ``log lambda_i`` against ``log i`` over ``index_range`` (weighted uniformly in
    ``log i``). With ``index_range=None`` the range is chosen automatically: the widest
    stretch (after the first two eigenvalues, above a 1e-12 relative floor) where the local
    exponents stay within 0.1 (1 + alpha) of their median. The interval spans the
    ``level`` quantiles of the local exponents over the range and +-2 standard errors of
    the slope: a finite spectrum has only local exponents, and their drift is the honest
    uncertainty. Warns when the range spans less than a decade.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> res = kernels.spectral_exponent(np.arange(1, 2001) ** -1.5)
    >>> round(res.alpha, 6)
    0.5
    """
    return _power_law_index_fit(eigenvalues, 1.0, index_range, level, half_width_decades, "eigenvalues")


def target_exponent(coefficients, *, index_range=None, level: float = 0.9,
                    half_width_decades: float = 0.25) -> SpectralExponent:
    r"""Exponent of the target's tail power :math:`1 - \sum_{j \le i} v_j^2 / \sum_j v_j^2 \sim i^{-\alpha}`.

    ``coefficients`` are the target's eigen-coefficients (``Spectrum.coefficients``, in
    the order of descending eigenvalues); several outputs are summed. If
    :math:`v_i^2 \sim i^{-(1+\beta)}` the tail power decays as :math:`i^{-\beta}`.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> v = np.sqrt(np.arange(1, 5001) ** -1.8)
    >>> round(kernels.target_exponent(v, index_range=(10, 500)).alpha, 1)
    0.8
    """
    v = np.asarray(coefficients, dtype=np.float64)
    power = v**2 if v.ndim == 1 else np.sum(v**2, axis=tuple(range(1, v.ndim)))
    total = power.sum()
    if not total > 0:
        raise ValueError("the target has zero power in this eigenbasis")
    tail = 1.0 - np.cumsum(power) / total
    tail = np.maximum(tail, 0.0)
    return _power_law_index_fit(tail, 0.0, index_range, level, half_width_decades, "target tail powers")
