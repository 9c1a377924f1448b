"""Batched multi-start fitting core, all pure functions under jit/vmap.

Pipeline for each curve (``fit_batch`` flattens curves x starts into one vmapped batch):

1. **Score the starts by variable projection.** For the nonlinear parameters of each start
   (exponents, breaks) the linear ones (``L_inf``, ``A``, ``E``...) are solved in closed
   form: an exact small non-negative least-squares solve (``mse``; relative least squares
   for ``log_mse``), plus damped Gauss-Newton/IRLS steps for reweighted objectives. Only
   exponents need a start grid, and each start is scored at its best linear parameters.
2. Optionally (``optimizer="lbfgs"``) refine the best starts with optax L-BFGS on the
   projected objective: the classic recipe.
3. **Damped Newton on all parameters** of the true objective from the best starts: exact
   Hessian (Gauss-Newton/IRLS where it is not positive definite), Levenberg-Marquardt
   damping scaled by the curvature diagonal (invariant to parameter scales), projected
   onto the bounds of the linear parameters. Quadratic convergence keeps the lock-stepped
   batch short, where a line-search method waits for its slowest lane.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from . import _unrolled
from ._forms import Form, evaluate
from ._spec import _IDENTITY, _LOG, _LOGIT, _NEGLOG, FTOL, XTOL, Spec, to_unconstrained, transform_kinds

_TINY = 1e-300


# ---------------------------------------------------------------- transforms


def to_natural(form: Form, u):
    """Unconstrained coordinates ``u (p,)`` -> dict of natural nonlinear parameters."""
    out = {}
    for i, (p, (kind, lo, hi)) in enumerate(zip(form.nonlinear, transform_kinds(form))):
        ui = u[..., i]
        if kind == _LOGIT:
            out[p] = lo + (hi - lo) * jax.nn.sigmoid(ui)
        elif kind == _LOG:
            out[p] = lo + jnp.exp(jnp.clip(ui, -700.0, 700.0))
        elif kind == _NEGLOG:
            out[p] = hi - jnp.exp(jnp.clip(ui, -700.0, 700.0))
        else:
            out[p] = ui
    return out


# ---------------------------------------------------------------- objectives


def loss(spec: Spec, yhat, y, w):
    """Summed (never averaged) objective of one curve."""
    return spec.objective.loss(spec.objective.residual(yhat, y), w)


# ---------------------------------------------------------------- inner solve


@functools.lru_cache(maxsize=64)
def _active_set_masks(nonneg: tuple[bool, ...]) -> np.ndarray:
    """Every support a non-negative least-squares solution can have (all-zero excluded)."""
    choices = [(1.0,) if not nn else (0.0, 1.0) for nn in nonneg]
    masks = [m for m in itertools.product(*choices) if any(m)]
    return np.asarray(masks, dtype=np.float64).reshape(len(masks), len(nonneg))


def min_cholesky_pivot(G):
    """Smallest pivot of an unrolled Cholesky of ``G (..., k, k)`` relative to its diagonal.

    Positive (above rounding) iff ``G`` is numerically positive definite.
    """
    _, piv = _unrolled_cholesky(G)
    scale = jnp.max(jnp.abs(jnp.diagonal(G, axis1=-2, axis2=-1)), axis=-1)
    return jnp.min(jnp.stack(piv, axis=-1), axis=-1) / jnp.maximum(scale, 1e-300)


def _unrolled_cholesky(G):
    """Lower factor ``L[i][j]`` (nested lists of batch arrays) and the pivots before the sqrt."""
    return _unrolled.cholesky(lambda i, j: G[..., i, j], G.shape[-1], jnp)


def spd_solve(G, h):
    """Solve ``G c = h`` for small symmetric positive-definite ``G (..., k, k)``.

    An unrolled Cholesky factorisation (:mod:`scaling._unrolled`): elementwise over the batch
    axes, so it vectorises under vmap and compiles to a few dozen fused operations, where a
    LAPACK call per tiny matrix would dominate both compile and run time.
    """
    L, _ = _unrolled_cholesky(G)
    return jnp.stack(_unrolled.solve(L, [h[..., i] for i in range(G.shape[-1])]), axis=-1)


def small_nnls(B, w, t, nonneg: tuple[bool, ...]):
    """argmin_c sum_i w_i (B c - t)_i^2 with c_j >= 0 where ``nonneg[j]``, for k <= ~4.

    Exact: the optimum is the unconstrained solution on its own support, and every
    other feasible support solution is no better, so enumerate supports and keep the
    best feasible one. Columns are scaled to unit weighted norm first.
    """
    k = B.shape[-1]
    masks = jnp.asarray(_active_set_masks(nonneg))  # (M, k)
    scale = jnp.sqrt(jnp.sum(w[:, None] * B**2, axis=0))
    scale = jnp.where(scale > 0, scale, 1.0)
    Bs = B / scale
    # Elementwise products and sums, not matmuls: under vmap these tiny (n, k) products
    # fuse into one loop, where batched dot_generals cost a library call per curve.
    wB = w[:, None] * Bs
    G = jnp.sum(Bs[:, :, None] * wB[:, None, :], axis=0)
    h = jnp.sum(wB * t[:, None], axis=0)
    eye = jnp.eye(k)
    Gm = G[None] * masks[:, :, None] * masks[:, None, :] + (1.0 - masks)[:, :, None] * eye + 1e-13 * eye
    c = spd_solve(Gm, h[None] * masks) * masks
    Gc = jnp.sum(G[None] * c[:, None, :], axis=-1)
    quad = jnp.sum(c * (Gc - 2.0 * h[None]), axis=-1)
    nn = jnp.asarray(nonneg)
    feasible = jnp.all((c >= -1e-10) | ~nn, axis=-1)
    best = jnp.argmin(jnp.where(feasible, quad, jnp.inf))
    cb = jnp.sum(jnp.where((jnp.arange(masks.shape[0]) == best)[:, None], c, 0.0), axis=0)  # no gather
    cb = jnp.where(nn, jnp.maximum(cb, 0.0), cb)
    return cb / scale


def design(form: Form, theta: dict, x):
    """The law as an affine function of its linear parameters: ``model = B @ c + b0``.

    Returns ``B (n, k)`` and ``b0 (n,)``; ``b0`` is zero for the built-in forms and
    nonzero e.g. when a linear parameter is held fixed (profiles).
    """
    k = len(form.linear)

    def model_c(c):
        return evaluate(form, {**theta, **{p: c[i] for i, p in enumerate(form.linear)}}, x)

    zeros = jnp.zeros(k)
    return jax.jacfwd(model_c)(zeros), model_c(zeros)


def block_nnls(form: Form, B, w, t, nonneg: tuple[bool, ...]):
    """:func:`small_nnls`, one independent solve per block of ``form.blocks``.

    A block's columns touch only its own points (one experiment of a shared fit), so
    each block is a small problem on the rows where its columns are nonzero.
    """
    if not form.blocks:
        return small_nnls(B, w, t, nonneg)
    index = {p: i for i, p in enumerate(form.linear)}
    c = jnp.zeros(B.shape[-1])
    for block in form.blocks:
        cols = [index[p] for p in block]
        Bb = B[:, cols]
        rows = jnp.any(Bb != 0, axis=1).astype(w.dtype)
        cb = small_nnls(Bb, w * rows, t, tuple(nonneg[i] for i in cols))
        c = c.at[jnp.asarray(cols)].set(cb)
    return c


def solve_linear(spec: Spec, theta: dict, x, y, w):
    """Best linear parameters ``c (k,)`` for given nonlinear ``theta``."""
    form = spec.form
    nonneg = tuple(form.bounds[p][0] == 0.0 for p in form.linear)
    B, b0 = design(form, theta, x)
    if not spec.objective.log:
        return block_nnls(form, B, w, y - b0, nonneg)
    # Relative least squares is the small-residual limit of every log objective: with
    # n_gn = 0 it is the whole inner solve (the final joint refinement is exact).
    c = block_nnls(form, B, w / y**2, y - b0, nonneg)
    # Shared fits are refined in the nonlinear parameters only (no joint polish), so their
    # inner solve must be exact for the log objective too: Gauss-Newton steps on log residuals.
    n_gn = spec.objective.n_gn or (6 if form.blocks else 0)
    if n_gn == 0:
        return c
    steps = jnp.asarray([0.0, 1.0, 0.5, 0.25])

    def gauss_newton_step(_, c):
        yhat = jnp.maximum(B @ c + b0, _TINY)
        r = jnp.log(yhat) - jnp.log(y)
        J = B / yhat[:, None]
        c_gn = block_nnls(form, J, w * spec.objective.curvature(r), J @ c - r, nonneg)
        # Damped step: convex combinations of feasible points stay feasible.
        cands = c[None] + steps[:, None] * (c_gn - c)[None]
        vals = jax.vmap(lambda cc: loss(spec, B @ cc + b0, y, w))(cands)
        return cands[jnp.argmin(jnp.where(jnp.isfinite(vals), vals, jnp.inf))]

    # A rolled loop keeps the compiled program small.
    return jax.lax.fori_loop(0, n_gn, gauss_newton_step, c)


def full_params(spec: Spec, u, x, y, w) -> dict:
    """All parameters: nonlinear from ``u``, linear solved in closed form (``x`` a dict)."""
    theta = to_natural(spec.form, u)
    if spec.form.linear:
        c = solve_linear(spec, theta, x, y, w)
        theta = {**theta, **{p: c[i] for i, p in enumerate(spec.form.linear)}}
    return theta


def projected_objective(spec: Spec, u, x, y, w):
    p = full_params(spec, u, x, y, w)
    return loss(spec, evaluate(spec.form, p, x), y, w)


# ---------------------------------------------------------------- outer solve


class Minimum(NamedTuple):
    u: jax.Array
    value: jax.Array
    n_iter: jax.Array
    converged: jax.Array


def minimize_lbfgs(f, u0, *, max_iter: int, gtol: float) -> Minimum:
    """optax L-BFGS (zoom line search) from one start, stopping on a scaled gradient test.

    Converged: ``max|grad| <= gtol * max(1, |f|)``, or the line search can no longer
    decrease ``f`` while ``max|grad| <= sqrt(gtol) * max(1, |f|)`` (the floating-point
    floor of the objective has been reached).
    """
    opt = optax.lbfgs(
        memory_size=10,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=15, initial_guess_strategy="one"),
    )
    value_and_grad = optax.value_and_grad_from_state(f)
    v0, g0 = jax.value_and_grad(f)(u0)

    def gnorm(g):
        return jnp.max(jnp.abs(g)) if g.size else jnp.asarray(0.0)

    def small(g, v, tol):
        return gnorm(g) <= tol * jnp.maximum(1.0, jnp.abs(v))

    def cond(carry):
        return ~carry[4]

    def body(carry):
        u, state, _, it, _, _ = carry
        value, grad = value_and_grad(u, state=state)
        updates, state = opt.update(grad, state, u, value=value, grad=grad, value_fn=f)
        u_new = optax.apply_updates(u, updates)
        v_new = otu.tree_get(state, "value")
        g_new = otu.tree_get(state, "grad")
        stalled = ~(v_new < value)
        conv = small(g_new, v_new, gtol) | (stalled & small(g_new, v_new, math.sqrt(gtol)))
        # A failed line search may step to a worse point: keep the better one.
        keep_old = ~(v_new <= value)
        u_out = jnp.where(keep_old, u, u_new)
        v_out = jnp.where(keep_old, value, v_new)
        done = conv | stalled | (it + 1 >= max_iter) | ~jnp.isfinite(v_new)
        return u_out, state, v_out, it + 1, done, conv

    state0 = opt.init(u0)
    conv0 = small(g0, v0, gtol)
    done0 = conv0 | ~jnp.isfinite(v0)
    u, _, v, it, _, conv = jax.lax.while_loop(cond, body, (u0, state0, v0, jnp.asarray(0), done0, conv0))
    return Minimum(u, v, it, conv & jnp.isfinite(v))


class BatchFit(NamedTuple):
    u: jax.Array  # (m, p) unconstrained nonlinear parameters
    params: dict  # name -> (m,)
    value: jax.Array  # (m,)
    n_iter: jax.Array
    converged: jax.Array
    start: jax.Array  # index of the start the best optimum came from


def joint_coordinates(spec: Spec, u, params: dict):
    """Coordinates ``z`` of all parameters for the joint refinement, and the way back.

    Nonlinear parameters keep their unconstrained coordinates; linear ones stay natural,
    with ``nonneg`` marking those bounded below by 0 (kept feasible by projection).
    """
    form = spec.form
    p = len(form.nonlinear)
    lin = form.linear
    c = jnp.stack([params[k] for k in lin]) if lin else jnp.zeros(0)
    z0 = jnp.concatenate([u, c])
    nonneg = jnp.asarray([False] * p + [form.bounds[k][0] == 0.0 for k in lin], dtype=bool)

    def to_params(z):
        return {**to_natural(form, z[:p]), **{k: z[p + i] for i, k in enumerate(lin)}}

    return z0, nonneg, to_params


def damped_newton(spec: Spec, objective_fn, residual_fn, z0, nonneg, w) -> Minimum:
    """Minimise ``objective_fn(z)`` by Newton steps with Levenberg-Marquardt damping.

    The curvature is the exact Hessian where it is positive definite, else the
    Gauss-Newton (IRLS) matrix ``J^T W J`` from ``residual_fn``. Exact curvature matters:
    on noisy curves the residual term of the Hessian is as large as ``J^T J``, and plain
    Gauss-Newton then zig-zags for hundreds of iterations. Damping is scaled by the
    curvature diagonal (Marquardt: invariant to the scale of each parameter) and updated
    from the ratio of actual to predicted decrease (Nielsen 1999). Coordinates marked
    ``nonneg`` are clipped at 0 and held there while the gradient pushes them below.

    Converged: the projected gradient satisfies ``max|g| <= gtol * max(1, objective)``;
    or an accepted step is below ``XTOL`` relative; or the objective stops decreasing (by
    ``FTOL`` relative) with the gradient within ``sqrt(gtol)``.

    A step that would take ``nonneg`` coordinates below 0 puts them at 0 and solves the
    damped system again for the others with them there (a projected Newton step), so fits
    whose optimum lies on a bound land on it instead of crawling towards it.
    """
    value_and_grad = jax.value_and_grad(objective_fn)
    hessian = jax.hessian(objective_fn)

    def evaluate(z):
        f, g = value_and_grad(z)
        H = hessian(z)
        J, r = jax.jacfwd(lambda v: (residual_fn(v),) * 2, has_aux=True)(z)
        gauss_newton = J.T @ ((w * spec.objective.curvature(r))[:, None] * J)
        return f, g, jnp.where(min_cholesky_pivot(H) > 1e-12, H, gauss_newton)

    def held(z, g):
        return nonneg & (z <= 0) & (g > 0)

    def gsmall(z, g, f, tol):
        gp = jnp.where(held(z, g), 0.0, g)
        return jnp.max(jnp.abs(gp), initial=0.0) <= tol * jnp.maximum(1.0, jnp.abs(f))

    eye = jnp.eye(z0.shape[0])

    def body(carry):
        z, f, g, C, lam, nu, it, _, _, n_flat = carry
        fix = held(z, g)
        d = jnp.where(jnp.diagonal(C) > 0, jnp.diagonal(C), 1.0)
        keep = (~fix).astype(C.dtype)
        Ck = C * keep[:, None] * keep[None, :]
        step = -spd_solve(Ck + lam * d * eye + jnp.diag(1.0 - keep), g * keep)
        # Coordinates the step takes below 0 go to 0 exactly, and the others are solved
        # again with them there (clipping alone leaves the others where the unclipped step
        # put them: a poor point, rejected, and a crawl onto the bound).
        cross = nonneg & (z + step < 0) & ~fix
        keep2 = (~(cross | fix)).astype(C.dtype)
        dza = jnp.where(cross, -z, 0.0)
        C2 = C * keep2[:, None] * keep2[None, :]
        step2 = -spd_solve(C2 + lam * d * eye + jnp.diag(1.0 - keep2), (g + C @ dza) * keep2) + dza
        step = jnp.where(jnp.any(cross), step2, step)
        zn = jnp.where(nonneg, jnp.maximum(z + step, 0.0), z + step)
        dz = zn - z
        pred = -(g @ dz + 0.5 * dz @ (C @ dz))  # = dz Ck dz when nothing crossed (dz = 0 where held)
        fn, gn, Cn = evaluate(zn)
        accept = jnp.isfinite(fn) & (fn < f)
        rho = (f - fn) / jnp.where(pred > 0, pred, jnp.inf)
        lam2 = jnp.where(accept, lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), lam * nu)
        lam2 = jnp.maximum(lam2, 1e-15)
        nu2 = jnp.where(accept, 2.0, nu * 2.0)
        z2 = jnp.where(accept, zn, z)
        f2, g2, C2 = (jnp.where(accept, a, b) for a, b in ((fn, f), (gn, g), (Cn, C)))
        moved = jnp.max(jnp.abs(dz), initial=0.0)
        tiny_step = accept & (moved <= XTOL * (1.0 + jnp.max(jnp.abs(z), initial=0.0)))
        # Accepted steps that no longer lower the objective beyond rounding: two in a row
        # mean the floor is reached, or the optimum runs off towards a bound. (Rejected
        # steps are normal while the damping grows; endless rejection hits lam > 1e16.)
        flat = accept & ~(fn < f * (1.0 - FTOL))
        n_flat = jnp.where(flat, n_flat + 1, 0)
        stalled = (lam2 > 1e16) | (n_flat >= 2)
        conv = gsmall(z2, g2, f2, spec.gtol) | tiny_step | (stalled & gsmall(z2, g2, f2, math.sqrt(spec.gtol)))
        done = conv | stalled | (it + 1 >= spec.max_iter)
        return z2, f2, g2, C2, lam2, nu2, it + 1, done, conv, n_flat

    f0, g0, C0 = evaluate(z0)
    conv0 = gsmall(z0, g0, f0, spec.gtol)
    init = (z0, f0, g0, C0, jnp.asarray(1e-3), jnp.asarray(2.0), jnp.asarray(0), conv0 | ~jnp.isfinite(f0), conv0,
            jnp.asarray(0))
    z, f, *_, it, _, conv, _ = jax.lax.while_loop(lambda c: ~c[7], body, init)
    return Minimum(z, f, it, conv & jnp.isfinite(f))


@functools.partial(jax.jit, static_argnames=("spec",))
def fit_batch(spec: Spec, x, y, w, u_starts) -> BatchFit:
    """Fit ``m`` curves: ``x`` dict of (m, n), ``y, w (m, n)``, ``u_starts (m, S, p)``.

    Curves x starts are flattened into one vmapped batch: nested vmaps of the optimisers'
    while loops multiply tracing and compile time.
    """
    m, S, p = u_starts.shape

    def phi(u, xc, yc, wc):
        return projected_objective(spec, u, xc, yc, wc)

    def rows(a, r):  # repeat per-curve data for r starts each
        return jax.tree_util.tree_map(lambda v: jnp.repeat(v, r, axis=0), a)

    if p == 0 or S == 1:
        R, idx = 1, jnp.zeros((m, 1), jnp.int32)
    else:
        f0 = jax.vmap(phi)(u_starts.reshape(m * S, p), rows(x, S), rows(y, S), rows(w, S)).reshape(m, S)
        f0 = jnp.where(jnp.isfinite(f0), f0, jnp.inf)
        R = min(spec.refine, S) if spec.refine > 0 else S
        idx = jnp.argsort(f0, axis=1)[:, :R]  # (m, R)
    u0 = jnp.take_along_axis(u_starts, idx[..., None], axis=1).reshape(m * R, p)
    xr, yr, wr = rows(x, R), rows(y, R), rows(w, R)
    n_first = jnp.zeros(m * R, jnp.int32)
    if spec.form.blocks and p > 0:
        # Shared fits (many per-group linear parameters in blocks): a joint Newton step in
        # all parameters compiles for minutes; L-BFGS on the projected objective works in
        # the few nonlinear parameters only, the blocks' linear ones solved in closed form.
        def reduced(u, xc, yc, wc):
            res = minimize_lbfgs(lambda v: phi(v, xc, yc, wc), u, max_iter=spec.max_iter, gtol=spec.gtol)
            return res, full_params(spec, res.u, xc, yc, wc)

        mins, params = jax.vmap(reduced)(u0, xr, yr, wr)
        return _pick_best(mins, params, idx, m, R)
    if p > 0 and spec.optimizer == "lbfgs":

        def refine(u, xc, yc, wc):
            return minimize_lbfgs(lambda v: phi(v, xc, yc, wc), u, max_iter=spec.max_iter, gtol=spec.gtol)

        first = jax.vmap(refine)(u0, xr, yr, wr)
        u0, n_first = first.u, first.n_iter

    def polish(u, xc, yc, wc):
        z0, nonneg, to_params = joint_coordinates(spec, u, full_params(spec, u, xc, yc, wc))

        def r_joint(z):
            return spec.objective.residual(evaluate(spec.form, to_params(z), xc), yc)

        def f_joint(z):
            return spec.objective.loss(r_joint(z), wc)

        res = damped_newton(spec, f_joint, r_joint, z0, nonneg, wc)
        return res._replace(u=res.u[:p]), to_params(res.u)

    mins, params = jax.vmap(polish)(u0, xr, yr, wr)
    return _pick_best(mins._replace(n_iter=mins.n_iter + n_first), params, idx, m, R)


def _pick_best(mins: Minimum, params: dict, idx, m: int, R: int) -> BatchFit:
    """The best of each curve's ``R`` refined starts."""
    vals = jnp.where(jnp.isfinite(mins.value), mins.value, jnp.inf).reshape(m, R)
    b = jnp.argmin(vals, axis=1)
    pick = jnp.arange(m) * R + b

    def take(a):
        return a[pick]

    return BatchFit(
        take(mins.u), jax.tree_util.tree_map(take, params), take(mins.value),
        take(mins.n_iter), take(mins.converged), jnp.take_along_axis(idx, b[:, None], axis=1)[:, 0],
    )


@functools.partial(jax.jit, static_argnames=("spec",))
def batch_residual_jacobian(spec: Spec, params: dict, x, y):
    """d residual / d parameter at given parameters: (m, n, p) for Gauss-Newton covariance."""
    names = spec.form.params

    def one(p, xc, yc):
        def r(vec):
            return spec.objective.residual(evaluate(spec.form, dict(zip(names, vec)), xc), yc)

        vec = jnp.stack([p[k] for k in names])
        return jax.jacfwd(r)(vec), r(vec)

    return jax.vmap(one)(params, x, y)
