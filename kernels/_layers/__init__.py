"""Native infinite-width layers in pure JAX (public face: ``kernels.stax``)."""

from ._combinators import FanInSum, FanOut, parallel, serial
from ._kernel import Kernel, KernelFn
from ._linear import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, Identity, WidthMask
from ._nonlinear import ABRelu, Erf, Gelu, Relu

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
