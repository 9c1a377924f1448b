"""JAX's threefry key derivation on the host: the same keys, bit for bit, without compiling.

Every unit derives its keys with ``jax.random.key/split/fold_in/bits``. Each of those is a
tiny XLA program, and a new process compiles each once: about 0.3 s before the first
random-feature unit can start, for a computation of a few hundred integer operations.
These functions compute the same Threefry-2x32 hash (Salmon et al. 2011, as JAX implements
it with ``jax_threefry_partitionable``, the default since JAX 0.5) in numpy on the key's
raw data and wrap the result as a JAX key again, so callers keep passing JAX keys around
and every key, and every number drawn from one, is unchanged. Anything else (another PRNG
implementation, the legacy non-partitionable threefry, a seed outside ``[0, 2**31)``) is
handed to ``jax.random`` itself. ``tests/test_prng.py`` checks equality with
``jax.random`` over many keys.
"""

from __future__ import annotations

import jax
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(k1, k2, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 block hash (20 rounds) of counter pairs ``(x0, x1)`` under key ``(k1, k2)``.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._prng import threefry2x32
    >>> a, b = threefry2x32(0x13198A2E, 0x03707344, np.array([0x243F6A88], np.uint32),
    ...                     np.array([0x85A308D3], np.uint32))
    >>> hex(int(a[0])), hex(int(b[0]))  # the Random123 known-answer test
    ('0xc4923a9c', '0x483df7a0')
    """
    ks = (np.uint32(k1), np.uint32(k2), np.uint32(k1) ^ np.uint32(k2) ^ _PARITY)
    x0 = np.asarray(x0, dtype=np.uint32) + ks[0]
    x1 = np.asarray(x1, dtype=np.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _host_ok(key) -> bool:
    """Whether ``key`` is a typed threefry key that the host implementation reproduces."""
    return (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
            and key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def _plain_int(n, below: int) -> bool:
    """A plain integer in ``[0, below)`` (anything else is jax.random's to accept or refuse)."""
    return isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)) and 0 <= int(n) < below


def _hash_counters(key, counters) -> tuple[np.ndarray, np.ndarray]:
    """Threefry of the counter pairs ``(0, c)`` under ``key``'s data: what partitionable
    ``split``, ``bits`` and ``fold_in`` all compute."""
    k1, k2 = np.asarray(jax.random.key_data(key), dtype=np.uint32)
    counters = np.asarray(counters, dtype=np.uint32)
    return threefry2x32(k1, k2, np.zeros_like(counters), counters)


def _wrap(data: np.ndarray):
    return jax.random.wrap_key_data(np.ascontiguousarray(data, dtype=np.uint32), impl="threefry2x32")


def key(seed):
    """``jax.random.key(seed)``: a typed threefry key (an existing key is returned as is).

    Examples
    --------
    >>> import jax, numpy as np
    >>> from experiments import _prng
    >>> bool(np.array_equal(jax.random.key_data(_prng.key(7)), jax.random.key_data(jax.random.key(7))))
    True
    """
    if not isinstance(seed, (int, np.integer)):  # a key already (typed or raw): as it is
        return seed
    if _plain_int(seed, 2**31) and jax.config.jax_default_prng_impl == "threefry2x32":
        return _wrap(np.array([0, int(seed)], dtype=np.uint32))
    return jax.random.key(seed)  # the seed as given: jax reads its dtype (x64, negative values)


_as_key = key  # for the functions below, whose ``key`` argument shadows the name


def split(key, num: int = 2) -> tuple:
    """``tuple(jax.random.split(key, num))``: ``num`` independent keys.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from experiments import _prng
    >>> a, b = _prng.split(jax.random.key(0))
    >>> bool(np.array_equal(jax.random.key_data(b), jax.random.key_data(jax.random.split(jax.random.key(0))[1])))
    True
    """
    key = _as_key(key)
    if not (_host_ok(key) and _plain_int(num, 2**31)):
        return tuple(jax.random.split(key, num))
    num = int(num)
    b1, b2 = _hash_counters(key, np.arange(num))
    return tuple(_wrap(np.array([b1[i], b2[i]], dtype=np.uint32)) for i in range(num))


def fold_in(key, data: int):
    """``jax.random.fold_in(key, data)`` for ``0 <= data < 2**32``.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from experiments import _prng
    >>> k = jax.random.key(3)
    >>> bool(np.array_equal(jax.random.key_data(_prng.fold_in(k, 11)), jax.random.key_data(jax.random.fold_in(k, 11))))
    True
    """
    key = _as_key(key)
    if not (_host_ok(key) and _plain_int(data, 2**32)):
        return jax.random.fold_in(key, data)
    b1, b2 = _hash_counters(key, [int(data)])
    return _wrap(np.array([b1[0], b2[0]], dtype=np.uint32))


def bits32(key, n: int) -> np.ndarray:
    """``np.asarray(jax.random.bits(key, (n,), jnp.uint32))``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from experiments import _prng
    >>> k = jax.random.key(5)
    >>> bool(np.array_equal(_prng.bits32(k, 4), np.asarray(jax.random.bits(k, (4,), jnp.uint32))))
    True
    """
    key = _as_key(key)
    if not (_host_ok(key) and _plain_int(n, 2**31)):
        return np.asarray(jax.random.bits(key, (n,), np.uint32))
    b1, b2 = _hash_counters(key, np.arange(int(n)))
    return b1 ^ b2
