"""Theory learning curves from a spectrum: kernel ridge and linear random-feature regression.

Conventions. ``eigenvalues`` are operator eigenvalues ``lambda_i`` (``eig(K)/n`` of a large
sample), ``coefficients`` the target's ``v_i`` (``y = sum_i v_i phi_i``), ``ridge`` the
``delta`` added to the raw Gram matrix (``f = k^T (K + delta I)^-1 y``), ``noise`` the
variance ``sigma^2`` of label noise. Test MSE is the expected error on noisy test labels
(so it tends to ``sigma^2``, not 0). All solves are bracketed bisections in log space,
vectorised over every requested ``n`` (and ``k``) at once, in float64.

References: Simon, Dickens, Karkada, DeWeese (2021), "The eigenlearning framework";
Bordelon, Canatar, Pehlevan (2020); for random features Atanasov, Zavatone-Veth, Pehlevan
(2024) and Maloney, Roberts, Sully (2022); Bahri et al. (2021) Sec. 3 for the duality.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scaling import enable_x64

from ._checks import check_nonnegative

_BISECTION_STEPS = 100  # log-space bracket of < 1e3 natural-log units -> 1e-27 precision


def _spectrum_arrays(eigenvalues, coefficients):
    lam = np.asarray(eigenvalues, dtype=np.float64)
    v = np.asarray(coefficients, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
    if v.shape[:1] != lam.shape:
        raise ValueError(f"coefficients have shape {v.shape}; the first axis must match eigenvalues {lam.shape}")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        bad = int(np.flatnonzero(~np.isfinite(lam) | (lam < 0))[0])
        raise ValueError(f"eigenvalues must be finite and >= 0; got eigenvalues[{bad}] = {lam[bad]}")
    if not np.all(np.isfinite(v)):
        raise ValueError("coefficients contain non-finite values")
    power = v**2 if v.ndim == 1 else np.sum(v**2, axis=tuple(range(1, v.ndim)))
    keep = lam > 0
    return lam[keep], power[keep]



def _check_sizes(name, value):
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return a


def _padded(a: np.ndarray) -> np.ndarray:
    """Pad a flat array to the next power of two (repeating its last value) so that curves
    of nearby lengths share one compiled solver."""
    m = a.size
    size = 1 << max(0, (m - 1).bit_length())
    return np.concatenate([a, np.full(size - m, a[-1])]) if size > m else a


def _bisect_log(f, lo, hi):
    """Root of a decreasing ``f(log x)`` between ``lo`` (f > 0) and ``hi`` (f < 0)."""

    def step(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        pos = f(mid) > 0
        return jnp.where(pos, mid, a), jnp.where(pos, b, mid)

    a, b = jax.lax.fori_loop(0, _BISECTION_STEPS, step, (lo, hi))
    return 0.5 * (a + b)


def _z(lam, g):
    return jnp.sum(lam / (lam + g))


@functools.partial(jax.jit, static_argnames=())
def _krr_one(lam, power, n, ridge, noise):
    total = jnp.sum(lam)
    n_pos = lam.shape[0]
    tiny = jnp.min(lam) * 1e-14
    hi = jnp.log((total + ridge) / n * 2.0 + tiny)
    lo = jnp.log(jnp.where(ridge > 0, jnp.minimum(ridge / n * 0.5, tiny), tiny))

    def f(logk):
        k = jnp.exp(logk)
        return _z(lam, k) + ridge / k - n

    ridgeless_saturated = (ridge == 0) & (n >= n_pos - 1e-9)
    kappa = jnp.where(ridgeless_saturated, 0.0, jnp.exp(_bisect_log(f, lo, hi)))
    L = jnp.where(ridgeless_saturated, 1.0, lam / (lam + kappa))
    q = jnp.sum(L**2)
    E0 = jnp.where(n - q > 0, n / (n - q), jnp.inf)
    bias_noise = jnp.sum((1.0 - L) ** 2 * power) + noise
    # ridgeless with n = number of modes and no noise: every mode is learned exactly, risk 0
    # (E0 is infinite there, and inf * 0 would be NaN)
    test = jnp.where(bias_noise == 0, 0.0, E0 * bias_noise)
    train = jnp.where(ridge > 0, (ridge / (n * jnp.maximum(kappa, 1e-300))) ** 2 * test, 0.0)
    return test, train, kappa, E0


def krr_risk(eigenvalues, coefficients, n, *, ridge: float = 0.0, noise: float = 0.0) -> np.ndarray:
    r"""Predicted test MSE of kernel ridge regression on ``n`` samples (eigenlearning).

    .. math::
        \sum_i \frac{\lambda_i}{\lambda_i+\kappa} + \frac{\delta}{\kappa} = n,\quad
        L_i = \frac{\lambda_i}{\lambda_i+\kappa},\quad
        E_0 = \frac{n}{n-\sum_i L_i^2},\quad
        \mathrm{MSE} = E_0\Big[\sum_i (1-L_i)^2 v_i^2 + \sigma^2\Big]

    Parameters
    ----------
    eigenvalues : array (N,)
        Operator eigenvalues (zeros are ignored).
    coefficients : array (N,) or (N, c)
        Target coefficients ``v_i`` (several outputs: their powers add up).
    n : float or array
        Training-set sizes; the result has this shape.
    ridge : float
        ``delta`` on the raw Gram matrix. With ``ridge=0`` and ``n`` at least the number of
        nonzero eigenvalues the fit interpolates everything learnable (``kappa = 0``).
    noise : float
        Label-noise variance ``sigma^2``.

    Returns
    -------
    ndarray of the shape of ``n``

    Examples
    --------
    >>> import numpy as np, kernels
    >>> lam = np.arange(1, 5001) ** -1.5
    >>> v = np.sqrt(lam)              # a target with v_i^2 = lambda_i
    >>> r = kernels.krr_risk(lam, v, [100, 1000])
    >>> bool(r[1] < r[0])
    True
    """
    return krr_theory(eigenvalues, coefficients, n, ridge=ridge, noise=noise)["test_mse"].values


def krr_theory(eigenvalues, coefficients, n, *, ridge: float = 0.0, noise: float = 0.0,
               population_size: int | None = None) -> xr.Dataset:
    """Theory KRR learning curve as a Dataset over ``D``: ``test_mse``, ``train_mse``, ``kappa``, ``E0``.

    See :func:`krr_risk`. ``train_mse = (delta / (n kappa))^2 test_mse``.

    When the spectrum was measured on a finite pool of ``population_size`` points from
    which the training sets are drawn (e.g. all of a small data set), the error on the
    points *not* trained on is ``heldout_mse = (N test_mse - n train_mse) / (N - n)``: the
    population error mixes held-out points and the training points themselves.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> ds = kernels.krr_theory(np.arange(1, 1001) ** -2.0, np.ones(1000) / 30, [10, 100], ridge=1e-3)
    >>> list(ds.data_vars)
    ['test_mse', 'train_mse', 'kappa', 'E0']
    """
    lam, power = _spectrum_arrays(eigenvalues, coefficients)
    n_arr = _check_sizes("n", n)
    ridge = check_nonnegative("ridge", ridge)
    noise = check_nonnegative("noise", noise)
    with enable_x64():
        fn = jax.vmap(_krr_one, in_axes=(None, None, 0, None, None))
        out = fn(jnp.asarray(lam), jnp.asarray(power), jnp.asarray(_padded(n_arr.ravel())), ridge, noise)
        test, train, kappa, E0 = (np.asarray(a)[: n_arr.size] for a in out)
    shape = n_arr.shape
    dims = ("D",) if n_arr.ndim == 1 else tuple(f"dim_{i}" for i in range(n_arr.ndim))
    coords = {"D": n_arr} if n_arr.ndim == 1 else {}
    data = {k: (dims, a.reshape(shape)) for k, a in
            (("test_mse", test), ("train_mse", train), ("kappa", kappa), ("E0", E0))}
    ds = xr.Dataset(data, coords=coords)
    if population_size is not None:
        N = float(population_size)
        if not np.all(n_arr < N):
            raise ValueError(f"population_size ({population_size}) must exceed every n (max {n_arr.max():g})")
        ds["heldout_mse"] = (N * ds.test_mse - n_arr.reshape(shape) * ds.train_mse) / (N - n_arr.reshape(shape))
    ds.attrs.update(theory="eigenlearning KRR (Simon et al. 2021)", ridge=ridge, noise=noise,
                    n_eigenvalues=int(lam.size))
    return ds


@jax.jit
def _rf_gamma(lam, n, k, ridge):
    """The self-consistent ``gamma`` of one ``(n, k)`` cell (ridgeless: a function of
    ``min(n, k)`` alone)."""
    total = jnp.sum(lam)
    n_pos = lam.shape[0]
    tiny = jnp.min(lam) * 1e-14
    big = jnp.log(2.0 * (total + ridge) / jnp.minimum(n, k) + tiny)

    m = jnp.minimum(n, k)
    saturated = m >= n_pos - 1e-9

    def gamma_ridge(_):
        # gamma_k: z(gamma_k) = k, the lower edge of the admissible gammas (0 if N <= k).
        has_edge = n_pos > k
        g_k = jnp.where(has_edge, jnp.exp(_bisect_log(lambda lg: _z(lam, jnp.exp(lg)) - k, jnp.log(tiny), big)), 0.0)

        def g_ridge(lg):
            g = jnp.exp(lg)
            z = _z(lam, g)
            return z + ridge * k / (g * jnp.maximum(k - z, 1e-300)) - n

        lo = jnp.log(jnp.maximum(g_k * (1.0 + 1e-15), tiny))
        hi = jnp.log(jnp.exp(big) + 2.0 * g_k)
        return jnp.exp(_bisect_log(g_ridge, lo, hi))

    def gamma_0(_):
        # Ridgeless limit: z(gamma) = min(n, k), or gamma = 0 when that saturates the spectrum.
        return jnp.where(saturated, 0.0, jnp.exp(_bisect_log(lambda lg: _z(lam, jnp.exp(lg)) - m, jnp.log(tiny), big)))

    # only the branch in use is solved (a ridge shared by a vmapped grid keeps this a real branch)
    return jax.lax.cond(ridge > 0, gamma_ridge, gamma_0, None)


@jax.jit
def _rf_from_gamma(lam, power, n, k, ridge, noise, gamma):
    """Test MSE, gamma, kappa and E0 of one ``(n, k)`` cell given its ``gamma``."""
    saturated = jnp.minimum(n, k) >= lam.shape[0] - 1e-9
    L = jnp.where((ridge == 0) & saturated, 1.0, lam / (lam + gamma))
    z = jnp.sum(L)
    q = jnp.sum(L**2)
    denom = n * (k - q)
    inv_E0 = 1.0 - (q * (k - 2.0 * z) + z**2) / jnp.where(denom > 0, denom, jnp.inf)
    E0 = jnp.where((inv_E0 > 1e-14) & (denom > 0), 1.0 / inv_E0, jnp.inf)
    rho = jnp.where(k - q > 0, (k - z) / (k - q), 0.0)
    bias_noise = jnp.sum((1.0 - L) * (1.0 - rho * L) * power) + noise
    test = jnp.where(bias_noise == 0, 0.0, E0 * bias_noise)  # nothing left to learn: 0, not inf * 0
    kappa = gamma * (k - z) / k
    return test, gamma, kappa, E0


def rf_risk(eigenvalues, coefficients, n, k, *, ridge: float = 0.0, noise: float = 0.0) -> np.ndarray:
    r"""Predicted test MSE of linear random-feature ridge regression: ``k`` features, ``n`` samples.

    The student's features are random projections of the teacher's (Bahri et al. 2021,
    Sec. 3); the estimator is kernel ridge regression with the finite kernel
    ``K_k = F F^T / k``. With :math:`\gamma, \kappa` solving

    .. math::
        \sum_i \frac{\lambda_i}{\lambda_i+\gamma} + \frac{\delta}{\kappa} = n,\qquad
        \sum_i \frac{\lambda_i}{\lambda_i+\gamma} + \frac{k\kappa}{\gamma} = k,

    :math:`L_i = \lambda_i/(\lambda_i+\gamma)`, :math:`z = \sum L_i`, :math:`q = \sum L_i^2`:

    .. math::
        E_0 = \Big(1 - \frac{q(k-2z) + z^2}{n(k-q)}\Big)^{-1},\ \
        \rho = \frac{k-z}{k-q},\ \
        \mathrm{MSE} = E_0\Big[\sum_i (1-L_i)(1-\rho L_i)\, v_i^2 + \sigma^2\Big].

    ``k -> inf`` recovers :func:`krr_risk`; ``n -> inf`` gives the model-size curve
    ``L(P)``. Ridgeless (``ridge=0``) the risk diverges at ``n = k`` (double descent).

    Parameters
    ----------
    eigenvalues, coefficients, ridge, noise
        As for :func:`krr_risk`.
    n, k : float or arrays, broadcast together

    Returns
    -------
    ndarray of the broadcast shape of ``n`` and ``k`` (``inf`` at a ridgeless ``n = k``)

    Examples
    --------
    >>> import numpy as np, kernels
    >>> lam = np.arange(1, 5001) ** -1.5
    >>> v = np.sqrt(lam)
    >>> krr = kernels.krr_risk(lam, v, 200, ridge=1e-3)
    >>> rf = kernels.rf_risk(lam, v, 200, 1e7, ridge=1e-3)
    >>> bool(abs(rf / krr - 1) < 1e-3)
    True
    """
    return rf_theory(eigenvalues, coefficients, n, k, ridge=ridge, noise=noise)["test_mse"].values


def rf_theory(eigenvalues, coefficients, n, k, *, ridge: float = 0.0, noise: float = 0.0) -> xr.Dataset:
    """Theory random-feature learning curves as a Dataset: ``test_mse``, ``gamma``, ``kappa``, ``E0``.

    With 1-D ``n`` and ``k`` the Dataset is over dims ``(D, P)`` (the outer grid);
    otherwise over the broadcast shape. See :func:`rf_risk`.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> ds = kernels.rf_theory(np.arange(1, 1001) ** -2.0, np.ones(1000) / 30, [10, 100], [20, 50, 80])
    >>> ds.test_mse.dims
    ('D', 'P')
    """
    lam, power = _spectrum_arrays(eigenvalues, coefficients)
    n_arr = _check_sizes("n", n)
    k_arr = _check_sizes("k", k)
    ridge = check_nonnegative("ridge", ridge)
    noise = check_nonnegative("noise", noise)
    grid = n_arr.ndim == 1 and k_arr.ndim == 1 and n_arr.size > 0 and k_arr.size > 0
    if grid:
        nb, kb = np.meshgrid(n_arr, k_arr, indexing="ij")
    else:
        nb, kb = np.broadcast_arrays(n_arr, k_arr)
    with enable_x64():
        lam_d, n_d, k_d = jnp.asarray(lam), jnp.asarray(_padded(nb.ravel())), jnp.asarray(_padded(kb.ravel()))
        if ridge == 0:
            # ridgeless, gamma depends on min(n, k) only: one root per distinct value (a D x P
            # grid of s sizes has s, not s^2), then every cell from its gamma
            m = np.minimum(nb, kb).ravel()
            distinct, which = np.unique(m, return_inverse=True)
            md = jnp.asarray(_padded(distinct))
            g = np.asarray(jax.vmap(_rf_gamma, in_axes=(None, 0, 0, None))(lam_d, md, md, ridge))[which]
            gamma_d = jnp.asarray(_padded(g))
        else:
            gamma_d = jax.vmap(_rf_gamma, in_axes=(None, 0, 0, None))(lam_d, n_d, k_d, ridge)
        fn = jax.vmap(_rf_from_gamma, in_axes=(None, None, 0, 0, None, None, 0))
        out = fn(lam_d, jnp.asarray(power), n_d, k_d, ridge, noise, gamma_d)
        test, gamma, kappa, E0 = (np.asarray(a)[: nb.size].reshape(nb.shape) for a in out)
    if grid:
        dims, coords = ("D", "P"), {"D": n_arr, "P": k_arr}
    else:
        dims, coords = tuple(f"dim_{i}" for i in range(nb.ndim)), {}
    ds = xr.Dataset({"test_mse": (dims, test), "gamma": (dims, gamma), "kappa": (dims, kappa), "E0": (dims, E0)},
                    coords=coords)
    ds.attrs.update(theory="linear random-feature ridge regression", ridge=ridge, noise=noise,
                    n_eigenvalues=int(lam.size))
    return ds


def kare(K, y, ridge) -> np.ndarray:
    r"""Kernel alignment risk estimator (Jacot et al. 2020), from training data alone.

    .. math::
        \mathrm{KARE}(\lambda) = \frac{\frac1n\, y^T (K/n + \lambda I)^{-2} y}
                                      {\big[\frac1n \operatorname{Tr}(K/n + \lambda I)^{-1}\big]^2},
        \qquad \lambda = \delta / n

    an estimate of the test MSE of kernel ridge regression with ridge ``delta`` (the same
    convention as :func:`krr_risk`), e.g. to choose the ridge without a validation set.

    Parameters
    ----------
    K : array (n, n)
        Training Gram matrix.
    y : array (n,) or (n, c)
    ridge : float or array
        Ridge(s) ``delta``; the result has this shape.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> x = np.linspace(-1, 1, 40)[:, None]
    >>> K = np.exp(-(x - x.T) ** 2)
    >>> est = kernels.kare(K, np.sin(3 * x[:, 0]), [1e-6, 1e-3, 1.0])
    >>> est.shape
    (3,)
    """
    K = np.asarray(K, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be square, got shape {K.shape}")
    if y.shape[0] != K.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but K is {K.shape[0]} x {K.shape[0]}")
    r = check_nonnegative("ridge", ridge, array=True)
    n = K.shape[0]
    d, U = np.linalg.eigh(K / n)
    d = np.maximum(d, 0.0)
    a2 = (U.T @ y) ** 2
    a2 = a2 if a2.ndim == 1 else a2.sum(axis=1)
    lam = r.ravel()[:, None] / n
    if np.any((lam == 0) & (d.min() <= 0)):
        raise ValueError("ridge 0 needs a positive-definite K (KARE divides by its eigenvalues)")
    num = np.sum(a2[None] / (d[None] + lam) ** 2, axis=1) / n
    den = (np.sum(1.0 / (d[None] + lam), axis=1) / n) ** 2
    return (num / den).reshape(r.shape)
