"""What a fit is, before any array library: the frozen fit specification and the
optimiser's coordinates, in NumPy.

Both engines read this module: the compiled core (:mod:`scaling._optimize`, JAX) and the
NumPy engine (:mod:`scaling._fast`). It imports neither JAX nor SciPy, so a fit that the
NumPy engine serves never loads them.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from ._forms import Form
from ._objectives import Objective

XTOL = 1e-10  # relative step below which Levenberg-Marquardt has converged
FTOL = 1e-12  # relative decrease below which a step counts as no progress

# Transform kinds between unconstrained optimiser coordinates u and natural values.
_IDENTITY, _LOGIT, _LOG, _NEGLOG = range(4)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything static about a fit: compiled once per distinct Spec and data shape."""

    form: Form
    objective: Objective = Objective()
    max_iter: int = 200
    gtol: float = 1e-8
    refine: int = 4
    optimizer: str = "lm"


@functools.lru_cache(maxsize=256)
def transform_kinds(form: Form) -> tuple[tuple[int, float, float], ...]:
    """``(kind, lo, hi)`` per nonlinear parameter: how its bounds are mapped away."""
    kinds = []
    for p in form.nonlinear:
        lo, hi = form.bounds[p]
        if math.isfinite(lo) and math.isfinite(hi):
            kinds.append((_LOGIT, lo, hi))
        elif math.isfinite(lo):
            kinds.append((_LOG, lo, hi))
        elif math.isfinite(hi):
            kinds.append((_NEGLOG, lo, hi))
        else:
            kinds.append((_IDENTITY, lo, hi))
    return tuple(kinds)


def to_unconstrained(form: Form, values: dict[str, np.ndarray]) -> np.ndarray:
    """Natural nonlinear values (numpy, any batch shape) -> unconstrained ``u (..., p)``."""
    cols = []
    for p, (kind, lo, hi) in zip(form.nonlinear, transform_kinds(form)):
        v = np.asarray(values[p], dtype=np.float64)
        if kind == _LOGIT:
            z = np.clip((v - lo) / (hi - lo), 1e-12, 1 - 1e-12)
            cols.append(np.log(z) - np.log1p(-z))
        elif kind == _LOG:
            cols.append(np.log(np.maximum(v - lo, 1e-300)))
        elif kind == _NEGLOG:
            cols.append(np.log(np.maximum(hi - v, 1e-300)))
        else:
            cols.append(v)
    if not cols:
        return np.zeros(np.shape(next(iter(values.values()), np.zeros(()))) + (0,))
    return np.stack(cols, axis=-1)


def to_natural(form: Form, u: np.ndarray, derivatives: bool = False):
    """Unconstrained ``u (..., p)`` -> natural nonlinear values, NumPy twin of
    :func:`scaling._optimize.to_natural`; with ``derivatives``, also the first and
    second derivatives of each value with respect to its coordinate.
    """
    val, d1, d2 = {}, {}, {}
    with np.errstate(over="ignore"):
        for i, (p, (kind, lo, hi)) in enumerate(zip(form.nonlinear, transform_kinds(form))):
            ui = u[..., i]
            if kind == _LOGIT:
                s = 1.0 / (1.0 + np.exp(-ui))  # exp(-u) = inf for u < -709 gives 0, never NaN
                val[p] = lo + (hi - lo) * s
                if derivatives:
                    d1[p] = (hi - lo) * s * (1.0 - s)
                    d2[p] = d1[p] * (1.0 - 2.0 * s)
            elif kind in (_LOG, _NEGLOG):
                sign = 1.0 if kind == _LOG else -1.0
                e = np.exp(np.clip(ui, -700.0, 700.0))
                val[p] = (lo if kind == _LOG else hi) + sign * e
                if derivatives:
                    d1[p] = np.where(np.abs(ui) <= 700.0, sign * e, 0.0)
                    d2[p] = d1[p]
            else:
                val[p] = ui
                if derivatives:
                    d1[p] = np.ones_like(ui)
                    d2[p] = np.zeros_like(ui)
    return (val, d1, d2) if derivatives else val
