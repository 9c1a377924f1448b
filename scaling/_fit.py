"""``scaling.fit``: multi-start, batched, variable-projection fits of scaling laws."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from . import _forms
from ._forms import Form
from ._optimize import OBJECTIVES, Spec, fit_batch, to_natural, to_unconstrained, transform_kinds
from ._result import FitResult
from ._validate import Prepared, check_choice, prepare
from ._x64 import enable_x64


def as_key(key):
    """A JAX PRNG key from a key or an integer seed (``None`` stays ``None``)."""
    if key is None:
        return None
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key


def fit(
    form: Form | str,
    x,
    y,
    *,
    objective: str = "log_mse",
    delta: float = 1e-3,
    asymmetry: float = 10.0,
    weights=None,
    bootstrap: int = 0,
    key=None,
    fixed: Mapping[str, float] | None = None,
    starts: Mapping[str, np.ndarray] | None = None,
    n_random: int = 0,
    refine: int | None = None,
    optimizer: str = "lm",
    max_iter: int = 200,
    gtol: float = 1e-8,
    skipna: bool = False,
    errors: str = "raise",
) -> FitResult:
    r"""Fit a scaling law to one curve or to a whole batch of curves at once.

    Nonlinear parameters (exponents, break points) start from a grid (plus optional
    random draws); every start is scored, the ``refine`` best are refined (see
    ``optimizer``) in one batched, jitted call, and the best optimum is kept. Parameters the law is linear in (``L_inf``, ``A``, ``E``...)
    are solved in closed form for given exponents (variable projection), which turns
    e.g. the ill-conditioned 5-parameter Chinchilla problem into a 2-parameter one.
    Computation is in float64 whatever the caller's JAX setting.

    Parameters
    ----------
    form : str or Form
        ``"power"``, ``"offset"``, ``"variance_limited"``, ``"broken"``, ``"chinchilla"``,
        ``"kaplan"``, any name registered with :func:`scaling.forms.register`, or a
        :class:`~scaling.forms.Form`.
    x : array_like or mapping
        Shape ``(n,)`` or broadcastable to ``y``; for two-variable forms a mapping
        ``{"N": ..., "D": ...}``. Must be > 0.
    y : array_like, shape (..., n)
        Losses; leading axes are independent curves, all fitted in one call.
    objective : {"log_mse", "log_huber", "mse", "asymmetric"}
        Summed (never averaged) loss of the residuals ``r = log(yhat) - log(y)``
        (``r = yhat - y`` for ``"mse"``): ``r^2``; Huber with ``delta`` (the Chinchilla
        recipe, ``delta=1e-3``); ``r^2`` with over-predictions (``r > 0``) weighted by
        ``asymmetry``, which pulls the fit towards the lower envelope of the points.
    delta : float
        Huber threshold in log units, for ``"log_huber"``.
    asymmetry : float
        Weight of over-predictions relative to under-predictions, for ``"asymmetric"``.
    weights : array_like, optional
        Per-point weights broadcastable to ``y``; each point's term is multiplied by its
        weight, so integer weights act as repeat counts (frequency weights) and
        ``1/sigma_i^2`` (log-space sigma for log objectives) gives inverse-variance
        weighting. Zero weight drops a point.
    bootstrap : int
        Number of bootstrap resamples of the points (fitted in one batched call) for
        percentile intervals via :meth:`FitResult.ci`. Needs ``key``.
    key : jax PRNG key or int
        Randomness for bootstrap resamples and random starts.
    fixed : mapping, optional
        Parameters held at given values, e.g. ``{"alpha": 1.0}``.
    starts : mapping, optional
        Start grid values replacing the form's grid for the named nonlinear parameters.
    n_random : int
        Extra random starts, uniform (in optimiser coordinates) over the grid's range.
    refine : int, optional
        How many of the best-scoring starts are refined; ``0`` refines every start.
        Default: 1 when the form has one nonlinear parameter (its profile is scanned
        densely by the start grid), else 4 per nonlinear parameter.
    optimizer : {"lm", "lbfgs"}
        Local refinement of the best starts. ``"lm"`` (default): Levenberg-Marquardt on
        all parameters of the objective (IRLS curvature for Huber/asymmetric losses).
        ``"lbfgs"``: optax L-BFGS on the projected objective first (the Chinchilla recipe),
        then the same Levenberg-Marquardt polish.
    max_iter, gtol : int, float
        Iteration limit per optimiser and gradient tolerance (scaled by
        ``max(1, objective)``).
    skipna : bool
        Treat NaN/inf points as missing (weight 0) instead of raising.
    errors : {"raise", "ignore"}
        Bad curves raise (default) or, with ``"ignore"``, give NaN parameters with status
        ``"invalid"`` and a message in :attr:`FitResult.messages`.

    Returns
    -------
    FitResult
        ``.params`` (name -> array of the batch shape), ``.predict(x)``, ``.objective``,
        ``.converged``, ``.status``, and ``.ci(level)`` when bootstrapped.

    Raises
    ------
    ValueError
        NaN/inf input, ``x <= 0``, ``y <= 0`` with a log objective, fewer points than
        parameters + 1, a constant curve, mismatched shapes, unknown form or objective.

    Examples
    --------
    >>> import numpy as np, scaling
    >>> D = np.geomspace(1e2, 1e5, 12)
    >>> loss = 0.1 + 3.0 * D ** -0.45
    >>> res = scaling.fit("offset", D, loss)
    >>> {k: round(float(v), 3) for k, v in res.params.items()}
    {'L_inf': 0.1, 'A': 3.0, 'alpha': 0.45}
    >>> res.status
    'converged'

    References
    ----------
    Hoffmann et al. (2022), "Training compute-optimal LLMs", Appendix D.2 (Huber recipe);
    Besiroglu et al. (2024), "Chinchilla scaling: a replication attempt" (summed loss).
    """
    form = _forms.get(form)
    if fixed:
        form = form.fix(**dict(fixed))
    check_choice("objective", objective, OBJECTIVES)
    check_choice("errors", errors, ("raise", "ignore"))
    check_choice("optimizer", optimizer, ("lm", "lbfgs"))
    for name, v in (("delta", delta), ("asymmetry", asymmetry), ("gtol", gtol)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    if refine is None:
        refine = 1 if len(form.nonlinear) <= 1 else 4 * len(form.nonlinear)
    for name, v in (("bootstrap", bootstrap), ("n_random", n_random), ("refine", refine)):
        if not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    key = as_key(key)
    if (bootstrap or n_random) and key is None:
        raise ValueError(
            "bootstrap and n_random draw random numbers: pass an explicit key, e.g. key=jax.random.key(0) or key=0"
        )
    data = prepare(form, x, y, weights, log_objective=objective != "mse", skipna=skipna, errors=errors)
    spec = Spec(
        form=form,
        objective=objective,
        delta=float(delta),
        asymmetry=float(asymmetry),
        max_iter=int(max_iter),
        gtol=float(gtol),
        refine=int(refine),
        # Inner Gauss-Newton/IRLS steps: none for mse (exact) and log_mse (relative least
        # squares suffices for the search; the joint polish makes it exact); reweighted
        # objectives need them to find the right basin.
        n_gn={"mse": 0, "log_mse": 0, "asymmetric": 4, "log_huber": 8}[objective],
        optimizer=optimizer,
    )
    key_starts, key_boot = jax.random.split(key) if key is not None else (None, None)
    u_starts, grids = start_points(form, data, starts, n_random, key_starts)
    best = run_batch(spec, data.x, data.y, data.w, u_starts)
    boot = None
    if bootstrap:
        boot = bootstrap_fits(spec, data, best["u"], u_starts, int(bootstrap), key_boot)
    return FitResult.build(spec, data, best, grids, u_starts, boot)


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


FAST_PASS_ITER = 30


def run_batch(spec: Spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    """Run the jitted core in float64 on ``m`` curves; returns numpy arrays.

    Curves are optimised in lock step, so one slow curve holds up the batch. The first
    pass stops every curve after ``FAST_PASS_ITER`` iterations (99% of curves converge in
    far fewer); curves still running continue from where they stopped in a second, small
    batch with the rest of the ``max_iter`` budget.
    """
    fast = dataclasses.replace(spec, max_iter=min(spec.max_iter, FAST_PASS_ITER))
    out = _run_padded(fast, x, y, w, u_starts)
    todo = np.flatnonzero((out["n_iter"] >= fast.max_iter) & ~out["converged"] & np.isfinite(out["value"]))
    if todo.size and spec.max_iter > fast.max_iter:
        rest = dataclasses.replace(spec, max_iter=spec.max_iter - fast.max_iter, refine=1)
        more = _run_padded(rest, {k: v[todo] for k, v in x.items()}, y[todo], w[todo], out["u"][todo][:, None, :])
        better = more["value"] <= out["value"][todo]
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
    m, n = y.shape
    mb, nb = _bucket(m), _bucket(n, halves=2)

    def pad(a, fill=None):
        a = np.asarray(a)
        if a.ndim >= 2 and a.shape[1] == n and nb > n and fill is not None:
            a = np.concatenate([a, np.full((a.shape[0], nb - n) + a.shape[2:], fill, dtype=a.dtype)], axis=1)
        if mb > m:
            a = np.concatenate([a, np.broadcast_to(a[:1], (mb - m,) + a.shape[1:])])
        return a

    with enable_x64():
        xd = {k: jnp.asarray(pad(v, 1.0)) for k, v in x.items()}
        if spec.form.variables == ("x",):
            xd = xd["x"]
        out = fit_batch(spec, xd, jnp.asarray(pad(y, 1.0)), jnp.asarray(pad(w, 0.0)), jnp.asarray(pad(u_starts)))
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
    with enable_x64():
        nat = to_natural(form, jnp.asarray(u))
        return {k: np.asarray(v) for k, v in nat.items()}


__all__ = ["fit", "as_key", "transform_kinds"]
