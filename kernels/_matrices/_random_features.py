"""Finite random features and their kernels ``K_P = F F^T / P``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scaling import enable_x64


def random_features(arch, x, n_features: int, *, key, chunk: int = 64) -> np.ndarray:
    r"""``n_features`` random features of ``x``: outputs of independently initialised networks.

    Each draw of ``init_fn`` contributes its ``out_dim`` outputs; draws are made
    ``chunk`` at a time (vmapped) to bound memory. With ``out_dim = 1`` the features are
    i.i.d. and :math:`F F^T / P` converges to the network's (finite-width) NNGP; a network
    whose last layer is a wide hidden layer (no readout) gives that layer's activations.

    Parameters
    ----------
    arch : stax triple
    x : array, shape (n, ...)
    n_features : int
    key : jax PRNG key or int seed

    Returns
    -------
    ndarray, shape (n, n_features)

    Examples
    --------
    >>> import numpy as np, kernels
    >>> F = kernels.random_features(kernels.mlp(1, width=32), np.ones((4, 3)), 10, key=0)
    >>> F.shape
    (4, 10)
    """
    if not (isinstance(arch, tuple) and len(arch) == 3):
        raise TypeError("arch must be a stax (init_fn, apply_fn, kernel_fn) triple")
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    init_fn, apply_fn, _ = arch
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    x = jnp.asarray(x)
    out_shape, _ = init_fn(jax.random.key(0), x.shape)
    out_dim = int(out_shape[-1])
    draws = math.ceil(n_features / out_dim)

    @jax.jit
    def features(keys):
        def one(k):
            _, params = init_fn(k, x.shape)
            return apply_fn(params, x).reshape(x.shape[0], out_dim)

        return jax.vmap(one)(keys)  # (c, n, out_dim)

    keys = jax.random.split(key, draws)
    pad = (-draws) % chunk if draws > chunk else 0
    keys = jnp.concatenate([keys, keys[:pad]]) if pad else keys
    size = min(chunk, draws)
    blocks = [np.asarray(features(keys[i:i + size])) for i in range(0, keys.shape[0], size)]
    F = np.concatenate(blocks)[:draws]  # (draws, n, out_dim)
    return np.moveaxis(F, 0, 1).reshape(x.shape[0], draws * out_dim)[:, :n_features]


def random_projection_features(features, n_features: int, *, key) -> np.ndarray:
    r"""Student features of the linear random-feature model: ``f_mu = sum_M Proj[mu, M] F_M``.

    ``Proj`` is a ``(n_features, S)`` matrix of i.i.d. standard normals (Bahri et al. 2021,
    Sec. 3), so ``E[f f^T] = F F^T``: the student kernel ``K_P = f f^T / P`` is an unbiased
    estimate of the teacher's.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> kernels.random_projection_features(np.eye(5), 3, key=0).shape
    (5, 3)
    """
    F = np.asarray(features, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"features must be a 2-D (points, features) array, got shape {F.shape}")
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    with enable_x64():
        proj = np.asarray(jax.random.normal(key, (F.shape[1], n_features), dtype=jnp.float64))
    return F @ proj


def random_feature_kernel(F1, F2=None) -> np.ndarray:
    """``K_P = F1 F2^T / P`` for features of shape ``(n, P)``.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> kernels.random_feature_kernel(np.ones((2, 4)))
    array([[1., 1.],
           [1., 1.]])
    """
    F1 = np.asarray(F1, dtype=np.float64)
    F2 = F1 if F2 is None else np.asarray(F2, dtype=np.float64)
    if F1.ndim != 2 or F2.ndim != 2 or F1.shape[1] != F2.shape[1]:
        raise ValueError(f"features must be 2-D with the same number of columns, got {F1.shape} and {F2.shape}")
    return F1 @ F2.T / F1.shape[1]
