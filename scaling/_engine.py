"""The batched fitting engine: start points, padded compiled runs, bootstrap refits.

Below :mod:`scaling._result` and :mod:`scaling._profile` (which ask it for refits); it
knows nothing of results. Every compiled call goes through :func:`run_batch`, which pads
curves and points to a few bucketed shapes (masked by zero weights), so loops of fits of
different lengths reuse a handful of compiled programs.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools

import numpy as np

from . import _fast
from ._cache import ensure_compilation_cache
from ._forms import Form
from ._spec import Spec, to_natural, to_unconstrained
from ._validate import Prepared
from ._x64 import enable_x64


def compiled():
    """The jitted core, :mod:`scaling._optimize`, imported on first use.

    JAX is loaded only when a fit needs the compiled core: fits served by the NumPy
    engine (:mod:`scaling._fast`) never import it. (No cycle: ``_optimize`` does not
    import this module.)
    """
    return importlib.import_module("._optimize", __package__)


def as_key(key):
    """A JAX PRNG key from a key or an integer seed (``None`` stays ``None``)."""
    if key is None:
        return None
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) and not hasattr(key, "dtype"):
        raise TypeError(f"key must be a jax PRNG key or an int seed, got {type(key).__name__}: {key!r}")
    if isinstance(key, (int, np.integer)):
        import jax

        return jax.random.key(int(key))
    return key


def start_points(form: Form, data: Prepared, starts, n_random: int, key):
    """Start points ``u (m, S, p)`` in optimiser coordinates, and the natural grids used."""
    starts = dict(starts or {})
    unknown = [k for k in starts if k not in form.nonlinear]
    if unknown:
        raise ValueError(f"starts given for {unknown}, which are not nonlinear parameters of {form.name!r}: {form.nonlinear}")
    grid_depends_on_x = any(callable(form.init[p]) for p in form.nonlinear if p not in starts)
    rows = [0] if (data.shared_x or not grid_depends_on_x) else range(data.m)
    grids_per_row = []
    for r in rows:
        g = form.start_grid({v: a[r][data.w[r] > 0] if (data.w[r] > 0).any() else a[r] for v, a in data.x.items()})
        for k, v in starts.items():
            lo, hi = form.bounds[k]
            v = np.asarray(v, dtype=np.float64).ravel()
            if v.size == 0 or np.any((v <= lo) | (v >= hi)) or not np.all(np.isfinite(v)):
                raise ValueError(f"starts[{k!r}] must be finite values strictly inside the bounds {(lo, hi)}; got {v}")
            g[k] = v
        grids_per_row.append(g)
    p = len(form.nonlinear)
    u_rows = []
    for g in grids_per_row:
        if p == 0:
            u_rows.append(np.zeros((1, 0)))
            continue
        combos = np.array(list(itertools.product(*(g[k] for k in form.nonlinear))), dtype=np.float64)
        u_rows.append(to_unconstrained(form, {k: combos[:, i] for i, k in enumerate(form.nonlinear)}))
    u = np.stack(u_rows)  # (rows, S, p)
    if n_random and p:
        lo, hi = u.min(axis=1, keepdims=True), u.max(axis=1, keepdims=True)
        span = np.maximum(hi - lo, 1.0)
        import jax

        draws = np.asarray(jax.random.uniform(key, (u.shape[0], n_random, p), dtype=np.float32), dtype=np.float64)
        u = np.concatenate([u, lo - 0.25 * span + 1.5 * span * draws], axis=1)
    u = np.broadcast_to(u, (data.m,) + u.shape[1:])
    return u, grids_per_row[0]


def _bucket(m: int, halves: int = 4) -> int:
    """Round a size up so that nearby sizes share one compiled program.

    Sizes step by ``2**k / halves`` within each octave ``[2**k, 2**(k+1))``: padding
    costs at most ``1/halves`` of the work. Sizes up to 8 become the next power of two.
    """
    if m <= 8:
        return 1 << max(0, (m - 1).bit_length())
    q = max(1, (1 << (m.bit_length() - 1)) // halves)
    return int(-(-m // q) * q)


def _bucket_points(n: int, m: int = 1) -> int:
    """Padded point count. Small batches (notebook loops of single fits): 16, 32 or 64
    points, so any length up to 64 reuses three programs. Large batches (m > 64), where
    run time dominates compile time, pad less: sizes step by a quarter octave."""
    if m > 64:
        return _bucket(n, halves=4)
    if n <= 64:
        return max(16, 1 << max(0, (n - 1).bit_length()))
    return _bucket(n, halves=2)


FAST_PASS_ITER = 6
SAME_VALUE_RTOL = 1e-12  # objective values this close are equal up to rounding


def _base_scales(form: Form, x: dict, w: np.ndarray) -> dict[str, np.ndarray] | None:
    """Per curve, the smallest used value of every variable a power-sum law raises to a
    power (``None`` for other laws): see :func:`run_batch`."""
    ps = _fast.power_sum(form)
    if ps is None:
        return None
    bases = {t.variable for t in ps.terms if t.variable is not None}
    scales = {}
    for v in bases:
        a = np.asarray(x[v], dtype=np.float64)
        used = (w > 0) & np.isfinite(a) & (a > 0)
        r = np.min(np.where(used, a, np.inf), axis=-1)
        # far outside [1e-100, 1e100], r^e could overflow or underflow when scaling back: keep x
        scales[v] = np.where(np.isfinite(r) & (r > 1e-100) & (r < 1e100), r, 1.0)
    return scales


def _rescale_coefficients(form: Form, out: dict, scales: dict, x: dict) -> None:
    """Coefficients fitted against ``x / r`` back to ``x``: ``c x^-e = c' (x / r)^-e``, so ``c = c' r^e``."""
    for t in _fast.power_sum(form).terms:
        if t.variable is None:
            continue
        if isinstance(t.exponent, str):
            e = out["params"][t.exponent]
        elif isinstance(t.exponent, _fast.FromData):
            e = np.asarray(x[t.exponent.variable], dtype=np.float64)[:, 0]
        else:
            e = t.exponent
        with np.errstate(over="ignore", invalid="ignore"):
            out["params"][t.coefficient] = out["params"][t.coefficient] * scales[t.variable] ** e


def run_batch(spec: Spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    """Run the jitted core in float64 on ``m`` curves; returns numpy arrays.

    Curves are optimised in lock step, so one slow curve holds up the batch. The first
    pass stops every curve after ``FAST_PASS_ITER`` iterations (on noisy offset curves
    98% converge within 5, 99.4% within 6); curves still running continue from where they stopped
    in a second, small batch with the rest of the ``max_iter`` budget.

    Power-sum laws (``sum_j c_j x^-e_j``) are fitted against ``x / r``, ``r`` each curve's
    smallest used ``x``, and their coefficients scaled back (``c = c' r^e``): the same law
    and optimum, but each fitted coefficient is its term's value at the first point, of the
    size of ``y``, instead of ``c ~ r^e`` that grows with the exponent. The optimiser then
    follows the valley of a term that sharpens onto the first point (exponent running to its
    bound) in a few steps instead of hundreds.
    """
    scales = _base_scales(spec.form, x, w)
    if scales is None:
        return _run_unit_free(spec, x, y, w, u_starts)
    xs = {k: (v / scales[k][:, None] if k in scales else v) for k, v in x.items()}
    out = _run_unit_free(spec, xs, y, w, u_starts)
    _rescale_coefficients(spec.form, out, scales, x)
    return out


def _run_unit_free(spec: Spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    form = spec.form
    if form.linear and form.scalable:
        # Unit-free: fit y / s (s = the curve's largest used |y|) and scale the linear
        # parameters back, so statuses and intervals never depend on the units of y.
        used = w > 0
        s = np.max(np.where(used, np.abs(y), 0.0), axis=-1)
        s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
        x = {k: (v / s[:, None] if k in form.y_scaled_variables else v) for k, v in x.items()}
        out = _run_two_pass(spec, x, y / s[:, None], w, u_starts)
        for k in form.linear:
            out["params"][k] = out["params"][k] * s
        if not spec.objective.log:
            out["value"] = out["value"] * s**2
        return out
    return _run_two_pass(spec, x, y, w, u_starts)


def _run_two_pass(spec: Spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    fast = dataclasses.replace(spec, max_iter=min(spec.max_iter, FAST_PASS_ITER))
    out = _run_padded(fast, x, y, w, u_starts)
    todo = np.flatnonzero((out["n_iter"] >= fast.max_iter) & ~out["converged"] & np.isfinite(out["value"]))
    if todo.size and spec.max_iter > fast.max_iter:
        rest = dataclasses.replace(spec, max_iter=spec.max_iter - fast.max_iter, refine=1)
        more = _run_padded(rest, {k: v[todo] for k, v in x.items()}, y[todo], w[todo], out["u"][todo][:, None, :])
        # The second pass starts where the first stopped, so it ends no higher, up to
        # rounding: a tie within rounding is its result (it has the convergence verdict).
        better = more["value"] <= out["value"][todo] * (1.0 + SAME_VALUE_RTOL)
        rows = todo[better]
        for k in ("u", "value", "converged"):
            out[k][rows] = more[k][better]
        for k in out["params"]:
            out["params"][k][rows] = more["params"][k][better]
        out["n_iter"][todo] += more["n_iter"]
        out["converged"][todo[~better]] = False
    return out


def _run_padded(spec: Spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    """One call of the compiled core, with curves and points padded to shared sizes.

    Padding rows repeat the first curve; padding points get weight 0 (they change
    nothing). Nearby batch sizes and point counts then reuse one compiled program.
    """
    if _fast.supports(spec):
        return _fast.fit_batch(spec, x, y, w, np.asarray(u_starts))
    import jax
    import jax.numpy as jnp

    ensure_compilation_cache()
    m, n = y.shape
    mb, nb = _bucket(m), _bucket_points(n, m)

    def pad(a, fill=None):
        a = np.asarray(a)
        if a.ndim >= 2 and a.shape[1] == n and nb > n and fill is not None:
            a = np.concatenate([a, np.full((a.shape[0], nb - n) + a.shape[2:], fill, dtype=a.dtype)], axis=1)
        if mb > m:
            a = np.concatenate([a, np.broadcast_to(a[:1], (mb - m,) + a.shape[1:])])
        return a

    with enable_x64():
        xd = {k: jnp.asarray(pad(v, 1.0)) for k, v in x.items()}
        out = compiled().fit_batch(spec, xd, jnp.asarray(pad(y, 1.0)), jnp.asarray(pad(w, 0.0)), jnp.asarray(pad(u_starts)))
        out = jax.tree_util.tree_map(lambda a: np.array(a)[:m], out)
    return {
        "u": out.u,
        "params": {k: np.asarray(out.params[k], dtype=np.float64) for k in spec.form.params},
        "value": out.value,
        "n_iter": out.n_iter,
        "converged": out.converged,
        "start": out.start,
    }


def bootstrap_fits(spec: Spec, data: Prepared, u_best: np.ndarray, u_starts: np.ndarray, n_boot: int, key) -> dict:
    """Refit ``n_boot`` resamples of every curve's points in one batched call.

    A resample draws ``n_eff`` points with replacement among the curve's valid points;
    the draw counts become frequency weights. Starts: the full-data optimum plus the grid.
    """
    import jax
    import jax.numpy as jnp

    m, n = data.y.shape
    valid = data.w > 0
    n_eff = valid.sum(axis=-1)
    keys = jax.random.split(key, m)
    logits = np.where(valid, 0.0, -np.inf)

    def counts_for(k, lg, ne):
        draws = jax.random.categorical(k, lg, shape=(n_boot, n))
        use = (jnp.arange(n) < ne).astype(jnp.float32)
        return jax.vmap(lambda d: jnp.zeros(n, jnp.float32).at[d].add(use))(draws)

    counts = np.asarray(jax.vmap(counts_for)(keys, jnp.asarray(logits, jnp.float32), jnp.asarray(n_eff)), dtype=np.float64)
    wb = (data.w[:, None, :] * counts).reshape(m * n_boot, n)
    yb = np.repeat(data.y, n_boot, axis=0)
    xb = {k: np.repeat(v, n_boot, axis=0) for k, v in data.x.items()}
    ub = np.concatenate([u_best[:, None, :], u_starts], axis=1)
    ub = np.repeat(ub, n_boot, axis=0)
    out = run_batch(spec, xb, yb, wb, ub)
    params = {k: v.reshape(m, n_boot).T.copy() for k, v in out["params"].items()}  # (B, m)
    failed = ~np.isfinite(out["value"]).reshape(m, n_boot).T
    for v in params.values():
        v[failed] = np.nan
    return {"params": params, "counts": counts}


def natural_nonlinear(form: Form, u: np.ndarray) -> dict[str, np.ndarray]:
    """Optimiser coordinates -> natural values of the nonlinear parameters (numpy)."""
    return to_natural(form, np.asarray(u, dtype=np.float64))
