"""Fit objectives: small registered objects, one place per objective.

JAX (``jax.numpy``) is imported by the methods that evaluate a loss, not with this
module: the NumPy engine reads only the objectives' attributes.

An objective is a summed per-point loss ``sum_i w_i rho(r_i)`` of residuals ``r``
(``log yhat - log y``, or ``yhat - y`` for ``mse``). Each object knows its residual,
``rho``, its derivative ``psi = rho'``, the Gauss-Newton/IRLS curvature weight, the
derivative ``psi'`` used by the sandwich covariance, and how many inner IRLS steps the
variable projection needs. The engine, the covariance and the intervals read only these.
"""

from __future__ import annotations

import dataclasses
import math

_TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class Objective:
    """Base class: least squares of log residuals (``log_mse``)."""

    name: str = "log_mse"
    log: bool = True  # residuals are log ratios (y > 0 required)
    gaussian: bool = True  # rho = r^2: classic Gauss-Newton covariance, F profile
    n_gn: int = 0  # inner Gauss-Newton/IRLS steps of the variable projection

    def residual(self, yhat, y):
        """``log(yhat / y)``, or ``yhat - y`` for linear-space objectives."""
        import jax.numpy as jnp
        if not self.log:
            return yhat - y
        return jnp.log(jnp.maximum(yhat, _TINY)) - jnp.log(y)

    def rho(self, r):
        return r**2

    def psi(self, r):
        """``d rho / d r``."""
        return 2.0 * r

    def curvature(self, r):
        """Positive Gauss-Newton (IRLS) weight: ``psi(r) / r`` (the secant slope)."""
        import jax.numpy as jnp
        return 2.0 * jnp.ones_like(r)

    def dpsi(self, r):
        """``d psi / d r`` (almost everywhere), for the sandwich covariance."""
        import jax.numpy as jnp
        return 2.0 * jnp.ones_like(r)

    def bread_weights(self, r, w):
        """Per-point weights of the sandwich's bread ``A = sum_i w_i b_i J_i J_i^T``: ``psi'``."""
        return self.dpsi(r)

    def loss(self, r, w):
        """Summed (never averaged) objective of one curve."""
        import jax.numpy as jnp
        return jnp.sum(w * self.rho(r))

    def describe(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class LinearMSE(Objective):
    name: str = "mse"
    log: bool = False


@dataclasses.dataclass(frozen=True)
class LogHuber(Objective):
    """Huber loss of log residuals (the Chinchilla recipe): quadratic within ``delta``."""

    name: str = "log_huber"
    gaussian: bool = False
    n_gn: int = 8
    delta: float = 1e-3

    def rho(self, r):
        import jax.numpy as jnp
        a = jnp.abs(r)
        return jnp.where(a <= self.delta, 0.5 * r**2, self.delta * (a - 0.5 * self.delta))

    def psi(self, r):
        import jax.numpy as jnp
        return jnp.clip(r, -self.delta, self.delta)

    def curvature(self, r):
        import jax.numpy as jnp
        return jnp.minimum(1.0, self.delta / jnp.maximum(jnp.abs(r), _TINY))

    def dpsi(self, r):
        import jax.numpy as jnp
        return (jnp.abs(r) <= self.delta).astype(r.dtype)

    def bread_weights(self, r, w):
        import jax.numpy as jnp
        # Huber (1981, sec. 7.6): the mean of psi' over the points, not the 0/1 indicator
        # per point, which leaves A singular when few residuals fall inside delta.
        inside = jnp.sum(w * self.dpsi(r), axis=-1, keepdims=True) / jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), _TINY)
        return jnp.broadcast_to(inside, r.shape)

    def describe(self) -> str:
        return f"log_huber(delta={self.delta:g})"


@dataclasses.dataclass(frozen=True)
class Asymmetric(Objective):
    """Squared log residuals with over-predictions weighted by ``asymmetry``."""

    name: str = "asymmetric"
    gaussian: bool = False
    n_gn: int = 4
    asymmetry: float = 10.0

    def _a(self, r):
        import jax.numpy as jnp
        return jnp.where(r > 0, self.asymmetry, 1.0)

    def rho(self, r):
        return self._a(r) * r**2

    def psi(self, r):
        return 2.0 * self._a(r) * r

    def curvature(self, r):
        return 2.0 * self._a(r)

    def dpsi(self, r):
        return 2.0 * self._a(r)

    def describe(self) -> str:
        return f"asymmetric(asymmetry={self.asymmetry:g})"


OBJECTIVES: dict[str, type[Objective]] = {
    "log_mse": Objective,
    "log_huber": LogHuber,
    "mse": LinearMSE,
    "asymmetric": Asymmetric,
}


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def get_objective(name, *, delta: float = 1e-3, asymmetry: float = 10.0) -> Objective:
    """The objective object for a name (or an :class:`Objective`, returned as is).

    Examples
    --------
    >>> from scaling._objectives import get_objective
    >>> get_objective("log_huber", delta=0.01).describe()
    'log_huber(delta=0.01)'
    """
    if isinstance(name, Objective):
        return name
    if not isinstance(name, str) or name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; expected one of: {', '.join(OBJECTIVES)}")
    delta = _positive("delta", delta)
    asymmetry = _positive("asymmetry", asymmetry)
    cls = OBJECTIVES[name]
    if cls is LogHuber:
        return LogHuber(delta=delta)
    if cls is Asymmetric:
        return Asymmetric(asymmetry=asymmetry)
    return cls()
