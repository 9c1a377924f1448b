"""Layers with Gaussian weights and the shape-changing ones: Dense, Conv, pooling, Flatten.

Each returns ``(init_fn, apply_fn, kernel_fn)`` with neural-tangents' names, signatures
and random initialisation (same keys give the same parameters). The kernel maps are the
infinite-width limits (Neal 1996; Jacot et al. 2018; Novak et al. 2019 for convolutions):

* Dense, NTK parameterisation: :math:`\\Sigma' = \\sigma_W^2 \\Sigma + \\sigma_b^2`,
  :math:`\\Theta' = \\Sigma' + \\sigma_W^2 \\Theta`; standard parameterisation (Sohl-Dickstein
  et al. 2020): :math:`\\Theta' = n_{in} \\Sigma + \\sigma_W^2 \\Theta + 1` (the bias term
  when the layer has a bias), :math:`\\Sigma'` as above.
* Conv: the same, with :math:`\\Sigma` first averaged over the filter's taps along the
  diagonal of each pair of positions (zero padding outside the image).
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
from jax import lax, random

from ._kernel import Kernel, KernelFn, as_tuple, check_kernel, check_parameterization, check_std

_CONV_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _normal(key, shape: tuple):
    """``random.normal(key, shape)``, drawn as the first ``prod(shape)`` entries of a flat draw
    whose length is a power of two (at least 4096).

    With JAX's partitionable threefry (the default) an entry depends only on the key and its
    flat index, so the values are bit-for-bit those of ``random.normal(key, shape)``; but an
    eagerly run initialisation compiles one sampling program per power of two instead of one
    per layer shape (0.2-0.5 s each on a CPU: a sweep over widths compiled dozens; the MLP
    sweep benchmark spent 3.4 s of its 9.5 s there). The price: up to twice the draws for a
    tensor just above a power of two (a traced draw keeps the whole padded length). Other key
    implementations draw the shape directly.
    """
    n = math.prod(shape)
    if n < 2 or not jax.config.jax_threefry_partitionable or str(random.key_impl(key)) != "threefry2x32":
        return random.normal(key, shape)
    return random.normal(key, (max(_MIN_DRAW, 1 << (n - 1).bit_length()),))[:n].reshape(shape)


_MIN_DRAW = 4096  # every small tensor (biases, narrow layers) shares one program: microseconds of draws


def _affine(mat, w_var, b_var):
    if mat is None:
        return None
    mat = w_var * mat
    return mat if b_var is None else mat + b_var


def Identity():
    """The identity layer (``kernel_fn`` passes the kernel through).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> float(stax.Identity()[2](np.ones((1, 4)), None, "nngp")[0, 0])
    1.0
    """
    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        return inputs

    return init_fn, apply_fn, KernelFn(lambda k: k, "Identity")


def WidthMask():
    """Scales activations along the channel axis by ``apply_fn``'s keyword ``hidden_scale``.

    For training networks of several widths in one program: each copy is the widest network
    with the units past its own width masked off (``hidden_scale`` 0 there). Without
    ``hidden_scale`` the layer is the identity, and ``kernel_fn`` passes the kernel through
    (an infinite-width network has no padding).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> _, apply_fn, _ = stax.WidthMask()
    >>> apply_fn((), np.ones((1, 4)), hidden_scale=np.array([2.0, 2.0, 0.0, 0.0])).tolist()
    [[2.0, 2.0, 0.0, 0.0]]
    """
    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, hidden_scale=None, **kwargs):
        return inputs if hidden_scale is None else inputs * hidden_scale

    return init_fn, apply_fn, KernelFn(lambda k: k, "WidthMask")


def Dense(out_dim: int, W_std: float = 1.0, b_std: float | None = None, *, parameterization: str = "ntk"):
    """Fully connected layer acting on the last (channel) axis.

    Parameters
    ----------
    out_dim : int
        Output width (ignored by ``kernel_fn`` in the NTK parameterisation, where widths
        are infinite; in the standard one the fan-in of the next layer enters the NTK).
    W_std : float
        Weight standard deviation :math:`\\sigma_W`.
    b_std : float or None
        Bias standard deviation; ``None``: no bias (``0.0``: a bias initialised at zero,
        which still trains and so enters the standard-parameterisation NTK).
    parameterization : {"ntk", "standard"}

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> stax.Dense(1, W_std=2.0, b_std=1.0)[2](x, None, "nngp")  # 4 x.x'/2 + 1
    Array([[3., 1.],
           [1., 3.]], dtype=float32)
    """
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive integer, got {out_dim!r}")
    W_std = check_std("W_std", W_std, allow_none=False)
    b_std = check_std("b_std", b_std, allow_none=True)
    parameterization = check_parameterization(parameterization)
    w_var, b_var = W_std**2, None if b_std is None else b_std**2

    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        output_shape = input_shape[:-1] + (out_dim,)
        rng1, rng2 = random.split(rng)
        W = _normal(rng1, (input_shape[-1], out_dim))
        b = None if b_std is None else _normal(rng2, (1,) * (len(input_shape) - 1) + (out_dim,))
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(input_shape[-1]))
            b = None if b is None else b * b_std
        return output_shape, (W, b)

    def apply_fn(params, inputs, **kwargs):
        W, b = params
        prod = jnp.tensordot(inputs, W, (-1, 0))
        if parameterization == "ntk":
            out = (W_std / math.sqrt(inputs.shape[-1])) * prod
            return out if b is None else out + b_std * b
        return prod if b is None else prod + b

    def kernel_map(k: Kernel) -> Kernel:
        k = check_kernel(k, "Dense")
        ntk = k.ntk
        if parameterization == "ntk":
            nngp = _affine(k.nngp, w_var, b_var)
            if ntk is not None:
                ntk = nngp + w_var * ntk
        else:
            if ntk is not None:
                ntk = k.channels * k.nngp + w_var * ntk
                if b_std is not None:
                    ntk = ntk + 1.0
            nngp = _affine(k.nngp, w_var, b_var)
        return k.replace(nngp=nngp, ntk=ntk, cov1=_affine(k.cov1, w_var, b_var), cov2=_affine(k.cov2, w_var, b_var),
                         shape=k.shape[:-1] + (out_dim,), is_gaussian=True)

    return init_fn, apply_fn, KernelFn(kernel_map, f"Dense({out_dim})")


def _window(size: int, f: int, s: int, padding: str) -> tuple[int, int, int]:
    """``(pad_lo, pad_hi, out_size)`` of a window ``f`` with stride ``s`` along an axis."""
    (lo, hi), = lax.padtype_to_pads((size,), (f,), (s,), padding)
    return lo, hi, (size + lo + hi - f) // s + 1


def _window_sum(x, axes, f, s, padding):
    """Sum over a sliding window along ``axes`` jointly (the same offset on each), zero padded.

    With one axis this is a strided window sum; with a pair of axes (a position-position
    covariance) it sums the window's taps along the pair's diagonal.
    """
    size = x.shape[axes[0]]
    lo, hi, out = _window(size, f, s, padding)
    pads = [(0, 0)] * x.ndim
    for a in axes:
        pads[a] = (lo, hi)
    x = jnp.pad(x, pads) if lo or hi else x
    total = 0
    for offset in range(f):
        sl = [slice(None)] * x.ndim
        for a in axes:
            sl[a] = slice(offset, offset + s * (out - 1) + 1, s)
        total = total + x[tuple(sl)]
    return total


def _conv_cov(x, k: Kernel, batch_ndim, filter_shape, strides, padding):
    """Covariance of conv outputs (weights averaged over taps) from input covariance ``x``."""
    if x is None or x.ndim == 0:
        return x
    for i, (f, s) in enumerate(zip(filter_shape, strides)):
        axes = (batch_ndim + 2 * i, batch_ndim + 2 * i + 1) if k.full else (batch_ndim + i,)
        x = _window_sum(x, axes, f, s, padding)
    return x / math.prod(filter_shape)


def Conv(out_chan: int, filter_shape, strides=None, padding: str = "SAME", W_std: float = 1.0,
         b_std: float | None = None, *, parameterization: str = "ntk"):
    """2-D convolution over NHWC images (HWIO filters), with weights shared over positions.

    Parameters
    ----------
    out_chan : int
    filter_shape : (int, int)
    strides : (int, int), optional
        Default ``(1, 1)``.
    padding : {"SAME", "VALID"}
    W_std, b_std, parameterization
        As in :func:`Dense`; the fan-in is ``in_channels * filter_height * filter_width``.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> _, _, kernel_fn = stax.serial(stax.Conv(8, (3, 3)), stax.Relu(), stax.Flatten())
    >>> kernel_fn(np.ones((2, 4, 4, 1)), None, "nngp").shape
    (2, 2)
    """
    if isinstance(out_chan, bool) or not isinstance(out_chan, int) or out_chan < 1:
        raise ValueError(f"out_chan must be a positive integer, got {out_chan!r}")
    filter_shape = as_tuple(filter_shape, 2, "filter_shape")
    strides = as_tuple(strides if strides is not None else (1, 1), 2, "strides")
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"unknown padding {padding!r}; expected one of: SAME, VALID")
    padding = padding.upper()
    W_std = check_std("W_std", W_std, allow_none=False)
    b_std = check_std("b_std", b_std, allow_none=True)
    parameterization = check_parameterization(parameterization)
    w_var, b_var = W_std**2, None if b_std is None else b_std**2
    taps = math.prod(filter_shape)

    def output_shape(input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Conv expects NHWC inputs (4 axes), got shape {tuple(input_shape)}")
        n, h, w, _ = input_shape
        hs = tuple(_window(size, f, s, padding)[2] for size, f, s in zip((h, w), filter_shape, strides))
        return (n,) + hs + (out_chan,)

    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        out_shape = output_shape(input_shape)
        k1, k2 = random.split(rng)
        W = _normal(k1, filter_shape + (input_shape[-1], out_chan))
        b = _normal(k2, (1, 1, 1, out_chan))
        b = None if b_std is None else b
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(input_shape[-1] * taps))
            b = None if b is None else b * b_std
        return out_shape, (W, b)

    def apply_fn(params, inputs, **kwargs):
        W, b = params
        out = lax.conv_general_dilated(inputs, W, strides, padding, dimension_numbers=_CONV_DIMENSIONS)
        if parameterization == "ntk":
            out = (W_std / math.sqrt(inputs.shape[-1] * taps)) * out
            return out if b is None else out + b_std * b
        return out if b is None else out + b

    def kernel_map(k: Kernel) -> Kernel:
        k = check_kernel(k, "Conv")
        if k.n_spatial != 2:
            raise ValueError(f"Conv expects NHWC inputs; the kernel's feature shape is {k.shape}")
        conv = functools.partial(_conv_cov, k=k, filter_shape=filter_shape, strides=strides, padding=padding)
        nngp_u = conv(k.nngp, batch_ndim=2)
        ntk = k.ntk
        if parameterization == "ntk":
            nngp = _affine(nngp_u, w_var, b_var)
            if ntk is not None:
                ntk = w_var * conv(ntk, batch_ndim=2) + nngp
        else:
            if ntk is not None:
                ntk = k.channels * taps * nngp_u + w_var * conv(ntk, batch_ndim=2)
                if b_std is not None:
                    ntk = ntk + 1.0
            nngp = _affine(nngp_u, w_var, b_var)
        cov1 = _affine(conv(k.cov1, batch_ndim=1), w_var, b_var)
        cov2 = _affine(conv(k.cov2, batch_ndim=1), w_var, b_var)
        shape = output_shape((0,) + k.shape)[1:]
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, shape=shape, is_gaussian=True)

    return init_fn, apply_fn, KernelFn(kernel_map, f"Conv({out_chan}, {filter_shape})")


def AvgPool(window_shape, strides=None, padding: str = "VALID"):
    """Average pooling over NHWC images (divides by the window size, also at padded edges).

    Needs full spatial covariances, which ``kernel_fn`` then keeps from the inputs on.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> _, _, kernel_fn = stax.serial(stax.AvgPool((2, 2), (2, 2)), stax.Flatten())
    >>> float(kernel_fn(np.ones((1, 4, 4, 1)), None, "nngp")[0, 0])
    1.0
    """
    window_shape = as_tuple(window_shape, 2, "window_shape")
    strides = as_tuple(strides if strides is not None else (1, 1), 2, "strides")
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"unknown padding {padding!r}; expected one of: SAME, VALID")
    padding = padding.upper()
    size = math.prod(window_shape)

    def output_shape(input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"AvgPool expects NHWC inputs (4 axes), got shape {tuple(input_shape)}")
        n, h, w, c = input_shape
        return (n,) + tuple(_window(s_, f, s, padding)[2] for s_, f, s in zip((h, w), window_shape, strides)) + (c,)

    def init_fn(rng, input_shape):
        return output_shape(tuple(input_shape)), ()

    def apply_fn(params, inputs, **kwargs):
        out = lax.reduce_window(inputs, jnp.zeros((), inputs.dtype), lax.add, (1,) + window_shape + (1,),
                                (1,) + strides + (1,), padding)
        return out / size

    def pool(x, batch_ndim):
        if x is None or x.ndim == 0:
            return x
        for i, (f, s) in enumerate(zip(window_shape, strides)):
            for a in (batch_ndim + 2 * i, batch_ndim + 2 * i + 1):
                x = _window_sum(x, (a,), f, s, padding)
        return x / size**2

    def kernel_map(k: Kernel) -> Kernel:
        k = check_kernel(k, "AvgPool")
        if k.n_spatial != 2:
            raise ValueError(f"AvgPool expects NHWC inputs; the kernel's feature shape is {k.shape}")
        if not k.full:
            raise ValueError("AvgPool needs full spatial covariances; build the network with stax.serial "
                             "so that kernel_fn keeps them from the inputs on")
        return k.replace(nngp=pool(k.nngp, 2), ntk=pool(k.ntk, 2), cov1=pool(k.cov1, 1), cov2=pool(k.cov2, 1),
                         shape=output_shape((0,) + k.shape)[1:])

    return init_fn, apply_fn, KernelFn(kernel_map, f"AvgPool({window_shape})", needs_full=True)


def GlobalAvgPool():
    """Average over all positions (NHWC -> NC). Needs full spatial covariances.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> x = np.zeros((1, 2, 1, 1)); x[0, 0, 0, 0] = 1.0
    >>> float(stax.GlobalAvgPool()[2](x, None, "nngp")[0, 0])  # (1/2)^2
    0.25
    """
    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, inputs, **kwargs):
        return jnp.mean(inputs, axis=tuple(range(1, inputs.ndim - 1)))

    def mean(x, batch_ndim):
        if x is None or x.ndim <= batch_ndim:
            return x
        return jnp.mean(x, axis=tuple(range(batch_ndim, x.ndim)))

    def kernel_map(k: Kernel) -> Kernel:
        k = check_kernel(k, "GlobalAvgPool")
        if k.n_spatial and not k.full:
            raise ValueError("GlobalAvgPool needs full spatial covariances; build the network with stax.serial "
                             "so that kernel_fn keeps them from the inputs on")
        return k.replace(nngp=mean(k.nngp, 2), ntk=mean(k.ntk, 2), cov1=mean(k.cov1, 1), cov2=mean(k.cov2, 1),
                         shape=(k.shape[-1],), full=False)

    return init_fn, apply_fn, KernelFn(kernel_map, "GlobalAvgPool", needs_full=True)


def Flatten():
    """Flatten every non-batch axis into one (the kernel averages same-position covariances).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> init_fn, apply_fn, _ = stax.Flatten()
    >>> init_fn(None, (5, 4, 4, 3))[0]
    (5, 48)
    """
    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        return (input_shape[0], functools.reduce(operator.mul, input_shape[1:], 1)), ()

    def apply_fn(params, inputs, **kwargs):
        return inputs.reshape((inputs.shape[0], -1))

    def mean_diag(x, k, batch_ndim):
        if x is None or x.ndim <= batch_ndim:
            return x
        if k.full:
            while x.ndim > batch_ndim:
                x = jnp.trace(x, axis1=-2, axis2=-1) / x.shape[-1]
            return x
        return jnp.mean(x, axis=tuple(range(batch_ndim, x.ndim)))

    def kernel_map(k: Kernel) -> Kernel:
        k = check_kernel(k, "Flatten")
        return k.replace(nngp=mean_diag(k.nngp, k, 2), ntk=mean_diag(k.ntk, k, 2), cov1=mean_diag(k.cov1, k, 1),
                         cov2=mean_diag(k.cov2, k, 1), shape=(math.prod(k.shape),), full=False, is_gaussian=False)

    return init_fn, apply_fn, KernelFn(kernel_map, "Flatten")

