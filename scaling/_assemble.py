"""From the engine's raw optimum to a :class:`FitResult`: statuses, masks, shapes."""

from __future__ import annotations

import math

import numpy as np

from . import _fast
from ._engine import natural_nonlinear
from ._forms import Form
from ._spec import Spec
from ._result import FitResult, law_values, scalar_or_array
from ._validate import Prepared


AT_BOUND_RTOL = 1e-6


def _at_bound(form: Form, params: dict, x: dict, w: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """Which curves have a parameter on a bound, with scale-relative tolerances.

    A nonlinear parameter (exponent, break) is scale-free: it is on its bound within
    ``1e-6`` of the bound's scale. A linear parameter (``L_inf``, ``A``, ``E``) is on its
    bound 0 when its whole contribution to the law is below ``1e-6`` of the law's size on
    the data: rescaling ``y`` rescales both, so no status changes with the units of ``y``.
    """
    m = len(next(iter(params.values())))
    at = np.zeros(m, dtype=bool)
    names: dict[int, list[str]] = {}
    size = None
    terms = _fast.term_values(form, params, x)  # power sums: each coefficient's own term
    used = w > 0
    for p in form.params:
        lo, hi = form.bounds[p]
        v = params[p]
        hit = np.zeros(m, dtype=bool)
        if p in form.linear:
            if math.isfinite(lo):
                if size is None:
                    full = law_values(form, params, x) if terms is None else sum(terms.values())
                    size = np.nanmax(np.where(used, np.abs(full), 0.0), axis=-1)
                if terms is not None:
                    contribution = np.broadcast_to(terms[p], w.shape)
                else:
                    contribution = full - law_values(form, {**params, p: np.zeros(m)}, x)
                part = np.nanmax(np.where(used, np.abs(contribution), 0.0), axis=-1)
                hit |= part <= AT_BOUND_RTOL * size
        else:
            if math.isfinite(lo):
                hit |= v - lo <= AT_BOUND_RTOL * max(1.0, abs(lo), (hi - lo) if math.isfinite(hi) else 1.0)
            if math.isfinite(hi):
                hit |= hi - v <= AT_BOUND_RTOL * max(1.0, abs(hi), (hi - lo) if math.isfinite(lo) else 1.0)
        at |= hit
        for r in np.flatnonzero(hit):
            names.setdefault(int(r), []).append(p)
    return at, names


def _joined(names: dict[int, list[str]], m: int) -> np.ndarray:
    """``(m,)`` str array: the comma-joined names of each curve's parameters on a bound."""
    width = max((len(",".join(n)) for n in names.values()), default=1)
    out = np.full(m, "", dtype=f"<U{width}")
    for r, n in names.items():
        out[r] = ",".join(n)
    return out


def assemble(spec: Spec, data: Prepared, best: dict, grids: dict, u_starts: np.ndarray, boot: dict | None) -> FitResult:
    """Turn the engine's raw optimum into a :class:`FitResult`: statuses, masks, shapes."""
    form = spec.form
    m = data.m
    value = best["value"].copy()
    params = {k: v.copy() for k, v in best["params"].items()}
    failed = ~np.isfinite(value) | ~np.all([np.isfinite(v) for v in params.values()], axis=0)
    safe = {k: np.where(failed, 1.0, v) for k, v in params.items()}
    at_bound, names = _at_bound(form, safe, data.x, data.w)
    grid_edge = np.zeros(m, dtype=bool)
    if form.nonlinear:
        start_vals = natural_nonlinear(form, u_starts[np.arange(m), best["start"]])
        for p in form.nonlinear:
            g = grids[p]
            if g.size < 3:
                continue
            s, v = start_vals[p], params[p]
            # The start went to the optimiser's coordinates and back: it equals a grid edge
            # up to rounding (bit-for-bit equality made the lower edge of the exponent
            # grids invisible: 0.02 came back as 0.02 + 1e-17).
            tol = 1e-9 * (g.max() - g.min())
            grid_edge |= ((s <= g.min() + tol) & (v < g.min())) | ((s >= g.max() - tol) & (v > g.max()))
    status = np.full(m, "converged", dtype=object)
    status[grid_edge] = "grid_edge"
    status[at_bound] = "at_bound"
    status[~best["converged"]] = "not_converged"
    status[best["n_iter"] >= spec.max_iter] = "max_iter"
    status[failed] = "failed"
    status[data.invalid] = "invalid"
    status[data.unidentifiable] = "unidentifiable"
    masked = data.invalid | data.unidentifiable
    for k in params:
        params[k][masked] = np.nan
    value[masked] = np.nan
    shape = data.batch_shape
    bp = {k: v.reshape((v.shape[0],) + shape) for k, v in boot["params"].items()} if boot else None
    if bp is not None and masked.any():
        for v in bp.values():
            v.reshape(v.shape[0], -1)[:, masked] = np.nan
    return FitResult(
        form=form,
        spec=spec,
        params={k: scalar_or_array(v.reshape(shape)) for k, v in params.items()},
        objective=scalar_or_array(value.reshape(shape)),
        converged=scalar_or_array((best["converged"] & ~masked).reshape(shape)),
        status=scalar_or_array(status.astype(str).reshape(shape)),
        bound_params=scalar_or_array(_joined(names, m).reshape(shape)),
        n_iter=scalar_or_array(best["n_iter"].reshape(shape)),
        batch_shape=shape,
        x=data.x,
        y=data.y,
        w=data.w,
        messages=dict(data.messages),
        start_grid=grids,
        bootstrap_params=bp,
    )



__all__ = ["assemble"]
