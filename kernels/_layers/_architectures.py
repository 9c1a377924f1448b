"""Builders for the common architectures, as ``kernels.stax`` triples.

Every builder returns ``(init_fn, apply_fn, kernel_fn)``; every function of this package
that takes an ``arch`` accepts such a triple built any way (``stax.serial`` by hand too).
"""

from __future__ import annotations

import math

from .. import stax

ACTIVATIONS = ("relu", "erf", "gelu", "tanh_like_erf", "identity")
PARAMETERIZATIONS = ("ntk", "standard")


def _activation(name: str):
    if name == "relu":
        return stax.Relu()
    if name in ("erf", "tanh_like_erf"):
        return stax.Erf()
    if name == "gelu":
        return stax.Gelu()
    if name == "identity":
        return stax.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATIONS)}")


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(allowed)}")


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def mlp(depth: int, *, activation: str = "relu", W_std: float = math.sqrt(2.0), b_std: float = 0.0,
        width: int = 512, out_dim: int = 1, W_std_out: float = 1.0, parameterization: str = "ntk",
        readout: bool = True, width_mask: bool = False):
    """Fully connected network with ``depth`` hidden layers.

    Parameters
    ----------
    depth : int
        Number of hidden layers (``depth=1``: one hidden layer).
    activation : {"relu", "erf", "gelu", "identity"}
    W_std, b_std : float
        Hidden-layer weight and bias standard deviations (``sqrt(2)`` keeps ReLU
        activations O(1) with depth).
    width : int
        Hidden width of the finite network (the analytic kernels are its infinite limit).
    out_dim : int
        Readout width.
    W_std_out : float
        Readout weight standard deviation.
    parameterization : {"ntk", "standard"}
    readout : bool
        Without the readout the network maps inputs to its last hidden layer (its features;
        the kernel is then that layer's NNGP/NTK).
    width_mask : bool
        A :func:`stax.WidthMask` after every activation: ``apply_fn(params, x,
        hidden_scale=s)`` scales each hidden layer's units by ``s`` (networks of several
        widths trained as copies of the widest, padded and masked). Kernels are unchanged.

    Returns
    -------
    (init_fn, apply_fn, kernel_fn)

    Examples
    --------
    >>> import numpy as np, kernels
    >>> _, _, kernel_fn = kernels.mlp(2)
    >>> kernel_fn(np.eye(3), None, "nngp").shape
    (3, 3)
    """
    _positive_int("depth", depth)
    _positive_int("width", width)
    _positive_int("out_dim", out_dim)
    _check("parameterization", parameterization, PARAMETERIZATIONS)
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=W_std, b_std=b_std, parameterization=parameterization),
                   _activation(activation)] + ([stax.WidthMask()] if width_mask else [])
    if readout:
        layers.append(stax.Dense(out_dim, W_std=W_std_out, b_std=b_std, parameterization=parameterization))
    return stax.serial(*layers)


def cnn(depth: int, *, channels: int = 128, filter_shape: tuple[int, int] = (3, 3), activation: str = "relu",
        W_std: float = math.sqrt(2.0), b_std: float = 0.0, pool: str = "global", out_dim: int = 1,
        parameterization: str = "ntk", readout: bool = True, width_mask: bool = False):
    """Convolutional network: ``depth`` same-padded conv + activation layers, then a readout.

    Inputs are NHWC images. ``pool="global"`` averages over space before the readout (a
    translation-invariant kernel); ``pool="flatten"`` reads out every position. With
    ``readout=False`` the network ends with the pooled features. ``width_mask`` puts a
    :func:`stax.WidthMask` after every activation, as in :func:`mlp`.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> _, _, kernel_fn = kernels.cnn(1, pool="global")
    >>> kernel_fn(np.ones((2, 4, 4, 1)), None, "ntk").shape
    (2, 2)
    """
    _positive_int("depth", depth)
    _positive_int("channels", channels)
    _check("pool", pool, ("global", "flatten"))
    _check("parameterization", parameterization, PARAMETERIZATIONS)
    layers = []
    for _ in range(depth):
        layers += [stax.Conv(channels, filter_shape, padding="SAME", W_std=W_std, b_std=b_std,
                             parameterization=parameterization), _activation(activation)]
        layers += [stax.WidthMask()] if width_mask else []
    layers.append(stax.GlobalAvgPool() if pool == "global" else stax.Flatten())
    if readout:
        layers.append(stax.Dense(out_dim, W_std=1.0, b_std=b_std, parameterization=parameterization))
    return stax.serial(*layers)


def myrtle(depth: int = 5, *, channels: int = 128, activation: str = "relu", out_dim: int = 1):
    """Myrtle CNN (Shankar et al. 2020): conv blocks separated by 2x2 average pooling.

    ``depth`` is 5, 7 or 10 as in the paper; inputs are 32x32 (or any size divisible by 8).

    Examples
    --------
    >>> import numpy as np, kernels
    >>> _, _, kernel_fn = kernels.myrtle(5, channels=8)
    >>> kernel_fn(np.ones((2, 8, 8, 3)), None, "nngp").shape
    (2, 2)
    """
    per_stage = {5: 1, 7: 2, 10: 3}
    if depth not in per_stage:
        raise ValueError(f"Myrtle depth must be one of 5, 7, 10; got {depth!r}")
    k = per_stage[depth]
    act = _activation(activation)

    def conv():
        return stax.Conv(channels, (3, 3), padding="SAME", W_std=math.sqrt(2.0), b_std=0.0)

    layers = [conv(), act] * k
    layers += [conv(), act] * k + [stax.AvgPool((2, 2), strides=(2, 2))]
    layers += [conv(), act] * k + [stax.AvgPool((2, 2), strides=(2, 2))]
    layers += [conv(), act] * k + [stax.AvgPool((2, 2), strides=(2, 2))]
    layers += [stax.GlobalAvgPool(), stax.Dense(out_dim, W_std=1.0, b_std=0.0)]
    return stax.serial(*layers)


def wide_resnet_block(channels: int, strides: tuple[int, int] = (1, 1), *, channel_mismatch: bool = False):
    """One pre-activation wide-ResNet block (Zagoruyko & Komodakis 2016), as in neural-tangents."""
    main = stax.serial(
        stax.Relu(), stax.Conv(channels, (3, 3), strides, padding="SAME"),
        stax.Relu(), stax.Conv(channels, (3, 3), padding="SAME"),
    )
    shortcut = stax.Identity() if not channel_mismatch else stax.Conv(channels, (3, 3), strides, padding="SAME")
    return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut), stax.FanInSum())


def wide_resnet(depth: int = 16, *, width_multiplier: int = 4, base_channels: int = 16, out_dim: int = 1,
                readout: bool = True):
    """Wide ResNet WRN-``depth``-``width_multiplier`` (``depth = 6 n + 4``).

    With ``readout=False`` the network ends with the globally pooled features.

    Examples
    --------
    >>> import numpy as np, kernels
    >>> arch = kernels.wide_resnet(10, width_multiplier=1, base_channels=4)
    >>> kernels.kernel_matrix(arch, np.ones((2, 8, 8, 3)), kind="ntk").shape
    (2, 2)
    """
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"wide-ResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28...), got {depth!r}")
    _positive_int("width_multiplier", width_multiplier)
    n = (depth - 4) // 6
    layers = [stax.Conv(base_channels, (3, 3), padding="SAME")]
    for stage, stride in enumerate(((1, 1), (2, 2), (2, 2))):
        ch = base_channels * width_multiplier * 2**stage
        layers.append(wide_resnet_block(ch, stride, channel_mismatch=True))
        layers += [wide_resnet_block(ch) for _ in range(n - 1)]
    layers += [stax.Relu(), stax.GlobalAvgPool()]
    if readout:
        layers.append(stax.Dense(out_dim))
    return stax.serial(*layers)
