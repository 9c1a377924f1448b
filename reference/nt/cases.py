"""The reference cases: every builder call the toolkit offers, on fixed inputs.

Shared by ``compute.py`` (run in the neural-tangents reference environment, with the
builders of commit 5cc619b) and ``tests/kernels/test_reference.py`` (the native kernels).
Each case is ``build(arch, stax) -> (init_fn, apply_fn, kernel_fn)``: ``arch`` is the module
with the builders (``mlp``, ``cnn``, ...) and ``stax`` the layer module, so one definition
serves both sides. Only numpy is imported here.
"""

from __future__ import annotations

import itertools

import numpy as np

ACTIVATIONS = ("relu", "erf", "gelu", "tanh_like_erf", "identity")
PARAMETERIZATIONS = ("ntk", "standard")


def inputs() -> dict[str, np.ndarray]:
    """Fixed inputs (stored with the fixtures, so numpy versions cannot change them)."""
    rng = np.random.default_rng(20231214)  # neural-tangents 0.6.5's release month
    x = rng.standard_normal((6, 5))
    x[3] = x[1]  # a repeated point: correlation exactly 1 off the diagonal
    imgs = rng.standard_normal((3, 8, 8, 3))
    return {
        "vec1": x,
        "vec2": np.r_[rng.standard_normal((2, 5)), -x[:1]],  # and a point's negative (correlation -1)
        "img1": imgs,
        "img2": np.r_[rng.standard_normal((1, 8, 8, 3)), imgs[:1]],
    }


def _case(name, kind, build):
    return {"name": name, "inputs": kind, "build": build}


def cases() -> list[dict]:
    out = []
    # mlp: every activation x parameterisation x depth, and each hyperparameter moved once
    for act, par, depth in itertools.product(ACTIVATIONS, PARAMETERIZATIONS, (1, 3)):
        out.append(_case(f"mlp-{act}-{par}-d{depth}", "vec",
                         lambda arch, stax, a=act, p=par, d=depth: arch.mlp(d, activation=a, parameterization=p)))
    variants = {
        "bias": dict(b_std=0.3),
        "wstd": dict(W_std=1.1, W_std_out=0.7),
        "width": dict(width=37, out_dim=3),
        "features": dict(readout=False),
    }
    for (vname, kw), par, act in itertools.product(variants.items(), PARAMETERIZATIONS, ("relu", "erf", "gelu")):
        out.append(_case(f"mlp-{act}-{par}-d2-{vname}", "vec",
                         lambda arch, stax, a=act, p=par, k=kw: arch.mlp(2, activation=a, parameterization=p, **k)))
    # cnn: every activation x parameterisation x pooling
    for act, par, pool in itertools.product(ACTIVATIONS, PARAMETERIZATIONS, ("global", "flatten")):
        out.append(_case(f"cnn-{act}-{par}-{pool}", "img",
                         lambda arch, stax, a=act, p=par, q=pool: arch.cnn(2, activation=a, parameterization=p, pool=q,
                                                                          channels=16)))
    for par, pool in itertools.product(PARAMETERIZATIONS, ("global", "flatten")):
        out.append(_case(f"cnn-relu-{par}-{pool}-filter-bias-features", "img",
                         lambda arch, stax, p=par, q=pool: arch.cnn(1, filter_shape=(2, 3), b_std=0.4, W_std=1.2,
                                                                   parameterization=p, pool=q, readout=False)))
    # myrtle: every depth and activation
    for depth, act in itertools.product((5, 7, 10), ("relu", "erf", "gelu", "identity")):
        if depth != 5 and act != "relu":
            continue
        out.append(_case(f"myrtle{depth}-{act}", "img",
                         lambda arch, stax, d=depth, a=act: arch.myrtle(d, channels=8, activation=a, out_dim=2)))
    # wide resnets and their blocks (strides, channel mismatch)
    for depth, readout in ((10, True), (16, True), (10, False)):
        out.append(_case(f"wrn{depth}-readout{readout}", "img",
                         lambda arch, stax, d=depth, r=readout: arch.wide_resnet(d, width_multiplier=2, base_channels=4,
                                                                                 readout=r)))
    for strides, mismatch, head in itertools.product(((1, 1), (2, 2)), (False, True), ("gap", "flatten")):
        if strides == (2, 2) and not mismatch:
            continue  # a strided block without the projection shortcut has mismatched branch shapes
        pooled = "GlobalAvgPool" if head == "gap" else "Flatten"
        out.append(_case(f"wrn_block-s{strides[0]}-mismatch{mismatch}-{head}", "img",
                         lambda arch, stax, s=strides, m=mismatch, h=pooled: stax.serial(
                             stax.Conv(8, (3, 3), padding="SAME"),
                             arch.wide_resnet_block(8, s, channel_mismatch=m),
                             getattr(stax, h)(), stax.Dense(1))))
    # layers the builders do not reach on their own: strides and VALID padding, SAME pooling
    out.append(_case("stax-conv-strided-valid-standard", "img", lambda arch, stax: stax.serial(
        stax.Conv(6, (3, 3), strides=(2, 2), padding="VALID", W_std=1.3, b_std=0.2, parameterization="standard"),
        stax.Relu(), stax.Conv(5, (2, 2), strides=(1, 2), padding="SAME", parameterization="standard"),
        stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1, parameterization="standard"))))
    # (Pooling or an asymmetric stride right after a convolution is left out: there
    # neural-tangents 0.6.5 departs from a finite network's Monte Carlo kernel by 2-4x;
    # tests/kernels/test_layers.py holds the native layers to Monte Carlo there instead.)
    out.append(_case("stax-residual-mlp", "vec", lambda arch, stax: stax.serial(
        stax.Dense(8, b_std=0.1), stax.FanOut(3),
        stax.parallel(stax.serial(stax.Relu(), stax.Dense(8)), stax.Identity(), stax.serial(stax.Erf(), stax.Dense(8))),
        stax.FanInSum(), stax.Gelu(), stax.Dense(1))))
    names = [c["name"] for c in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out


GETS = ("nngp", "ntk")
