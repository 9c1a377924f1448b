"""Empirical (finite-width) NTK/NNGP of a network with given parameters, in plain JAX."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

IMPLEMENTATIONS = ("jacobian_contraction", "ntk_vector_products", "auto")


def _jacobian_contraction(f, params, x1, x2):
    """``sum_p J1[i, o, p] J2[j, o, p]``: both Jacobians in memory, one contraction per leaf."""
    j1 = jax.jacrev(f)(params, x1)
    j2 = j1 if x2 is None else jax.jacrev(f)(params, x2)

    def contract(a, b):
        a = a.reshape(a.shape[0], a.shape[1], -1)
        b = b.reshape(b.shape[0], b.shape[1], -1)
        return jnp.einsum("iop,jop->ij", a, b)

    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(contract, j1, j2))
    return sum(leaves[1:], leaves[0])


def _ntk_vector_products(f, params, x1, x2):
    """``J1 (J2^T v)`` for every basis vector ``v`` of the second batch's outputs: no Jacobian stored."""
    x2 = x1 if x2 is None else x2
    out2, vjp2 = jax.vjp(lambda p: f(p, x2), params)
    n2, k = out2.shape

    def column(v):
        (tangent,) = vjp2(v)
        return jax.jvp(lambda p: f(p, x1), (params,), (tangent,))[1]  # (n1, k)

    basis = jnp.eye(n2 * k, dtype=out2.dtype).reshape(n2 * k, n2, k)
    cols = jax.lax.map(column, basis)  # (n2*k, n1, k): [j*k + o, i, o'] = K[i, o', j, o]
    cols = cols.reshape(n2, k, -1, k)
    return jnp.einsum("joio->ij", cols)


def _auto(f, params, x1, x2):
    """The cheaper of the two, by the size of the Jacobian against the number of products."""
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    n_params = sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
    k = jax.eval_shape(f, params, x1[:1]).shape[-1]
    jacobian_bytes = (n1 + n2) * k * n_params * 8
    if jacobian_bytes <= 2**30:
        return _jacobian_contraction(f, params, x1, x2)
    return _ntk_vector_products(f, params, x1, x2)


_IMPLEMENTATIONS = {"jacobian_contraction": _jacobian_contraction, "ntk_vector_products": _ntk_vector_products,
                    "auto": _auto}


def empirical_kernel(arch, params, x1, x2=None, *, kind: str = "ntk", implementation: str = "jacobian_contraction"):
    r"""Finite-width kernel of a network at ``params`` (from ``init_fn`` or trained).

    ``ntk``: :math:`\frac{1}{k}\sum_o \nabla_\theta f_o(x_1) \cdot \nabla_\theta f_o(x_2)`;
    ``nngp``: :math:`\frac{1}{k}\sum_o f_o(x_1) f_o(x_2)`, both averaged over the ``k``
    outputs, so that they approach the analytic kernels as the width grows.

    Parameters
    ----------
    arch : stax triple or apply_fn
        ``apply_fn(params, x)`` must return ``(n, k)`` outputs.
    params : pytree
    x1, x2 : arrays
    kind : {"ntk", "nngp"}
    implementation : {"jacobian_contraction", "ntk_vector_products", "auto"}
        ``jacobian_contraction`` stores both Jacobians (fast for small networks);
        ``ntk_vector_products`` never stores one (``n2 * k`` vector-Jacobian and
        Jacobian-vector products); ``auto`` contracts Jacobians when they fit in 1 GiB.

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
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {implementation!r}; expected one of: {', '.join(IMPLEMENTATIONS)}")
    x1 = jnp.asarray(x1)
    x2 = None if x2 is None else jnp.asarray(x2)
    f1 = apply_fn(params, x1)
    if f1.ndim != 2:
        raise ValueError(f"apply_fn must return (n, outputs) arrays, got shape {f1.shape}")
    if kind == "nngp":
        f2 = f1 if x2 is None else apply_fn(params, x2)
        return np.asarray(f1 @ f2.T / f1.shape[-1])
    ntk = _IMPLEMENTATIONS[implementation](apply_fn, params, x1, x2)
    return np.asarray(ntk / f1.shape[-1])
