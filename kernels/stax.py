"""Layers that compose like neural-tangents' ``stax``, with the toolkit's own kernels.

Every layer is an ``(init_fn, apply_fn, kernel_fn)`` triple with neural-tangents' names and
signatures: ``init_fn(key, input_shape) -> (output_shape, params)``,
``apply_fn(params, x)`` (the finite network), ``kernel_fn(x1, x2=None, get=None)`` (its
infinite-width NNGP/NTK). Combine them with :func:`serial`, :func:`parallel`,
:func:`FanOut` and :func:`FanInSum`.

Examples
--------
>>> import numpy as np
>>> from kernels import stax
>>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
>>> kernel_fn(np.eye(3), None, "ntk").shape
(3, 3)
"""

from ._layers import (
    ABRelu,
    AvgPool,
    Conv,
    Dense,
    Erf,
    FanInSum,
    FanOut,
    Flatten,
    Gelu,
    GlobalAvgPool,
    Identity,
    Kernel,
    KernelFn,
    Relu,
    WidthMask,
    parallel,
    serial,
)

__all__ = [
    "ABRelu",
    "AvgPool",
    "Conv",
    "Dense",
    "Erf",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "Identity",
    "Kernel",
    "KernelFn",
    "Relu",
    "WidthMask",
    "parallel",
    "serial",
]
