"""Shared (tied) parameters across groups of points: one exponent for several experiments.

``fit(form, x, y, groups=labels, shared=["alpha"])`` builds a *grouped form* whose shared
parameters are common and whose other parameters exist once per group, fits it in one
call (variable projection still solves every group's linear parameters in closed form,
block by block), and keeps the separate per-group fits for a likelihood-ratio test.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ._assemble import assemble
from ._engine import run_batch, start_points
from ._forms import Form, evaluate
from ._spec import to_unconstrained
from ._result import FitResult, scalar_or_array
from ._validate import as_float_array, prepare


def group_name(param: str, g: int) -> str:
    """Name of a per-group parameter in the grouped form: ``A[2]``."""
    return f"{param}[{g}]"


@functools.lru_cache(maxsize=64)
def grouped_form(form: Form, n_groups: int, shared: tuple[str, ...]) -> Form:
    """``form`` with ``shared`` parameters common to all groups and the rest per group.

    The group of each point is read from an extra variable ``_group`` (codes 1..G).
    """
    per = [p for p in form.params if p not in shared]
    params = list(shared) + [group_name(p, g) for g in range(n_groups) for p in per]
    linear = [p for p in shared if p in form.linear] + [group_name(p, g) for g in range(n_groups) for p in per
                                                          if p in form.linear]
    bounds = {p: form.bounds[p] for p in shared}
    init = {p: form.init[p] for p in shared if p in form.init}
    for g in range(n_groups):
        for p in per:
            bounds[group_name(p, g)] = form.bounds[p]
            if p in form.init:
                init[group_name(p, g)] = form.init[p]
    shares_linear = any(p in form.linear for p in shared)
    blocks = () if shares_linear else tuple(
        tuple(group_name(p, g) for p in form.linear) for g in range(n_groups))

    def model(p, x):
        import jax.numpy as jnp

        onehot = (x["_group"][..., None] == jnp.arange(1, n_groups + 1)).astype(x["_group"].dtype)  # (n, G)
        local = {k: jnp.sum(onehot * jnp.stack([p[group_name(k, g)] for g in range(n_groups)]), axis=-1) for k in per}
        return evaluate(form, {**{k: p[k] for k in shared}, **local}, {v: x[v] for v in form.variables})

    return Form(name=f"{form.name}|shared={','.join(shared)}|groups={n_groups}", model=model, params=tuple(params),
                linear=tuple(linear), bounds=bounds, init=init, variables=form.variables + ("_group",),
                math=form.math, text=form.text, blocks=blocks,
                scalable=form.scalable)


class LRTest(NamedTuple):
    """Likelihood-ratio test of shared against separate parameters."""

    statistic: float
    df: int
    p_value: float
    test: str

    def __str__(self) -> str:
        return f"{self.test}: statistic {self.statistic:.4g} on {self.df} df, p = {self.p_value:.4g}"


@dataclasses.dataclass(frozen=True, eq=False)
class GroupedFit:
    """A fit with parameters shared across groups, and the separate per-group fits.

    Attributes
    ----------
    form : Form
        The law (not grouped).
    groups : tuple
        Group labels, in the order of the per-group arrays.
    shared : tuple of str
    joint : FitResult
        The fit of the grouped form (parameters ``alpha`` and ``A[0]``, ``A[1]``...):
        its ``covariance``, ``stderr``, ``profile_ci`` and ``summary`` work as usual.
    separate : FitResult
        Every group fitted on its own (batch axis = groups).
    """

    form: Form
    groups: tuple
    shared: tuple
    joint: FitResult
    separate: FitResult

    def _split(self, values: Mapping[str, object]) -> dict:
        out = {}
        for p in self.form.params:
            if p in self.shared:
                out[p] = values[p]
            else:
                out[p] = np.array([float(values[group_name(p, g)]) for g in range(len(self.groups))])
        return out

    @property
    def params(self) -> dict:
        """Shared parameters as scalars, the others as arrays over :attr:`groups`."""
        return self._split(self.joint.params)

    @property
    def stderr(self) -> dict:
        """Standard errors in the layout of :attr:`params`."""
        return self._split(self.joint.stderr)

    @property
    def status(self) -> str:
        return self.joint.status

    def wald_ci(self, level: float = 0.95) -> dict:
        """``(lo, hi)`` per parameter, in the layout of :attr:`params`."""
        ci = self.joint.wald_ci(level)
        lo = self._split({k: v[0] for k, v in ci.items()})
        hi = self._split({k: v[1] for k, v in ci.items()})
        return {k: (lo[k], hi[k]) for k in lo}

    def profile_ci(self, param: str, level: float = 0.95, group=None):
        """Profile interval of a shared parameter, or of a per-group one with ``group=label``."""
        if param in self.shared:
            return self.joint.profile_ci(param, level)
        if group is None:
            raise ValueError(f"{param!r} is fitted per group: pass group= one of {list(self.groups)}")
        return self.joint.profile_ci(group_name(param, self.groups.index(group)), level)

    def group_params(self, group) -> dict[str, float]:
        """All parameters of one group (shared ones included)."""
        g = self.groups.index(group)
        return {p: float(self.joint.params[p if p in self.shared else group_name(p, g)]) for p in self.form.params}

    def lr_test(self) -> LRTest:
        """Likelihood-ratio test: do the groups need their own ``shared`` parameters?

        Least squares: ``n log(RSS_shared / RSS_separate)``, asymptotically ``chi2`` with
        ``(G - 1) * len(shared)`` degrees of freedom. Other objectives: the robust version
        ``2 (F_shared - F_separate) / xi`` (Schrader and Hettmansperger 1980), ``xi`` from
        the separate fits' ``psi``. A small p-value says the shared fit is rejected.
        """
        return lr_test(self)

    def summary(self, level: float = 0.95) -> str:
        lines = [f"shared fit of {self.form.name}: {self.form.text}",
                 f"groups: {', '.join(map(str, self.groups))}; shared: {', '.join(self.shared)}",
                 f"objective: {self.joint.spec.objective.describe()}; status: {self.joint.status}"]
        ci = self.wald_ci(level)
        se = self.stderr
        lines.append(f"intervals: {level:.0%} Wald (t x s.e., {self.joint.covariance_kind} covariance)")
        for p in self.form.params:
            if p in self.shared:
                lines.append(f"  {p:>10} (shared) = {float(self.params[p]):.6g} ± {float(se[p]):.3g}  "
                             f"[{float(ci[p][0]):.6g}, {float(ci[p][1]):.6g}]")
            else:
                for g, label in enumerate(self.groups):
                    lines.append(f"  {p:>10} [{label}] = {self.params[p][g]:.6g} ± {se[p][g]:.3g}  "
                                 f"[{ci[p][0][g]:.6g}, {ci[p][1][g]:.6g}]")
        lines.append(str(self.lr_test()))
        return "\n".join(lines)

    def to_dataset(self):
        """Parameters over a ``group`` dim (shared ones repeated), with ``shared`` flags."""
        import xarray as xr

        names = list(self.form.params)
        G = len(self.groups)
        coef = np.stack([np.broadcast_to(np.asarray(self.params[p], dtype=float), (G,)) for p in names], axis=-1)
        se = np.stack([np.broadcast_to(np.asarray(self.stderr[p], dtype=float), (G,)) for p in names], axis=-1)
        test = self.lr_test()
        return xr.Dataset(
            {"coefficients": (("group", "param"), coef), "stderr": (("group", "param"), se),
             "shared": ("param", [p in self.shared for p in names])},
            coords={"group": [str(g) for g in self.groups], "param": names},
            attrs={"form": self.form.name, "law": self.form.text, "objective": self.joint.spec.objective.name,
                   "lr_statistic": test.statistic, "lr_df": test.df, "lr_p_value": test.p_value,
                   "status": str(self.joint.status)},
        )

    def __repr__(self) -> str:
        return (f"GroupedFit(form={self.form.name!r}, groups={len(self.groups)}, shared={self.shared}, "
                f"status={self.joint.status!r})")


def lr_test(result: GroupedFit) -> LRTest:
    """Likelihood-ratio test of a :class:`GroupedFit` (shared) against its separate fits.

    Examples
    --------
    >>> import numpy as np, scaling
    >>> D = np.tile(np.geomspace(1e2, 1e5, 10), 2)
    >>> g = np.repeat(["a", "b"], 10)
    >>> y = np.where(g == "a", 2.0, 3.0) * D ** -0.3 * np.exp(0.01 * np.sin(np.arange(20.0)))
    >>> res = scaling.fit("power", D, y, groups=g, shared=["alpha"])
    >>> round(float(res.params["alpha"]), 2), res.lr_test().df
    (0.3, 1)
    """
    if not isinstance(result, GroupedFit):
        raise TypeError(f"lr_test takes a GroupedFit (fit(..., groups=, shared=)), got {type(result).__name__}")
    obj = result.joint.spec.objective
    G = len(result.groups)
    df = (G - 1) * len(result.shared)
    sep_obj = float(np.nansum(result.separate.objective))
    joint_obj = float(result.joint.objective)
    if obj.gaussian:
        n = float(result.joint.n_points)
        floor = 1e-30 * n
        stat = n * np.log(max(joint_obj, floor) / max(sep_obj, floor))
        name = "likelihood ratio (Gaussian), shared vs separate"
    else:
        import jax.numpy as jnp

        r = np.nan_to_num(result.separate.residuals().reshape(result.separate.y.shape))
        w = result.separate.w
        n = w.sum()
        p = G * len(result.form.params)
        meat = float((w * np.asarray(obj.psi(jnp.asarray(r))) ** 2).sum()) / max(n - p, 1)
        bread = float((w * np.asarray(obj.dpsi(jnp.asarray(r)))).sum()) / n
        stat = 2.0 * (joint_obj - sep_obj) / max(meat / bread, 1e-300)
        name = f"robust likelihood ratio ({obj.name}), shared vs separate"
    stat = max(stat, 0.0)
    from scipy import stats

    return LRTest(float(stat), int(df), float(stats.chi2.sf(stat, df)) if df > 0 else float("nan"), name)


def fit_shared(form: Form, x, y, groups, shared: Sequence[str], *, spec, weights, skipna: bool, fit_fn) -> GroupedFit:
    """Fit ``form`` with ``shared`` parameters common to all groups (see :func:`scaling.fit`)."""
    if isinstance(shared, str):
        shared = [shared]
    shared = tuple(shared)
    unknown = [p for p in shared if p not in form.params]
    if unknown:
        raise ValueError(f"shared names {unknown} are not parameters of form {form.name!r}: {form.params}")
    if not shared:
        raise ValueError("shared must name at least one parameter; without any, fit the groups as a batch")
    if len(set(shared)) != len(shared):
        raise ValueError(f"shared lists a parameter twice: {shared}")
    y = as_float_array("y", y)
    if y.ndim != 1:
        raise ValueError(f"with groups=, y must be 1-D (one entry per point), got shape {y.shape}")
    labels = np.asarray(groups)
    if labels.shape != y.shape:
        raise ValueError(f"groups must label every point: shape {labels.shape}, y has {y.shape}")
    uniq, codes = np.unique(labels, return_inverse=True)
    G = len(uniq)
    if G < 2:
        raise ValueError(f"groups= needs at least 2 distinct labels to share parameters, got {list(uniq)}")
    xs = x if isinstance(x, Mapping) else {form.variables[0]: x} if len(form.variables) == 1 else x
    if not isinstance(xs, Mapping):
        raise TypeError(f"form {form.name!r} has variables {form.variables}: pass x as a mapping")
    xs = {k: np.broadcast_to(as_float_array(f"x[{k!r}]", v), y.shape) for k, v in xs.items()}
    w = np.ones(y.shape) if weights is None else np.broadcast_to(as_float_array("weights", weights), y.shape)

    # Separate fits, one batched call: groups padded to a common length with NaN (skipped).
    counts = np.bincount(codes)
    n_max = int(counts.max())
    pad_y = np.full((G, n_max), np.nan)
    pad_w = np.zeros((G, n_max))
    pad_x = {k: np.full((G, n_max), np.nan) for k in xs}
    for g in range(G):
        idx = np.flatnonzero(codes == g)
        pad_y[g, : idx.size] = y[idx]
        pad_w[g, : idx.size] = w[idx]
        for k in xs:
            pad_x[k][g, : idx.size] = xs[k][idx]
    separate = fit_fn(form, pad_x, pad_y, weights=pad_w, skipna=True)

    gform = grouped_form(form, G, shared)
    # The joint fit sees one curve of all points; its data pass the usual checks.
    data = prepare(gform, {**xs, "_group": codes.astype(np.float64) + 1.0}, y, w, log_objective=spec.objective.log,
                   skipna=skipna, errors="raise")
    # Starts: per-group nonlinear parameters at their separate optima; shared ones over
    # the form's grid plus the median of the separate estimates.
    spec = dataclasses.replace(spec, form=gform)
    sep = {p: np.asarray(separate.params[p], dtype=float).reshape(G) for p in form.params}
    fallback, grids = start_points(gform, data, None, 0, None)
    if gform.nonlinear:
        base = {}
        for p in gform.nonlinear:
            name, g = (p, None) if p in shared else (p.rsplit("[", 1)[0], int(p.rsplit("[", 1)[1][:-1]))
            v = np.nanmedian(sep[name]) if g is None else sep[name][g]
            if not np.isfinite(v):
                v = float(np.median(grids[p])) if p in grids else 0.5
            lo, hi = gform.bounds[p]
            base[p] = float(np.clip(v, lo + 1e-9 * max(1, abs(lo)), hi - 1e-9 * max(1, abs(hi)))) if np.isfinite(
                lo) and np.isfinite(hi) else v
        rows = [dict(base)]
        for p in gform.nonlinear:
            if p in shared:
                for v in grids[p]:
                    rows.append({**base, p: float(v)})
        u = np.stack([to_unconstrained(gform, {k: np.asarray(r[k]) for k in gform.nonlinear}) for r in rows])[None]
    else:
        u = fallback
    best = run_batch(spec, data.x, data.y, data.w, u)
    joint = assemble(spec, data, best, grids if gform.nonlinear else {}, u, None)
    return GroupedFit(form=form, groups=tuple(uniq.tolist()), shared=shared, joint=joint, separate=separate)


__all__ = ["GroupedFit", "LRTest", "grouped_form", "lr_test"]
