"""The kernel state a layer maps, and the ``kernel_fn`` wrapper every layer returns.

A :class:`Kernel` carries, for two batches of inputs ``x1`` (``n1`` points) and ``x2``
(``n2`` points), the infinite-width covariances that the next layer needs:

* ``nngp`` (``n1, n2, *S``) and ``ntk`` (same shape, or ``None`` when not requested);
* ``cov1`` (``n1, *S``) and ``cov2`` (``n2, *S``, ``None`` when ``x2`` is ``x1``), each
  input's variance with itself.

For images (NHWC) the spatial part ``S`` is either diagonal (``H, W``: covariances between
the same position only, all that ``Flatten`` and dense readouts need) or full (``H, H, W, W``,
positions paired per axis, which pooling needs). :class:`KernelFn` decides which from the
network's layers, so a CNN with a flatten readout never pays for the full covariance.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

GETS = ("nngp", "ntk", "cov1", "cov2")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Covariances of a layer's outputs for two input batches (a JAX pytree).

    Attributes
    ----------
    nngp, ntk : arrays ``(n1, n2, *S)``; ``ntk`` is ``None`` when only the NNGP is computed
        (and the scalar 0 before the first layer with parameters).
    cov1, cov2 : arrays ``(n1, *S)``, ``(n2, *S)``; ``cov2`` is ``None`` when ``x2`` is ``x1``.
    shape : tuple
        Feature shape of one input at this layer, batch axis excluded (``(H, W, C)``, ``(d,)``).
    full : bool
        Spatial covariances are full (``H, H, W, W``) rather than diagonal (``H, W``).
    is_gaussian : bool
        The layer's outputs are Gaussian (a random affine map came last), as a
        nonlinearity's inputs must be.
    """

    nngp: jax.Array
    ntk: jax.Array | None
    cov1: jax.Array
    cov2: jax.Array | None
    shape: tuple = ()
    full: bool = False
    is_gaussian: bool = False

    def replace(self, **changes) -> Kernel:
        return dataclasses.replace(self, **changes)

    @property
    def n_spatial(self) -> int:
        return len(self.shape) - 1

    @property
    def channels(self) -> int:
        return int(self.shape[-1])


jax.tree_util.register_dataclass(Kernel, data_fields=["nngp", "ntk", "cov1", "cov2"],
                                 meta_fields=["shape", "full", "is_gaussian"])


def spatial_diagonal(cov: jax.Array, k: Kernel, batch_ndim: int) -> jax.Array:
    """Same-position variances ``(batch..., *spatial)`` of a covariance in ``k``'s layout."""
    if not k.full:
        return cov
    for _ in range(k.n_spatial):
        cov = jnp.diagonal(cov, axis1=batch_ndim, axis2=batch_ndim + 1)
    return cov


def _paired(d: jax.Array, which: int) -> jax.Array:
    """``d (n, s1, s2, ...)`` reshaped to the full layout, on the first or second of each pair."""
    shape = (d.shape[0],)
    for s in d.shape[1:]:
        shape += (s, 1) if which == 0 else (1, s)
    return d.reshape(shape)


def outer_products(k: Kernel, f: Callable[[jax.Array], jax.Array] = lambda v: v):
    """``f(var1) f(var2)`` arranged like ``nngp`` (``prod12``) and like ``cov1`` / ``cov2``.

    Returns ``(prod12, prod11, prod22)``; with the diagonal layout ``prod11`` is
    ``f(var1)**2`` elementwise (``None`` for ``prod22`` when ``cov2`` is ``None``).
    """
    d1 = f(spatial_diagonal(k.cov1, k, 1))
    d2 = d1 if k.cov2 is None else f(spatial_diagonal(k.cov2, k, 1))
    if k.full and k.n_spatial:
        prod12 = _paired(d1, 0)[:, None] * _paired(d2, 1)[None, :]
        prod11 = _paired(d1, 0) * _paired(d1, 1)
        prod22 = None if k.cov2 is None else _paired(d2, 0) * _paired(d2, 1)
    else:
        expand = (slice(None), None) + (Ellipsis,)
        prod12 = d1[:, None] * d2[None, :] if d1.ndim == 1 else d1[expand] * d2[None]
        prod11 = d1 * d1
        prod22 = None if k.cov2 is None else d2 * d2
    return prod12, prod11, prod22


def input_kernel(x1, x2, *, full: bool, compute_ntk: bool) -> Kernel:
    """Covariances of raw inputs ``(n, ..., C)``, averaged over the channel (last) axis."""
    dtype = jnp.result_type(float)  # float64 inside enable_x64, float32 otherwise
    x1 = jnp.asarray(x1).astype(dtype)
    x2 = None if x2 is None else jnp.asarray(x2).astype(dtype)
    n_spatial = x1.ndim - 2
    full = bool(full and n_spatial)
    c = x1.shape[-1]
    xb = x1 if x2 is None else x2
    if n_spatial == 0:
        nngp = x1 @ xb.T / c
        cov1 = jnp.sum(x1**2, axis=-1) / c
        cov2 = None if x2 is None else jnp.sum(x2**2, axis=-1) / c
    else:
        letters = "hwdtuv"[:n_spatial]
        primed = "HWDTUV"[:n_spatial]
        if full:
            zipped = "".join(a + b for a, b in zip(letters, primed))
            spec_nngp = f"i{letters}c,j{primed}c->ij{zipped}"
            spec_cov = f"i{letters}c,i{primed}c->i{zipped}"
        else:
            spec_nngp = f"i{letters}c,j{letters}c->ij{letters}"
            spec_cov = f"i{letters}c,i{letters}c->i{letters}"
        nngp = jnp.einsum(spec_nngp, x1, xb) / c
        cov1 = jnp.einsum(spec_cov, x1, x1) / c
        cov2 = None if x2 is None else jnp.einsum(spec_cov, x2, x2) / c
    ntk = jnp.zeros((), dtype) if compute_ntk else None
    return Kernel(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, shape=tuple(x1.shape[1:]), full=full,
                  is_gaussian=False)


def _is_kernel_tree(x) -> bool:
    if isinstance(x, Kernel):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_kernel_tree(k) for k in x)


def _select(out, get):
    if isinstance(out, (list, tuple)):
        return type(out)(_select(o, get) for o in out)
    if get is None:
        return out
    if isinstance(get, str):
        return getattr(out, get)
    return collections.namedtuple("Kernel", get)(*(getattr(out, g) for g in get))


def _check_get(get):
    names = (get,) if isinstance(get, str) else get
    if get is not None and (not isinstance(names, tuple) or not names or any(g not in GETS for g in names)):
        raise ValueError(f"unknown get {get!r}; expected None, one of: {', '.join(GETS)}, or a tuple of them")
    return names


class KernelFn:
    """A layer's ``kernel_fn``: ``kernel_fn(x1, x2=None, get=None)`` as in neural-tangents.

    Called with arrays it builds the input covariances and returns the requested
    kernels; called with a :class:`Kernel` (or a list of them, inside a network) it maps
    it through the layer. ``get`` is ``"nngp"``, ``"ntk"``, ``"cov1"``, ``"cov2"``, a tuple
    of them (a namedtuple is returned) or ``None`` (the whole :class:`Kernel`).

    Attributes
    ----------
    needs_full : bool
        Some layer in it needs full spatial covariances (pooling); inputs are then
        expanded to the full layout, otherwise only same-position covariances are kept.
    """

    def __init__(self, fn: Callable, name: str, *, needs_full: bool = False):
        self._fn = fn
        self.name = name
        self.needs_full = needs_full
        self.__name__ = name
        # One compiled program per (shapes, get): eager evaluation would dispatch (and
        # compile) every small op of a deep CNN's kernel map separately.
        self._compiled = jax.jit(self._from_inputs, static_argnames=("get",))

    def _from_inputs(self, x1, x2, get):
        compute_ntk = get is None or "ntk" in ((get,) if isinstance(get, str) else get)
        k = input_kernel(x1, x2, full=self.needs_full, compute_ntk=compute_ntk)
        return self._fn(k)

    def __repr__(self):
        return f"<kernel_fn of {self.name}>"

    def apply(self, k):
        """Map a :class:`Kernel` (or a list of them) through the layer."""
        return self._fn(k)

    def __call__(self, x1, x2=None, get=None, **kwargs):
        if kwargs:
            raise TypeError(f"kernel_fn got unexpected keyword arguments {sorted(kwargs)}; "
                            "it takes (x1, x2=None, get=None)")
        if _is_kernel_tree(x1):
            return self._fn(x1)
        _check_get(tuple(get) if isinstance(get, list) else get)
        if not hasattr(x1, "shape") or not hasattr(x1, "ndim"):
            raise TypeError(f"x1 must be an array (n, ...features), got {type(x1).__name__}")
        if x1.ndim < 2:
            raise ValueError(f"x1 must have shape (n, ...features) with at least 2 axes, got {x1.shape}")
        if x2 is not None:
            if not hasattr(x2, "shape"):
                raise TypeError(f"x2 must be an array or None, got {type(x2).__name__}")
            if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
                raise ValueError(f"x2 feature shape {tuple(x2.shape[1:])} differs from x1's {tuple(x1.shape[1:])}")
        get = tuple(get) if isinstance(get, list) else get
        x1 = jnp.asarray(x1).astype(jnp.result_type(float))
        x2 = None if x2 is None else jnp.asarray(x2).astype(x1.dtype)
        return _select(self._compiled(x1, x2, get), get)


def check_kernel(k, layer: str) -> Kernel:
    if not isinstance(k, Kernel):
        raise TypeError(f"{layer} expects one input; got {type(k).__name__} (use FanInSum after parallel branches)")
    return k


def as_tuple(value, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * n
    value = tuple(value)
    if len(value) != n or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in value):
        raise ValueError(f"{name} must be {n} positive integers, got {value!r}")
    return tuple(int(v) for v in value)


def check_std(name: str, value, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(value)) or float(value) < 0:
        allowed = "a finite number >= 0" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def check_parameterization(parameterization: str) -> str:
    if not isinstance(parameterization, str) or parameterization.lower() not in ("ntk", "standard"):
        raise ValueError(f"unknown parameterization {parameterization!r}; expected one of: ntk, standard")
    return parameterization.lower()

