"""Analytic NNGP/NTK kernel matrices, tiled to bound memory, over all local devices."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scaling import enable_x64

from .._layers._kernel import Kernel, KernelFn

KINDS = ("ntk", "nngp")


def kernel_function(arch) -> Callable:
    """The ``kernel_fn`` of a stax triple, or ``arch`` itself if it already is one."""
    if isinstance(arch, tuple) and len(arch) == 3 and all(callable(f) for f in arch):
        return arch[2]
    if callable(arch):
        return arch
    raise TypeError(f"arch must be a stax (init_fn, apply_fn, kernel_fn) triple or a kernel_fn, got {type(arch).__name__}")


def _check_inputs(x1, x2):
    x1 = np.asarray(x1)
    if x1.ndim < 2 or x1.shape[0] == 0:
        raise ValueError(f"x1 must have shape (n, ...features) with n >= 1, got {x1.shape}")
    if not np.all(np.isfinite(x1)):
        raise ValueError(f"x1 contains non-finite values (first at {tuple(np.argwhere(~np.isfinite(x1))[0])})")
    if x2 is not None:
        x2 = np.asarray(x2)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(f"x2 feature shape {x2.shape[1:]} differs from x1 feature shape {x1.shape[1:]}")
        if not np.all(np.isfinite(x2)):
            raise ValueError("x2 contains non-finite values")
    return x1, x2


def kernel_matrix(arch, x1, x2=None, *, kind: str = "ntk", batch_size: int = 512, dtype=np.float64,
                  store: str | os.PathLike | None = None, devices: Sequence | None = None):
    r"""Analytic infinite-width kernel matrix ``K[i, j] = k(x1[i], x2[j])``.

    Computed in ``batch_size x batch_size`` tiles by one compiled program (the last tile is
    padded), so memory stays bounded; with ``x2=None`` only tiles on and above the
    diagonal are computed and mirrored. Tiles are spread round-robin over ``devices``
    (default: every local device) and run asynchronously.

    Parameters
    ----------
    arch : stax triple or kernel_fn
    x1 : array, shape (n1, ...)
    x2 : array, shape (n2, ...), optional
        Defaults to ``x1`` (a symmetric Gram matrix).
    kind : {"ntk", "nngp"}
    batch_size : int
        Tile size: bounds memory (FC: ~``batch_size**2`` per layer; CNNs with spatial
        covariances need far smaller tiles).
    dtype : numpy dtype
        float64 (default; spectra need it) or float32 (faster, e.g. on GPUs).
    store : path, optional
        Write the matrix to a zarr array at this path instead of memory, one chunk per
        tile. A killed computation resumes: tiles already written are skipped.

    Returns
    -------
    ndarray of shape (n1, n2), or the zarr array when ``store`` is given.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> x = np.random.default_rng(0).standard_normal((5, 3))
    >>> K = kernels.kernel_matrix(kernels.mlp(1), x, kind="nngp", batch_size=2)
    >>> bool(np.allclose(K, K.T)), K.shape
    (True, (5, 5))
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    kernel_fn = kernel_function(arch)
    x1, x2 = _check_inputs(x1, x2)
    symmetric = x2 is None
    xb = x1 if symmetric else x2
    n1, n2 = x1.shape[0], xb.shape[0]
    bs1, bs2 = min(batch_size, n1), min(batch_size, n2)
    rows = range(0, n1, bs1)
    cols = range(0, n2, bs2)
    tiles = [(i, j) for i, j in itertools.product(rows, cols) if not symmetric or j >= i]

    if store is not None:
        import zarr

        out = zarr.open_array(str(store), mode="a", shape=(n1, n2), chunks=(bs1, bs2), dtype=dtype, fill_value=np.nan)
        done_key = f"tiles_done_{kind}"
        done = set(map(tuple, out.attrs.get(done_key, [])))
        tiles = [t for t in tiles if t not in done]
    else:
        out = np.empty((n1, n2), dtype=dtype)
        done_key, done = None, set()

    devices = list(devices) if devices is not None else jax.local_devices()
    x64 = dtype == np.float64

    def pad(a, size):
        if a.shape[0] == size:
            return a
        return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)])

    ctx = enable_x64() if x64 else _null()
    with ctx:
        tile_fn = _compiled_tile(kernel_fn, kind)
        jdtype = jnp.float64 if x64 else jnp.float32
        wave = max(1, len(devices))
        for start in range(0, len(tiles), wave):
            batch = tiles[start:start + wave]
            pending = []
            for (i, j), dev in zip(batch, itertools.cycle(devices)):
                a = np.asarray(pad(x1[i:i + bs1], bs1), jdtype)
                # a diagonal tile of a symmetric matrix is k(a, a): x2 = None computes it as such
                b = None if symmetric and i == j and bs1 == bs2 else np.asarray(pad(xb[j:j + bs2], bs2), jdtype)
                pending.append(((i, j), tile_fn(a, b, dev)))
            for (i, j), k in pending:
                blk = np.asarray(k, dtype=dtype)[: min(bs1, n1 - i), : min(bs2, n2 - j)]
                if not np.all(np.isfinite(blk)):
                    raise FloatingPointError(f"non-finite kernel values in tile ({i}, {j}); check the inputs' scale")
                out[i:i + blk.shape[0], j:j + blk.shape[1]] = blk
                if symmetric and j != i:
                    out[j:j + blk.shape[1], i:i + blk.shape[0]] = blk.T
                if store is not None:
                    done.add((i, j))
                    out.attrs[done_key] = sorted(done)
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_TILE_CACHE: dict = {}


class _Tile:
    """``kernel_fn(a, b, kind)`` for one tile on one device, compiled once per shape.

    ``b = None`` is a diagonal tile of a symmetric matrix. For the native layers on a CPU,
    the first layer's Gram matrix comes from numpy's BLAS (``a @ a.T`` as a symmetric
    product on diagonal tiles; XLA's CPU matmul is ~2x slower) and only the remaining
    kernel map runs compiled; other ``kernel_fn`` (neural-tangents triples) get arrays.
    """

    def __init__(self, kernel_fn, kind):
        self._arrays = jax.jit(lambda a, b: kernel_fn(a, b, kind))
        self._symmetric = jax.jit(lambda a: kernel_fn(a, None, kind))
        native = isinstance(kernel_fn, KernelFn)
        self._from_kernel = jax.jit(lambda k: getattr(kernel_fn.apply(k), kind)) if native else None
        self._kind = kind

    def __call__(self, a: np.ndarray, b: np.ndarray | None, device):
        if self._from_kernel is not None and a.ndim == 2 and device.platform == "cpu":
            width = a.shape[1]
            gram = (a @ a.T if b is None else a @ b.T) / width
            cov1 = np.einsum("ij,ij->i", a, a) / width
            cov2 = None if b is None else np.einsum("ij,ij->i", b, b) / width
            ntk = np.zeros((), a.dtype) if self._kind == "ntk" else None
            k = Kernel(nngp=gram, ntk=ntk, cov1=cov1, cov2=cov2, shape=(width,), full=False, is_gaussian=False)
            return self._from_kernel(jax.device_put(k, device))
        if b is None:
            return self._symmetric(jax.device_put(a, device))
        return self._arrays(jax.device_put(a, device), jax.device_put(b, device))


def _compiled_tile(kernel_fn, kind):
    key = (id(kernel_fn), kind)
    if key not in _TILE_CACHE:
        _TILE_CACHE[key] = (kernel_fn, _Tile(kernel_fn, kind))
    return _TILE_CACHE[key][1]
