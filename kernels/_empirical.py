"""Empirical (finite-width) NTK/NNGP of a network with given parameters."""

from __future__ import annotations

import numpy as np

from ._nt import WORKING_EMPIRICAL_IMPLEMENTATIONS, nt, quiet


def empirical_kernel(arch, params, x1, x2=None, *, kind: str = "ntk", implementation: str = "jacobian_contraction"):
    r"""Finite-width kernel of a network at ``params`` (from ``init_fn`` or trained).

    ``ntk``: :math:`\frac{1}{k}\sum_o \nabla_\theta f_o(x_1) \cdot \nabla_\theta f_o(x_2)`;
    ``nngp``: :math:`\frac{1}{k}\sum_o f_o(x_1) f_o(x_2)`, both averaged over the ``k``
    outputs, so that they approach the analytic kernels as the width grows.

    Parameters
    ----------
    arch : stax triple or apply_fn
    params : pytree
    x1, x2 : arrays
    kind : {"ntk", "nngp"}
    implementation : {"jacobian_contraction", "ntk_vector_products"}
        neural-tangents' STRUCTURED_DERIVATIVES and AUTO fail on jax 0.5.3 and are refused.

    Examples
    --------
    >>> import jax, numpy as np, kernels
    >>> init_fn, apply_fn, _ = kernels.mlp(1, width=64)
    >>> _, params = init_fn(jax.random.key(0), (-1, 3))
    >>> kernels.empirical_kernel((init_fn, apply_fn, None), params, np.ones((4, 3))).shape
    (4, 4)
    """
    apply_fn = arch[1] if isinstance(arch, tuple) else arch
    if not callable(apply_fn):
        raise TypeError(f"arch must be a stax triple or an apply_fn, got {type(arch).__name__}")
    if kind not in ("ntk", "nngp"):
        raise ValueError(f"unknown kind {kind!r}; expected one of: ntk, nngp")
    if implementation not in WORKING_EMPIRICAL_IMPLEMENTATIONS:
        raise ValueError(
            f"unknown or unsupported implementation {implementation!r}; expected one of: "
            f"{', '.join(WORKING_EMPIRICAL_IMPLEMENTATIONS)} (neural-tangents' structured_derivatives "
            "and auto use jax internals removed before jax 0.5.3)"
        )
    x1 = np.asarray(x1)
    x2 = None if x2 is None else np.asarray(x2)
    if kind == "nngp":
        f1 = np.asarray(apply_fn(params, x1))
        f2 = f1 if x2 is None else np.asarray(apply_fn(params, x2))
        return np.einsum("i...o,j...o->ij...", f1, f2) / f1.shape[-1]
    with quiet():
        fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                 implementation=WORKING_EMPIRICAL_IMPLEMENTATIONS[implementation])
        return np.asarray(fn(x1, x2, params))
