r"""Elementwise nonlinearities and their Gaussian expectations.

For a Gaussian pair :math:`(u, v)` with variances :math:`q_1, q_2` and covariance :math:`q_{12}`,
a nonlinearity :math:`\phi` maps the NNGP to :math:`E[\phi(u)\phi(v)]` and multiplies the NTK
by :math:`E[\phi'(u)\phi'(v)]`:

* ReLU (arc-cosine kernels, Cho & Saul 2009), with :math:`\theta` the angle between u, v:
  :math:`\frac{\sqrt{q_1 q_2}}{2\pi}(\sin\theta + (\pi-\theta)\cos\theta)` and
  :math:`\frac{\pi-\theta}{2\pi}`;
* Erf (Williams 1997): :math:`\frac{2}{\pi}\arcsin\frac{2q_{12}}{\sqrt{(1+2q_1)(1+2q_2)}}`;
* GELU (Tsuchida et al. 2020), as neural-tangents computes it.

The angle is the one singular spot: at :math:`\theta = 0` (a point with itself, the
diagonal) :math:`d\theta/dq_{12}` is infinite, so the last-bit rounding of
:math:`q_1 q_2 - q_{12}^2` would move the NTK by ~1e-8 and differ between devices. A
squared sine below :math:`64\epsilon` (the size of that rounding) is therefore set to 0
exactly: the diagonal, and identical inputs anywhere, get :math:`\theta = 0` on every
device. The same holds at :math:`\theta = \pi` (a point and its negative).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._kernel import Kernel, KernelFn, check_kernel, outer_products

_SNAP_ULPS = 64


def _safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose gradient at 0 is 0 rather than inf (NaN-free backprop)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _elementwise(fn, name: str, maps):
    """Layer from ``fn`` (the finite network's activation) and ``maps(kernel) -> (nngp, ntk, cov1, cov2)``."""
    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        return fn(inputs)

    def kernel_map(k: Kernel) -> Kernel:
        k = check_kernel(k, name)
        if not k.is_gaussian:
            raise ValueError(f"{name} needs Gaussian inputs: put a Dense or Conv layer (a random affine map) before it")
        nngp, ntk, cov1, cov2 = maps(k)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    return init_fn, apply_fn, KernelFn(kernel_map, name)


def _map_all(k: Kernel, fn, diag_fn, f=lambda v: v):
    """Apply ``fn(cov, prod, ntk)`` to nngp (with the NTK) and to cov1/cov2.

    With diagonal spatial layout the variances map through ``diag_fn`` alone (exact);
    with full layout they are covariances between positions and go through ``fn``.
    """
    prod12, prod11, prod22 = outer_products(k, f)
    nngp, ntk = fn(k.nngp, prod12, k.ntk)
    if k.full and k.n_spatial:
        cov1, _ = fn(k.cov1, prod11, None)
        cov2 = None if k.cov2 is None else fn(k.cov2, prod22, None)[0]
    else:
        cov1 = diag_fn(k.cov1)
        cov2 = None if k.cov2 is None else diag_fn(k.cov2)
    return nngp, ntk, cov1, cov2


def ABRelu(a: float, b: float, *, name: str | None = None):
    """``a * min(x, 0) + b * max(x, 0)`` (ReLU: ``a=0, b=1``)."""
    a, b = float(a), float(b)
    factor = (a - b) ** 2 / (2 * np.pi)
    mean_slope = (a**2 + b**2) / 2

    def fn(x):
        return a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0)

    def pair(cov, prod, ntk):
        sin2 = prod - cov**2
        tol = _SNAP_ULPS * jnp.finfo(cov.dtype).eps
        sin2 = jnp.where(sin2 > tol * prod, sin2, 0.0)
        root = _safe_sqrt(sin2)  # sqrt(q1 q2) sin(theta)
        both_zero = (root == 0) & (cov == 0)
        angle = jnp.where(both_zero, np.pi / 2, jnp.arctan2(root, jnp.where(both_zero, 1.0, cov)))
        # (a^2 + b^2)/2 - (a - b)^2 angle/(2 pi), written to be exact at angle = pi (and 0)
        dot_sigma = a * b + (a - b) ** 2 * ((np.pi - angle) / (2 * np.pi))
        cov = factor * root + dot_sigma * cov
        return cov, None if ntk is None else ntk * dot_sigma

    def diag(var):
        return mean_slope * var

    return _elementwise(fn, name or f"ABRelu({a}, {b})", lambda k: _map_all(k, pair, diag))


def Relu():
    """Rectified linear unit :math:`\\max(x, 0)`.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])  # orthogonal: theta = pi/2
    >>> k = stax.serial(stax.Dense(1), stax.Relu())[2](x, None, ("nngp", "ntk"))
    >>> round(float(k.nngp[0, 1]), 6), round(float(k.ntk[0, 1]), 6)  # 1/(4 pi), 0
    (0.079577, 0.0)
    """
    return ABRelu(0.0, 1.0, name="Relu")


def Erf():
    """Error function :math:`\\mathrm{erf}(x)`.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> x = np.array([[1.0]])  # variance 1: (2/pi) arcsin(2/3)
    >>> round(float(stax.serial(stax.Dense(1), stax.Erf())[2](x, None, "nngp")[0, 0]), 6)
    0.464559
    """
    factor = 2 / np.pi

    def fn(x):
        return jax.scipy.special.erf(x)

    def pair(cov, prod, ntk):
        root = _safe_sqrt(prod - 4 * cov**2)
        new = factor * jnp.arctan2(2 * cov, root)
        return new, None if ntk is None else ntk * (2 * factor / root)

    def diag(var):
        return factor * jnp.arctan2(var, jnp.sqrt(var + 0.25))

    return _elementwise(fn, "Erf", lambda k: _map_all(k, pair, diag, lambda v: 1 + 2 * v))


def Gelu():
    """Gaussian error linear unit :math:`x \\Phi(x)` (exact, not the tanh approximation).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import stax
    >>> # E[gelu(u)^2] for u ~ N(0, 1) (0.4252215 by quadrature)
    >>> round(float(stax.serial(stax.Dense(1), stax.Gelu())[2](np.ones((1, 1)), None, "nngp")[0, 0]), 6)
    0.425221
    """
    def fn(x):
        return jax.nn.gelu(x, approximate=False)

    def pair_fn(k: Kernel):
        prod12_1, prod11_1, prod22_1 = outer_products(k, lambda v: v + 1)
        prod12, prod11, prod22 = outer_products(k)

        def pair(cov, prod, prod_plus_1, ntk):
            delta_squared = prod_plus_1 - cov**2
            delta = _safe_sqrt(delta_squared)
            angles = jnp.arctan2(cov, delta)
            new = (cov**2 + prod * delta_squared) / (prod_plus_1 * delta)
            new = (new + cov * angles) / (2 * np.pi) + 0.25 * cov
            if ntk is not None:
                first = (1 / delta_squared + (1 - prod) / prod_plus_1 + 1) * cov / delta / (2 * np.pi)
                ntk = ntk * (first + 0.25 + angles / (2 * np.pi))
            return new, ntk

        nngp, ntk = pair(k.nngp, prod12, prod12_1, k.ntk)
        if k.full and k.n_spatial:
            cov1, _ = pair(k.cov1, prod11, prod11_1, None)
            cov2 = None if k.cov2 is None else pair(k.cov2, prod22, prod22_1, None)[0]
        else:
            cov1 = diag(k.cov1)
            cov2 = None if k.cov2 is None else diag(k.cov2)
        return nngp, ntk, cov1, cov2

    def diag(var):
        root = jnp.sqrt(1.0 + 2.0 * var)
        new = var / ((var + 1.0) * root) + jnp.arctan2(var, root) / 2
        return (new / np.pi + 0.25) * var

    return _elementwise(fn, "Gelu", pair_fn)
