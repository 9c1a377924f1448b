"""Combinators that build networks from layers: serial, parallel, FanOut, FanInSum.

Parameters and random keys follow ``jax.example_libraries.stax`` (as neural-tangents does):
``serial`` splits its key once per layer and returns a list of parameters, ``parallel``
splits it into one key per branch.
"""

from __future__ import annotations

from jax import random

from ._kernel import Kernel, KernelFn


def _check_layers(layers, name):
    for i, layer in enumerate(layers):
        if not (isinstance(layer, tuple) and len(layer) == 3 and all(callable(f) for f in layer)):
            raise TypeError(f"{name}: layer {i} must be an (init_fn, apply_fn, kernel_fn) triple, "
                            f"got {type(layer).__name__}")


def _map_of(kernel_fn):
    return kernel_fn.apply if isinstance(kernel_fn, KernelFn) else kernel_fn


def _needs_full(kernel_fns) -> bool:
    return any(getattr(f, "needs_full", False) for f in kernel_fns)


def serial(*layers):
    """Layers applied one after the other.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
    >>> import jax
    >>> out_shape, params = init_fn(jax.random.key(0), (-1, 3))
    >>> out_shape, apply_fn(params, np.ones((2, 3))).shape
    ((-1, 1), (2, 1))
    """
    _check_layers(layers, "serial")
    init_fns, apply_fns, kernel_fns = zip(*layers) if layers else ((), (), ())
    maps = [_map_of(f) for f in kernel_fns]

    def init_fn(rng, input_shape):
        params = []
        for init in init_fns:
            rng, layer_rng = random.split(rng)
            input_shape, param = init(layer_rng, input_shape)
            params.append(param)
        return input_shape, params

    def apply_fn(params, inputs, **kwargs):
        kwargs.pop("rng", None)
        for fn, param in zip(apply_fns, params):
            inputs = fn(param, inputs, **kwargs)
        return inputs

    def kernel_map(k):
        for m in maps:
            k = m(k)
        return k

    return init_fn, apply_fn, KernelFn(kernel_map, "serial", needs_full=_needs_full(kernel_fns))


def parallel(*layers):
    """Layers applied to a list of inputs, one each (as after :func:`FanOut`).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> net = stax.serial(stax.Dense(1), stax.FanOut(2), stax.parallel(stax.Relu(), stax.Identity()),
    ...                   stax.FanInSum())
    >>> net[2](np.ones((1, 1)), None, "nngp")  # relu(u)^2 / 2 + u^2 = 1/2 + 1
    Array([[1.5]], dtype=float32)
    """
    _check_layers(layers, "parallel")
    init_fns, apply_fns, kernel_fns = zip(*layers)
    maps = [_map_of(f) for f in kernel_fns]

    def init_fn(rng, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != len(layers) \
                or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ValueError(f"parallel with {len(layers)} branches needs a list of {len(layers)} input shapes "
                             "(put FanOut before it)")
        rngs = random.split(rng, len(layers))
        shapes, params = zip(*[init(r, s) for init, r, s in zip(init_fns, rngs, input_shape)])
        return list(shapes), tuple(params)

    def apply_fn(params, inputs, **kwargs):
        kwargs.pop("rng", None)
        return [fn(p, x, **kwargs) for fn, p, x in zip(apply_fns, params, inputs)]

    def kernel_map(ks):
        if not isinstance(ks, (list, tuple)) or len(ks) != len(maps):
            raise ValueError(f"parallel with {len(maps)} branches needs {len(maps)} kernels (put FanOut before it)")
        return [m(k) for m, k in zip(maps, ks)]

    return init_fn, apply_fn, KernelFn(kernel_map, "parallel", needs_full=_needs_full(kernel_fns))


def FanOut(num: int):
    """Copy the input ``num`` times (for :func:`parallel` branches).

    Examples
    --------
    >>> from kernels import stax
    >>> stax.FanOut(2)[0](None, (3, 4))
    ([(3, 4), (3, 4)], ())
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")

    def init_fn(rng, input_shape):
        return [input_shape] * num, ()

    def apply_fn(params, inputs, **kwargs):
        return [inputs] * num

    def kernel_map(k):
        return [k] * num

    return init_fn, apply_fn, KernelFn(kernel_map, f"FanOut({num})")


def FanInSum():
    """Sum of the branches' outputs; their kernels add (the branches have independent weights).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> net = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(1), stax.Dense(1, W_std=2.0)), stax.FanInSum())
    >>> net[2](np.ones((1, 1)), None, "nngp")  # 1 + 4
    Array([[5.]], dtype=float32)
    """
    def init_fn(rng, input_shape):
        shapes = [tuple(s) for s in input_shape]
        if any(s[1:] != shapes[0][1:] for s in shapes):
            raise ValueError(f"FanInSum needs inputs of equal shapes, got {shapes}")
        return input_shape[0], ()

    def apply_fn(params, inputs, **kwargs):
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out

    def kernel_map(ks):
        if isinstance(ks, Kernel) or not all(isinstance(k, Kernel) for k in ks):
            raise ValueError("FanInSum needs a list of kernels (the outputs of parallel branches)")
        first = ks[0]
        for k in ks[1:]:
            if k.shape != first.shape or k.full != first.full:
                raise ValueError(f"FanInSum needs branches of equal shapes, got {[k.shape for k in ks]}")

        def total(name):
            vals = [getattr(k, name) for k in ks]
            if any(v is None for v in vals):
                return None
            out = vals[0]
            for v in vals[1:]:
                out = out + v
            return out

        return first.replace(nngp=total("nngp"), ntk=total("ntk"), cov1=total("cov1"), cov2=total("cov2"),
                             is_gaussian=all(k.is_gaussian for k in ks))

    return init_fn, apply_fn, KernelFn(kernel_map, "FanInSum")

