"""A float64 NumPy twin of the compiled fitting core for power-sum laws.

The built-in laws ``power``, ``offset``, ``variance_limited`` and ``chinchilla`` are sums
of linear coefficients times powers of the variables, ``y = sum_j c_j x_{v_j}^{-e_j}``
(``x^0 = 1`` for an offset). For these, with a least-squares objective (``log_mse``,
``mse``) and the default Levenberg-Marquardt refinement, :func:`fit_batch` runs the same
algorithm as :func:`scaling._optimize.fit_batch`, step for step: the same start scoring
(variable projection with the same non-negative least-squares solve), the same start
ranking, the same damped Newton iteration with the exact Hessian (Gauss-Newton where it is
not positive definite), the same damping updates and stopping tests. Only the arithmetic
differs (closed-form derivatives instead of automatic differentiation), so optima agree
to rounding. It needs no tracing or compilation (a first fit in a new process takes
milliseconds, as does each fit in a loop over curves of changing lengths), and it drops
curves from the iteration as soon as they converge, where a vectorised ``while_loop``
steps every curve until the slowest is done.

Which forms qualify is a table of :class:`PowerSum` descriptions keyed by the form
object (:func:`power_sum`); other forms, objectives and optimisers use the compiled core.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _forms, _unrolled
from ._cpus import usable_cpus
from ._forms import Form
from ._objectives import LinearMSE, Objective
from ._spec import FTOL, XTOL
from ._spec import to_natural as natural

_TINY = 1e-300

ENABLED = True  # False routes every fit through the compiled core (tests compare the two)
CHUNK = 1 << 16
SCORE_BLOCK = 1 << 21  # points x starts x curves scored at once when curves have their own x
CURVES_PER_THREAD = 1024  # batches of at least twice this are split across threads
MAX_THREADS = 8  # lanes x points per block of the start scoring (keeps blocks in cache)


@dataclasses.dataclass(frozen=True)
class FromData:
    """An exponent read per point from the data variable ``variable`` (a profile's held value)."""

    variable: str


@dataclasses.dataclass(frozen=True)
class Term:
    """One term ``c * x_v^(-e)`` of a power sum.

    ``coefficient`` names the linear parameter ``c``; ``variable`` the variable (``None``
    for a constant term); ``exponent`` the nonlinear parameter ``e`` by name, a fixed
    number, or :class:`FromData`.
    """

    coefficient: str
    variable: str | None = None
    exponent: str | float | FromData = 0.0


@dataclasses.dataclass(frozen=True)
class PowerSum:
    """A law ``y = sum_j c_j x_{v_j}^{-e_j}``: one :class:`Term` per linear parameter."""

    terms: tuple[Term, ...]

    @functools.cached_property
    def data_variables(self) -> frozenset:
        """Variables that hold exponents (used raw, not as bases of powers)."""
        return frozenset(t.exponent.variable for t in self.terms if isinstance(t.exponent, FromData))


_TABLE: dict[Form, PowerSum] = {
    _forms.power: PowerSum((Term("A", "x", "alpha"),)),
    _forms.offset: PowerSum((Term("L_inf"), Term("A", "x", "alpha"))),
    _forms.variance_limited: PowerSum((Term("L_inf"), Term("A", "x", 1.0))),
    _forms.chinchilla: PowerSum((Term("E"), Term("A", "N", "alpha"), Term("B", "D", "beta"))),
}


_DERIVED: dict[Form, PowerSum | None] = {}


def _derived(form: Form) -> PowerSum | None:
    """The power sum of a form derived from one (``fix``: held exponents become numbers, a
    coefficient held at 0 drops its term; ``profile``: the held exponent is read from the data)."""
    kind, base, arg = form.origin
    bps = power_sum(base)
    if bps is None:
        return None
    terms = []
    if kind == "fix":
        fixed = dict(arg)
        for t in bps.terms:
            if t.coefficient in fixed:
                # a term held at zero is absent, unless its exponent would be left unidentified
                if fixed[t.coefficient] != 0.0 or (isinstance(t.exponent, str) and t.exponent not in fixed):
                    return None
                continue
            e = fixed.get(t.exponent, t.exponent) if isinstance(t.exponent, str) else t.exponent
            terms.append(Term(t.coefficient, t.variable, e))
    elif kind == "profile":
        if arg not in base.nonlinear:
            return None
        terms = [Term(t.coefficient, t.variable, FromData("_profile") if t.exponent == arg else t.exponent)
                 for t in bps.terms]
    else:
        return None
    return PowerSum(tuple(terms)) if terms else None


def power_sum(form: Form) -> PowerSum | None:
    """The power-sum description of a built-in form (or one derived from it by ``fix`` or a
    profile), or ``None``."""
    ps = _TABLE.get(form)
    if ps is None and form.origin:
        if form not in _DERIVED:
            if len(_DERIVED) > 1024:
                _DERIVED.clear()
            _DERIVED[form] = _derived(form)
        ps = _DERIVED[form]
    if ps is None:
        return None
    # The table lists terms in the order of form.linear (checked once here, cheaply).
    if tuple(t.coefficient for t in ps.terms) != form.linear:
        return None
    return ps


def supports(spec) -> bool:
    """Whether :func:`fit_batch` computes what the compiled core would for ``spec``."""
    return (
        ENABLED
        and power_sum(spec.form) is not None
        and type(spec.objective) in (Objective, LinearMSE)
        and spec.objective.n_gn == 0
        and spec.optimizer == "lm"
        and not spec.form.blocks
    )


# ---------------------------------------------------------------- small dense algebra


def _spd_solve(G, h):
    """Solve ``G c = h`` (lists of arrays), as :func:`scaling._optimize.spd_solve`."""
    L, _ = _unrolled.cholesky(lambda i, j: G[i][j], len(h), np)
    return _unrolled.solve(L, h)


def _positive_definite(H, rtol: float = 1e-12):
    """Smallest unrolled-Cholesky pivot of ``H (k, k, l)`` above ``rtol`` times the largest
    diagonal entry: :func:`scaling._optimize.min_cholesky_pivot` ``> rtol``."""
    k = H.shape[0]
    _, piv = _unrolled.cholesky(lambda i, j: H[i, j], k, np)
    scale = np.abs(H[np.arange(k), np.arange(k)]).max(axis=0)
    return functools.reduce(np.minimum, piv) / np.maximum(scale, 1e-300) > rtol


def _masks(nonneg: tuple[bool, ...]) -> list[tuple[float, ...]]:
    choices = [(1.0,) if not nn else (0.0, 1.0) for nn in nonneg]
    return [m for m in itertools.product(*choices) if any(m)]


def _nnls(G, h, scale, nonneg):
    """:func:`scaling._optimize.small_nnls` from the Gram entries of unit-scaled columns.

    ``G[i][j]``, ``h[i]``: arrays over lanes; ``scale[i]`` the column norms. Exact: every
    support is solved and the best feasible solution kept. The compiled core solves each
    support as the full system with identity rows outside it; those rows add exact zeros,
    so solving the support's own subsystem gives the same numbers.
    """
    k = len(h)
    masks = _masks(nonneg)
    if len(masks) > 1:
        # The whole support first: where its solution is feasible it is the minimum over
        # every support (up to rounding), so only the other lanes try the smaller supports.
        shape = np.broadcast_shapes(*(np.shape(a) for row in G for a in row), *(np.shape(a) for a in h))
        c = _spd_solve([[G[i][j] + 1e-13 if i == j else G[i][j] for j in range(k)] for i in range(k)], h)
        feasible = functools.reduce(np.logical_and, [c[i] >= -1e-10 for i in range(k) if nonneg[i]])
        feasible = np.broadcast_to(feasible, shape)
        if not feasible.all():
            rest = ~feasible

            def sub(a):
                return np.broadcast_to(a, shape)[rest]

            part = _nnls_supports([[sub(a) for a in row] for row in G], [sub(a) for a in h], nonneg, masks)
            c = [np.array(np.broadcast_to(ci, shape)) for ci in c]
            for ci, pi in zip(c, part):
                ci[rest] = pi
    else:
        c = _nnls_supports(G, h, nonneg, masks)
    return [(np.maximum(ci, 0.0) if nonneg[i] else ci) / scale[i] for i, ci in enumerate(c)]


def _nnls_supports(G, h, nonneg, masks):
    """Every support's solution, the best feasible kept (unscaled, not yet clipped)."""
    k = len(h)
    best_q, best_c = None, None
    for mask in masks:
        on = [i for i in range(k) if mask[i]]
        sub = _spd_solve([[G[i][j] + 1e-13 if i == j else G[i][j] for j in on] for i in on], [h[i] for i in on])
        c = [0.0] * k
        for i, ci in zip(on, sub):
            c[i] = ci
        quad = 0.0
        for i in on:
            Gc = 0.0
            for j in on:
                Gc = Gc + G[i][j] * c[j]
            quad = quad + c[i] * (Gc - 2.0 * h[i])
        feasible = None
        for i in on:
            if nonneg[i]:
                ok = c[i] >= -1e-10
                feasible = ok if feasible is None else feasible & ok
        q = quad if feasible is None else np.where(feasible, quad, np.inf)
        if best_q is None:
            best_q, best_c = q, c
        else:
            # The first of equal supports wins, and a NaN beats numbers, as in argmin.
            better = (q < best_q) | (np.isnan(q) & ~np.isnan(best_q))
            best_q = np.where(better, q, best_q)
            best_c = [np.where(better, a, b) for a, b in zip(c, best_c)]
    return best_c


# ---------------------------------------------------------------- start scoring
#
# Arrays are points-major, ``(n, ...)``: sums over points are sums over the first axis,
# vectorised across curves, where ``(curves, n)`` rows of a dozen points would sum slowly.


def _gram(v, a, b):
    """``sum_n v a b`` for ``v (n, m)`` and columns broadcasting to ``(n, m|1, S)`` -> ``(m, S)``."""
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return (v.sum(axis=0) * (a * b))[:, None]
    if np.ndim(a) == 0:
        a, b = b, a
    if np.ndim(b) == 0:  # a column times a constant (the offset's column of ones): no product array
        if a.shape[1] == 1:
            return np.einsum("nm,ns->ms", v, a[:, 0, :]) * b
        return np.einsum("nm,nms->ms", v, a) * b
    if a.shape[1] > 1 and b.shape[1] > 1:  # both per curve: one pass, no product array
        return np.einsum("nm,nms,nms->ms", v, a, b)
    prod = a * b
    # einsum, not a BLAS matmul: multithreaded BLAS on these thin products is slower
    # than one core, and much slower on a busy machine.
    if prod.shape[1] == 1:  # shared by every curve
        return np.einsum("nm,ns->ms", v, prod[:, 0, :])
    return np.einsum("nm,nms->ms", v, prod)


def _score(spec, ps: PowerSum, logx, y, logy, w, U) -> np.ndarray:
    """Projected objective of every start: data ``(n, m)``, ``U (m, S, p)`` -> ``(m, S)``."""
    form = spec.form
    m, S, _ = U.shape
    n = y.shape[0]
    shared_u = bool(np.all(U == U[:1]))
    theta = natural(form, U[:1] if shared_u else U)  # (1|m, S)
    theta = {k: v[None] for k, v in theta.items()}  # (1, 1|m, S)
    lx = {v: a[:, :, None] for v, a in logx.items()}  # (n, 1|m, 1)
    cols = [1.0 if t.variable is None else np.exp(-_exponent(t, theta, lx) * lx[t.variable]) for t in ps.terms]
    log = spec.objective.log
    v = w / y**2 if log else w  # (n, m)
    k = len(cols)
    nonneg = tuple(form.bounds[q][0] == 0.0 for q in form.linear)
    sq = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            sq[i][j] = sq[j][i] = np.broadcast_to(_gram(v, cols[i], cols[j]), (m, S))
    scale = [np.sqrt(sq[i][i]) for i in range(k)]
    scale = [np.where(sc > 0, sc, 1.0) for sc in scale]
    G = [[sq[i][j] / (scale[i] * scale[j]) for j in range(k)] for i in range(k)]
    vy = v * y
    h = [np.broadcast_to(_gram(vy, cols[i], 1.0), (m, S)) / scale[i] for i in range(k)]
    c = _nnls(G, h, scale, nonneg)  # each (m, S)
    # The objective at (theta, c): the law at every point of every start, in blocks of curves.
    f = np.empty((m, S))
    step = max(1, CHUNK // max(1, S * n))
    for a in range(0, m, step):
        b = min(m, a + step)
        yhat = None
        for ci, col in sorted(zip(c, cols), key=lambda t: np.ndim(t[1]) == 0):  # power terms first
            if np.ndim(col) == 0:
                if yhat is None:
                    yhat = np.broadcast_to(ci[a:b], (n, b - a, S)).copy()
                else:
                    yhat += ci[a:b]
            elif yhat is None:
                yhat = ci[a:b] * (col[:, a:b] if col.shape[1] > 1 else col)
            else:
                yhat += ci[a:b] * (col[:, a:b] if col.shape[1] > 1 else col)
        if log:
            r = np.log(np.maximum(yhat, _TINY, out=yhat), out=yhat)
            r -= logy[:, a:b, None]
        else:
            r = np.subtract(yhat, y[:, a:b, None], out=yhat)
        f[a:b] = np.einsum("nas,nas,na->as", r, r, w[:, a:b])
    return np.where(np.isfinite(f), f, np.inf)


def _score_blocks(spec, ps: PowerSum, logx, y, logy, w, U) -> np.ndarray:
    """:func:`_score` over blocks of curves when every curve has its own x or starts, so
    the ``(n, curves, starts)`` temporaries stay small."""
    m, S, _ = U.shape
    n = y.shape[0]
    own = any(a.shape[1] > 1 for a in logx.values()) or not bool(np.all(U == U[:1]))
    step = max(1, SCORE_BLOCK // max(1, S * n))
    if not own or m <= step:
        return _score(spec, ps, logx, y, logy, w, U)

    def cols(a, lo, hi):
        return None if a is None else a[:, lo:hi]

    return np.concatenate([
        _score(spec, ps, {v: (a if a.shape[1] == 1 else a[:, lo:lo + step]) for v, a in logx.items()},
               cols(y, lo, lo + step), cols(logy, lo, lo + step), cols(w, lo, lo + step), U[lo:lo + step])
        for lo in range(0, m, step)])


def _exponent(t: Term, theta: dict, data: dict):
    """The exponent of term ``t``: a fitted value from ``theta``, a per-point value from
    ``data`` (raw values of :class:`FromData` variables), or a number."""
    if isinstance(t.exponent, str):
        return theta[t.exponent]
    if isinstance(t.exponent, FromData):
        return data[t.exponent.variable]
    return t.exponent


# ---------------------------------------------------------------- damped Newton


class _Lanes:
    """Per-lane data of the refinement, points-major ``(n, l)`` (``(n, 1)`` when shared)."""

    def __init__(self, logx: dict, y, logy, w):
        self.logx, self.y, self.logy, self.w = logx, y, logy, w

    def take(self, keep):
        def sub(a):
            return a if a is None or a.shape[1] == 1 else a[:, keep]

        return _Lanes({v: sub(a) for v, a in self.logx.items()}, sub(self.y), sub(self.logy), sub(self.w))


class _Problem:
    """Objective, gradient and curvature of the joint refinement in ``z = (u, c)``.

    :meth:`evaluate` returns them stacked in one ``(1 + P + P*P, l)`` block (rows ``f``,
    ``g``, ``C``), so the iteration moves whole states with single array operations.
    """

    def __init__(self, spec, ps: PowerSum):
        self.spec, self.ps = spec, ps
        form = spec.form
        self.p = len(form.nonlinear)
        self.P = self.p + len(form.linear)
        self.index = {name: i for i, name in enumerate(form.nonlinear)}
        self.index |= {name: self.p + j for j, name in enumerate(form.linear)}

    def evaluate(self, z, d: _Lanes):
        """Objective ``f``, gradient ``g`` and curvature ``C`` at ``z (P, l)``, stacked.

        Closed forms: for ``y = sum_j c_j x^{-e_j}``, ``dy/dc_j = x^{-e_j}``,
        ``dy/de_j = -c_j log(x) x^{-e_j}``, and the chain rule through ``e = e(u)``.
        Per-lane factors (``c_j``, ``de/du``) are taken out of the sums over points. The
        curvature is the exact Hessian where it is positive definite, else Gauss-Newton,
        as in :func:`scaling._optimize.damped_newton`.
        """
        spec, P = self.spec, self.P
        log = spec.objective.log
        theta, d1, d2 = natural(spec.form, z[: self.p].T, derivatives=True)
        n, l = d.y.shape
        yhat = None
        base: list = [None] * P  # d yhat / d z_i = factor_i * base_i (base None: ones)
        factor = np.ones((P, l))
        exps = []  # (i_exponent, i_coefficient, c, dphi, log x) of every fitted exponent
        for t in self.ps.terms:
            jc = self.index[t.coefficient]
            c = z[jc]
            if t.variable is None:
                term = c
            else:
                lv = d.logx[t.variable]
                phi = np.exp(-_exponent(t, theta, d.logx) * lv)
                term = c * phi
                base[jc] = phi
                if isinstance(t.exponent, str):
                    je = self.index[t.exponent]
                    dphi = lv * phi  # -(d phi / d e)
                    base[je] = dphi
                    factor[je] = -c * d1[t.exponent]
                    exps.append((je, jc, c, dphi, lv, t.exponent))
            yhat = term if yhat is None else yhat + term
        yhat = np.broadcast_to(yhat, (n, l))
        w2 = 2.0 * d.w
        K = np.empty((P, n, l))
        if log:
            pos = yhat > _TINY
            r = np.log(np.maximum(yhat, _TINY))
            r -= d.logy
            inv = np.where(pos, 1.0 / yhat, 0.0)
            for i, bi in enumerate(base):
                if bi is None:
                    K[i] = inv
                else:
                    np.multiply(bi, inv, out=K[i])
            wr2 = w2 * r
            a = w2 - wr2  # d2 log(yhat) = d2 yhat / yhat - d yhat d yhat^T / yhat^2
            b = wr2 * inv
        else:
            r = yhat - d.y
            for i, bi in enumerate(base):
                K[i] = 1.0 if bi is None else bi
            wr2 = w2 * r
            a = w2
            b = wr2
        out = np.empty((1 + P + P * P, l))
        out[0] = 0.5 * np.einsum("nl,nl->l", wr2, r)
        out[1 : 1 + P] = np.einsum("inl,nl->il", K, wr2) * factor
        ff = factor[:, None] * factor[None, :]
        H = np.einsum("inl,jnl,nl->ijl", K, K, a) * ff
        # Second derivatives of yhat: d2/du2 = c (s1^2 log^2 x - s2 log x) phi,
        # d2/du dc = -s1 log(x) phi, with s1, s2 = de/du, d2e/du2.
        for je, jc, c, dphi, lv, name in exps:
            bd = b * dphi
            s_b = bd.sum(axis=0)
            s_bl = np.einsum("nl,n->l", bd, lv[:, 0]) if lv.shape[1] == 1 else np.einsum("nl,nl->l", bd, lv)
            s1, s2 = d1[name], d2[name]
            H[je, je] += c * (s1 * s1 * s_bl - s2 * s_b)
            h = -s1 * s_b
            H[je, jc] += h
            H[jc, je] += h
        pd = _positive_definite(H)
        C = out[1 + P :].reshape(P, P, l)
        if pd.all():
            C[...] = H
        else:
            GN = np.einsum("inl,jnl,nl->ijl", K, K, w2) * ff
            np.copyto(C, np.where(pd, H, GN))
        return out


def _damped_newton(spec, prob: _Problem, z0, nonneg, lanes: _Lanes, max_iter: int):
    """:func:`scaling._optimize.damped_newton` on lanes ``z0 (P, l)``; lanes leave when done.

    The state of every running lane is one column of ``X``: rows ``z (P)``, ``f``,
    ``g (P)``, ``C (P*P)``, ``lam``, ``nu``, ``n_iter``, ``n_flat``.
    Returns ``z (P, l)``, ``f``, ``n_iter``, ``converged`` (all lanes, in order).
    """
    P, l = z0.shape
    gtol, sqrt_gtol = spec.gtol, math.sqrt(spec.gtol)
    nn = np.asarray(nonneg, dtype=bool)[:, None]
    any_nonneg = bool(nn.any())
    diag = np.arange(P)
    iz, i_f, ig, iC = slice(0, P), P, slice(P + 1, 2 * P + 1), slice(2 * P + 1, 2 * P + 1 + P * P)
    i_lam, i_nu, i_it, i_flat = 2 * P + 1 + P * P, 2 * P + 2 + P * P, 2 * P + 3 + P * P, 2 * P + 4 + P * P

    def gradient_size(z, g, f):
        """``max |projected g|`` relative to ``max(1, |f|)``: compared with gtol and sqrt(gtol)."""
        gp = np.where(nn & (z <= 0) & (g > 0), 0.0, g) if any_nonneg else g
        return np.abs(gp).max(axis=0, initial=0.0) / np.maximum(1.0, np.abs(f))

    X = np.empty((i_flat + 1, l))
    X[iz] = z0
    X[P:i_lam] = prob.evaluate(z0, lanes)
    X[i_lam], X[i_nu], X[i_it], X[i_flat] = 1e-3, 2.0, 0.0, 0.0
    conv = gradient_size(z0, X[ig], X[i_f]) <= gtol
    out = X[: i_lam].copy()
    it_out = np.zeros(l, dtype=np.int64)
    conv_out = conv.copy()
    run = ~conv & np.isfinite(X[i_f])
    ids = np.flatnonzero(run)
    X = X[:, run]
    lanes = lanes.take(run)
    while ids.size:
        z, f, g = X[iz], X[i_f], X[ig]
        C = X[iC].reshape(P, P, -1)
        lam, nu = X[i_lam], X[i_nu]
        dC = C[diag, diag]
        dd = np.where(dC > 0, dC, 1.0)
        fix = nn & (z <= 0) & (g > 0) if any_nonneg else None
        if any_nonneg and fix.any():
            keep = (~fix).astype(np.float64)
            M = C * keep[:, None] * keep[None, :]
            M[diag, diag] += lam * dd + (1.0 - keep)
            gk = g * keep
        else:  # nothing held: the masks are all ones (the same numbers, fewer operations)
            M = C.copy()
            M[diag, diag] += lam * dd
            gk = g
        zs = z - np.stack(_spd_solve(M, gk))
        if any_nonneg and (cross := nn & (zs < 0) & ~fix).any():
            # Coordinates the step takes below 0 go to 0 exactly, and the others are solved
            # again with them there (clipping alone leaves the others where the unclipped
            # step put them: a poor point, rejected, and a crawl onto the bound).
            act = cross | fix
            keep2 = (~act).astype(np.float64)
            dza = np.where(cross, -z, 0.0)
            M2 = C * keep2[:, None] * keep2[None, :]
            M2[diag, diag] += lam * dd + (1.0 - keep2)
            rhs = (g + np.einsum("ijl,jl->il", C, dza)) * keep2
            zs = np.where(cross.any(axis=0), z - np.stack(_spd_solve(M2, rhs)) + dza, zs)
        zn = np.where(nn, np.maximum(zs, 0.0), zs) if any_nonneg else zs
        dz = zn - z
        pred = -(np.einsum("il,il->l", g, dz) + 0.5 * np.einsum("il,ijl,jl->l", dz, C, dz))
        Xn = np.empty_like(X)
        Xn[iz] = zn
        Xn[P:i_lam] = prob.evaluate(zn, lanes)
        fn = Xn[i_f]
        accept = np.isfinite(fn) & (fn < f)
        rho = (f - fn) / np.where(pred > 0, pred, np.inf)
        Xn[i_lam] = np.maximum(np.where(accept, lam * np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), lam * nu),
                               1e-15)
        Xn[i_nu] = np.where(accept, 2.0, nu * 2.0)
        Xn[i_it] = X[i_it] + 1.0
        flat = accept & ~(fn < f * (1.0 - FTOL))
        Xn[i_flat] = np.where(flat, X[i_flat] + 1.0, 0.0)
        tiny_step = accept & (np.abs(dz).max(axis=0, initial=0.0) <= XTOL * (1.0 + np.abs(z).max(axis=0, initial=0.0)))
        # Rejected steps keep the old point, with the new damping and counters.
        np.copyto(Xn[:i_lam], X[:i_lam], where=~accept)
        X = Xn
        z, f, g = X[iz], X[i_f], X[ig]
        stalled = (X[i_lam] > 1e16) | (X[i_flat] >= 2)
        gs = gradient_size(z, g, f)
        conv = (gs <= gtol) | tiny_step | (stalled & (gs <= sqrt_gtol))
        done = conv | stalled | (X[i_it] >= max_iter)
        if done.any():
            fin = ids[done]
            out[:, fin] = X[:i_lam, done]
            it_out[fin] = X[i_it, done]
            conv_out[fin] = conv[done]
            go = ~done
            ids, X = ids[go], X[:, go]
            lanes = lanes.take(go)
    f_out = out[i_f]
    return out[iz], f_out, it_out, conv_out & np.isfinite(f_out)


# ---------------------------------------------------------------- the batch


def _n_threads(m: int) -> int:
    cpus = usable_cpus()
    return max(1, min(cpus, MAX_THREADS, m // CURVES_PER_THREAD))


def fit_batch(spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    """:func:`scaling._optimize.fit_batch` in NumPy (see the module docstring).

    ``x`` dict of ``(m, n)``, ``y, w (m, n)``, ``u_starts (m, S, p)``; returns the dict
    of :func:`scaling._engine.run_batch`. Large batches are split into blocks of curves
    fitted on parallel threads (NumPy releases the GIL in its array loops); every
    curve's arithmetic is its own, so the split changes results only by rounding (NumPy's
    vector loops may round an array's last few elements differently).
    """
    m = y.shape[0]
    k = _n_threads(m)
    if k == 1:
        return _fit_block(spec, x, y, w, u_starts)
    edges = np.linspace(0, m, k + 1).astype(int)

    def block(i):
        a, b = edges[i], edges[i + 1]
        return _fit_block(spec, {v: c[a:b] for v, c in x.items()}, y[a:b], w[a:b], u_starts[a:b])

    with ThreadPoolExecutor(k) as pool:
        parts = list(pool.map(block, range(k)))
    out = {key: np.concatenate([p_[key] for p_ in parts]) for key in parts[0] if key != "params"}
    out["params"] = {name: np.concatenate([p_["params"][name] for p_ in parts]) for name in parts[0]["params"]}
    return out


def _fit_block(spec, x: dict, y: np.ndarray, w: np.ndarray, u_starts: np.ndarray) -> dict:
    form = spec.form
    ps = power_sum(form)
    m, S, p = u_starts.shape
    log = spec.objective.log
    with np.errstate(all="ignore"):
        logx = {}  # log of each variable; raw values of the variables that hold exponents
        for v, a in x.items():
            shared = m > 1 and bool(np.all(a == a[:1]))
            a = np.ascontiguousarray(a[:1].T if shared or m == 1 else a.T)  # (n, 1|m)
            logx[v] = a if v in ps.data_variables else np.log(a)
        yT, wT = np.ascontiguousarray(y.T), np.ascontiguousarray(w.T)
        logy = np.log(yT) if log else None
        if p == 0 or S == 1:
            R, idx = 1, np.zeros((m, 1), dtype=np.int64)
        else:
            f0 = _score_blocks(spec, ps, logx, yT, logy, wT, u_starts)
            R = min(spec.refine, S) if spec.refine > 0 else S
            idx = np.argmin(f0, axis=1)[:, None] if R == 1 else np.argsort(f0, axis=1, kind="stable")[:, :R]
        u0 = np.take_along_axis(u_starts, idx[..., None], axis=1).reshape(m * R, p)
        if R > 1:
            rep = np.repeat(np.arange(m), R)
            lanes = _Lanes({v: a if a.shape[1] == 1 else a[:, rep] for v, a in logx.items()}, yT[:, rep],
                           None if logy is None else logy[:, rep], wT[:, rep])
        else:
            lanes = _Lanes(logx, yT, logy, wT)
        # Joint start: nonlinear coordinates u, linear parameters solved at u.
        c0 = _linear_at(spec, ps, lanes, u0)
        z0 = np.concatenate([u0.T, np.stack([np.broadcast_to(c, (m * R,)) for c in c0])], axis=0) if c0 else u0.T
        nonneg = [False] * p + [form.bounds[k][0] == 0.0 for k in form.linear]
        z, value, n_iter, converged = _damped_newton(spec, _Problem(spec, ps), z0, nonneg, lanes, spec.max_iter)
        vals = np.where(np.isfinite(value), value, np.inf).reshape(m, R)
        b = np.argmin(vals, axis=1)
        pick = np.arange(m) * R + b
        z = z[:, pick]
        theta = natural(form, z[:p].T)
    params = {**{k: np.asarray(v, dtype=np.float64) for k, v in theta.items()},
              **{k: z[p + j].copy() for j, k in enumerate(form.linear)}}
    return {
        "u": np.ascontiguousarray(z[:p].T),
        "params": {k: params[k] for k in form.params},
        "value": value[pick],
        "n_iter": n_iter[pick].astype(np.int32),
        "converged": converged[pick],
        "start": np.take_along_axis(idx, b[:, None], axis=1)[:, 0].astype(np.int32),
    }


def _linear_at(spec, ps: PowerSum, d: _Lanes, u):
    """The variable-projection solve at ``u (l, p)``: one ``(l,)`` array per coefficient."""
    form = spec.form
    theta = natural(form, u)
    n, l = d.y.shape
    cols = [1.0 if t.variable is None else np.exp(-_exponent(t, theta, d.logx) * d.logx[t.variable])
            for t in ps.terms]
    v = d.w / d.y**2 if spec.objective.log else d.w
    k = len(cols)
    nonneg = tuple(form.bounds[q][0] == 0.0 for q in form.linear)
    sq = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            sq[i][j] = sq[j][i] = (v * cols[i] * cols[j]).sum(axis=0)
    scale = [np.where(np.sqrt(sq[i][i]) > 0, np.sqrt(sq[i][i]), 1.0) for i in range(k)]
    G = [[sq[i][j] / (scale[i] * scale[j]) for j in range(k)] for i in range(k)]
    vy = v * d.y
    h = [(vy * cols[i]).sum(axis=0) / scale[i] for i in range(k)]
    return _nnls(G, h, scale, nonneg)


def term_values(form: Form, params, x: dict) -> dict | None:
    """Each term ``c_j x^-e_j`` of a power-sum form for params ``(m,)`` at points ``x (m, k)``,
    keyed by its coefficient's name (``None`` for other forms)."""
    ps = power_sum(form)
    if ps is None:
        return None
    params = {k: np.asarray(v, dtype=np.float64)[..., None] for k, v in params.items()}
    x = {v: np.asarray(a, dtype=np.float64) for v, a in x.items()}
    out = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for t in ps.terms:
            c = params[t.coefficient]
            out[t.coefficient] = c if t.variable is None else c * x[t.variable] ** -_exponent(t, params, x)
    return out


def law_values(form: Form, params, x: dict) -> np.ndarray | None:
    """The law of a power-sum form for params ``(m,)`` at points ``x (m, k)`` (else ``None``):
    the sum of :func:`term_values`.

    Powers as ``x ** -e`` (as the forms' own models compute them), in float64.
    """
    terms = term_values(form, params, x)
    if terms is None:
        return None
    out = np.zeros(np.broadcast_shapes(*(np.shape(t) for t in terms.values()),
                                       *(np.shape(a) for a in x.values())))
    for t in terms.values():
        out += t
    return out


def residuals(objective: Objective, yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``objective.residual`` in NumPy: ``log(yhat / y)`` (log objectives) or ``yhat - y``."""
    if not objective.log:
        return yhat - y
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.maximum(yhat, _TINY)) - np.log(y)


def residual_jacobian(form: Form, objective: Objective, params, x: dict, y: np.ndarray):
    """``d residual / d parameter (m, n, p)`` (columns in ``form.params`` order) and the
    residuals ``(m, n)`` of a power-sum form, in closed form; ``None`` for other forms.

    ``dy/dc_j = x^-e_j``, ``dy/de_j = -c_j log(x) x^-e_j``; log objectives divide by
    ``yhat`` (zero where ``yhat`` is below the floor, as the floored log's derivative).
    """
    ps = power_sum(form)
    if ps is None:
        return None
    prm = {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in params.items()}
    x = {v: np.asarray(a, dtype=np.float64) for v, a in x.items()}
    y = np.asarray(y, dtype=np.float64)
    yhat = np.zeros(y.shape)
    cols: dict = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for t in ps.terms:
            c = prm[t.coefficient]
            if t.variable is None:
                phi = np.ones(y.shape)
            else:
                phi = x[t.variable] ** -_exponent(t, prm, x)
                if isinstance(t.exponent, str):
                    cols[t.exponent] = cols.get(t.exponent, 0.0) - c * np.log(x[t.variable]) * phi
            cols[t.coefficient] = phi
            yhat = yhat + c * phi
        r = residuals(objective, yhat, y)
        J = np.stack([np.broadcast_to(cols[k], y.shape) for k in form.params], axis=-1)
        if objective.log:
            J = np.where((yhat > _TINY)[..., None], J / yhat[..., None], 0.0)
    return J, r
