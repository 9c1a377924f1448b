"""Input checks shared by the fitting API: clear errors that name the offending value."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._forms import Form


def as_float_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 array, with a TypeError naming ``name`` for non-numbers."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric (array-like of numbers), got {type(value).__name__}: {exc}") from None
    return arr


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(map(str, allowed))}")


MAX_WEIGHT = 1e150  # a squared residual times the weight must stay finite
WEIGHT_RANGE = 1e12  # points below this fraction of a curve's largest weight carry no information


def _distinct_per_row(a: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Number of distinct values among the used entries of every row (vectorised)."""
    s = np.sort(np.where(used, a, np.nan), axis=-1)  # NaN (unused) sort last
    first = np.isfinite(s[:, :1]).sum(axis=-1)
    return first + np.sum((np.diff(s, axis=-1) > 0) & np.isfinite(s[:, 1:]), axis=-1)


def distinct_counts(form: Form, xs: dict, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per curve: distinct design points, and the fewest distinct values of any variable."""
    m = used.shape[0]
    if m > 1 and np.array_equal(used, np.broadcast_to(used[:1], used.shape)) and all(
            np.array_equal(xs[v], np.broadcast_to(xs[v][:1], xs[v].shape)) for v in form.variables):
        # every curve has the same design (a shared x): count it once
        points, fewest = distinct_counts(form, {v: xs[v][:1] for v in form.variables}, used[:1])
        return np.repeat(points, m), np.repeat(fewest, m)
    per_var = [_distinct_per_row(xs[v], used) for v in form.variables]
    fewest = np.min(per_var, axis=0)
    if len(form.variables) == 1:
        return per_var[0], fewest
    points = np.array([len(np.unique(np.stack([xs[v][r][used[r]] for v in form.variables], -1), axis=0))
                       for r in range(used.shape[0])], dtype=int)
    return points, fewest


def _where(batch_shape: tuple[int, ...], flat_index: int) -> str:
    if not batch_shape:
        return ""
    return f"curve {np.unravel_index(flat_index, batch_shape)}: "


class Prepared:
    """Data flattened to ``(m, n)`` curves with per-curve validity."""

    def __init__(self, x, y, w, batch_shape, invalid, messages, shared_x, unidentifiable=None):
        self.x, self.y, self.w = x, y, w
        self.batch_shape = batch_shape
        self.invalid = invalid
        self.messages = messages
        self.shared_x = shared_x
        self.unidentifiable = np.zeros_like(invalid) if unidentifiable is None else unidentifiable

    @property
    def m(self) -> int:
        return self.y.shape[0]

    @property
    def n_eff(self) -> np.ndarray:
        return np.count_nonzero(self.w > 0, axis=-1)


def prepare(form: Form, x, y, weights, *, log_objective: bool, skipna: bool, errors: str) -> Prepared:
    """Validate and broadcast ``x, y, weights``; bad curves raise or are marked invalid."""
    variables = form.variables
    if len(variables) == 1:
        if isinstance(x, Mapping):
            if set(x) != set(variables):
                raise ValueError(f"form {form.name!r} takes one variable; got x with keys {sorted(x)}")
            x = x[variables[0]]
        xs = {variables[0]: as_float_array("x", x)}
    else:
        if not isinstance(x, Mapping):
            raise TypeError(
                f"form {form.name!r} has variables {variables}: pass x as a mapping, "
                f"e.g. x={{{', '.join(repr(v) + ': ...' for v in variables)}}}"
            )
        missing = [v for v in variables if v not in x]
        extra = [k for k in x if k not in variables]
        if missing or extra:
            raise ValueError(f"form {form.name!r} needs x keys {list(variables)}; missing {missing}, unexpected {extra}")
        xs = {v: as_float_array(f"x[{v!r}]", x[v]) for v in variables}
    y = as_float_array("y", y)
    if y.ndim == 0:
        raise ValueError("y must have at least one dimension (points along the last axis), got a scalar")
    n = y.shape[-1]
    for v, a in xs.items():
        if a.ndim == 0 or a.shape[-1] != n:
            raise ValueError(
                f"x{'' if len(xs) == 1 else f'[{v!r}]'} has shape {a.shape} but y has shape {y.shape}: "
                f"the last axes (points) must match"
            )
    shared_x = all(a.ndim == 1 for a in xs.values())
    try:
        shape = np.broadcast_shapes(y.shape, *(a.shape for a in xs.values()))
    except ValueError:
        raise ValueError(f"x shapes {[a.shape for a in xs.values()]} do not broadcast against y shape {y.shape}") from None
    if weights is None:
        w = np.ones(shape)
    else:
        w = as_float_array("weights", weights)
        try:
            w = np.broadcast_to(w, shape)
        except ValueError:
            raise ValueError(f"weights shape {w.shape} does not broadcast against the data shape {shape}") from None
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            i = np.argwhere(bad)[0]
            raise ValueError(f"weights must be finite and >= 0; got weights{tuple(i)} = {w[tuple(i)]}")
        if np.any(w > MAX_WEIGHT):
            i = np.argwhere(w > MAX_WEIGHT)[0]
            raise ValueError(
                f"weights must be <= {MAX_WEIGHT:g} (weights are relative: rescale them); got "
                f"weights{tuple(i)} = {w[tuple(i)]:g}")
    batch_shape = shape[:-1]
    m = int(np.prod(batch_shape, dtype=int))
    y = np.broadcast_to(y, shape).reshape(m, n).copy()
    xs = {v: np.broadcast_to(a, shape).reshape(m, n).copy() for v, a in xs.items()}
    w = np.broadcast_to(w, shape).reshape(m, n).copy()

    messages: dict[int, str] = {}

    def flag(mask_points: np.ndarray, text) -> None:
        rows = np.flatnonzero(mask_points.any(axis=-1))
        for r in rows:
            if r in messages:
                continue
            j = int(np.flatnonzero(mask_points[r])[0])
            messages[r] = _where(batch_shape, r) + text(r, j)

    nonfinite = ~np.isfinite(y)
    for v, a in xs.items():
        nonfinite |= ~np.isfinite(a)
    if skipna:
        w[nonfinite] = 0.0
    else:
        for v, a in xs.items():
            label = "x" if len(xs) == 1 else f"x[{v!r}]"
            flag(~np.isfinite(a), lambda r, j, a=a, label=label: f"{label} contains {a[r, j]} at point {j}; pass finite values")
        flag(~np.isfinite(y), lambda r, j: f"y contains {y[r, j]} at point {j}; pass finite values (or skipna=True)")
    used = w > 0
    for v, a in xs.items():
        label = "x" if len(xs) == 1 else f"x[{v!r}]"
        flag(used & np.isfinite(a) & (a <= 0), lambda r, j, a=a, label=label: (
            f"{label} must be > 0 for a power law; got {label}[{j}] = {a[r, j]:g}"))
    if log_objective:
        flag(used & np.isfinite(y) & (y <= 0), lambda r, j: (
            f"y must be > 0 for a log-space objective; got y[{j}] = {y[r, j]:g} "
            f"(use objective='mse' for losses that can reach zero)"))
    n_eff = np.count_nonzero(used & ~nonfinite, axis=-1)
    p = len(form.params)
    for r in np.flatnonzero(n_eff < p + 1):
        messages.setdefault(r, _where(batch_shape, r) + (
            f"{n_eff[r]} points cannot determine the {p} parameters of form {form.name!r} {form.params} "
            f"and a residual scale; need at least {p + 1} points"))
    unident = np.zeros(m, dtype=bool)
    top = np.max(np.where(used & ~nonfinite, w, 0.0), axis=-1, keepdims=True)
    informative = used & ~nonfinite & (w >= top / WEIGHT_RANGE)
    n_inf = np.count_nonzero(informative, axis=-1)
    for r in np.flatnonzero((n_inf < p + 1) & (n_eff >= p + 1)):
        messages.setdefault(r, _where(batch_shape, r) + (
            f"only {n_inf[r]} points carry weight within a factor {WEIGHT_RANGE:g} of the largest weight "
            f"({top[r, 0]:g}); the {p} parameters of form {form.name!r} need at least {p + 1}: "
            f"weights this unequal leave the fit undetermined"))
    ok_rows = np.flatnonzero(n_inf >= p + 1)
    internal = any(v.startswith("_") for v in variables)  # profiled/grouped forms: checked upstream
    if ok_rows.size and not internal:
        points, fewest = distinct_counts(form, {v: a[ok_rows] for v, a in xs.items()}, informative[ok_rows])
        need_each = 3 if len(variables) > 1 else 1
        for i in np.flatnonzero((points < p) | (fewest < need_each)):
            r = ok_rows[i]
            if r in messages:
                continue
            what = (f"{points[i]} distinct x values" if len(variables) == 1 else
                    f"{points[i]} distinct ({', '.join(variables)}) points and as few as {fewest[i]} distinct "
                    f"values of one variable (each needs >= 3)")
            messages[r] = _where(batch_shape, r) + (
                f"unidentifiable: {what} cannot determine the {p} parameters {form.params} of form "
                f"{form.name!r}; need at least {p} distinct x values (repeats do not help)")
            unident[r] = True
    yv = np.where(used & ~nonfinite, y, np.nan)
    finite_any = np.any(~np.isnan(yv), axis=-1) if n > 0 else np.zeros(m, bool)
    hi = np.max(np.where(np.isnan(yv), -np.inf, yv), axis=-1, initial=-np.inf)
    lo = np.min(np.where(np.isnan(yv), np.inf, yv), axis=-1, initial=np.inf)
    with np.errstate(invalid="ignore"):  # rows with no usable point: spread NaN, not flagged here
        spread = np.where(finite_any, hi - lo, np.nan)
    for r in np.flatnonzero((spread == 0) & (n_eff >= p + 1)):
        messages.setdefault(r, _where(batch_shape, r) + (
            f"y is constant (every value = {hi[r]:g}): a scaling law cannot be fitted to a flat curve"))

    invalid = np.zeros(m, dtype=bool)
    if messages:
        if errors == "raise":
            first = min(messages)
            more = f" ({len(messages) - 1} more curves have problems)" if len(messages) > 1 else ""
            raise ValueError(messages[first] + more)
        invalid[list(messages)] = True
        invalid &= ~unident
        # Harmless stand-in data keeps the batched computation finite; results are masked.
    bad_rows = invalid | unident
    if bad_rows.any():
        for v in xs:
            xs[v][bad_rows] = np.arange(1.0, n + 1.0)
        y[bad_rows] = 1.0 + 1.0 / np.arange(1.0, n + 1.0)
        w[bad_rows] = 1.0
    masked = ~bad_rows[:, None] & (w == 0)
    y[masked] = 1.0  # masked points: any positive finite value, weight 0
    for v in xs:
        xs[v][masked] = 1.0
    return Prepared(xs, y, w, batch_shape, invalid, messages, shared_x, unident)
