"""The result of a fit: parameters, status, uncertainty, predictions, export."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ._forms import Form
from ._optimize import Spec, batch_residual_jacobian, residuals, transform_kinds
from ._x64 import enable_x64

STATUSES = ("converged", "grid_edge", "at_bound", "max_iter", "not_converged", "failed", "invalid")


def _scalar_or_array(a: np.ndarray):
    if a.ndim:
        return a
    return a.item() if a.dtype.kind in "USbO" else a[()]


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
    """Fitted scaling law(s). Arrays have the batch shape of ``y`` (``()`` for one curve).

    Attributes
    ----------
    form : Form
    params : dict[str, ndarray]
        Best-fit value of every parameter.
    objective : ndarray
        Best summed objective.
    converged : ndarray of bool
        L-BFGS met its gradient test (always True for all-linear forms).
    status : ndarray of str
        The most serious of: ``"invalid"`` (bad input, ``errors="ignore"``), ``"failed"``
        (non-finite objective), ``"not_converged"``, ``"max_iter"``, ``"at_bound"`` (a
        parameter sits on a bound, e.g. ``L_inf = 0``), ``"grid_edge"`` (the optimum lies
        beyond the edge of the start grid it came from: widen the grid), ``"converged"``.
    bound_params : ndarray of str
        Comma-separated names of the parameters on a bound.
    messages : dict
        Flat curve index -> why the curve is invalid.
    bootstrap_params : dict[str, ndarray] or None
        Resampled fits, shape ``(B, *batch)``.
    """

    form: Form
    spec: Spec
    params: dict
    objective: np.ndarray
    converged: np.ndarray
    status: np.ndarray
    bound_params: np.ndarray
    n_iter: np.ndarray
    batch_shape: tuple
    x: dict
    y: np.ndarray
    w: np.ndarray
    messages: dict
    start_grid: dict
    bootstrap_params: dict | None = None

    # ------------------------------------------------------------ construction
    @classmethod
    def build(cls, spec: Spec, data, best: dict, grids: dict, u_starts: np.ndarray, boot: dict | None) -> "FitResult":
        form = spec.form
        m = data.m
        value = best["value"].copy()
        params = {k: v.copy() for k, v in best["params"].items()}
        failed = ~np.isfinite(value) | ~np.all([np.isfinite(v) for v in params.values()], axis=0)
        at_bound = np.zeros(m, dtype=bool)
        names = [[] for _ in range(m)]
        for p in form.params:
            lo, hi = form.bounds[p]
            v = params[p]
            hit = np.zeros(m, dtype=bool)
            if math.isfinite(lo):
                hit |= v - lo <= 1e-6 * max(1.0, abs(lo), (hi - lo) if math.isfinite(hi) else 1.0)
            if math.isfinite(hi):
                hit |= hi - v <= 1e-6 * max(1.0, abs(hi), (hi - lo) if math.isfinite(lo) else 1.0)
            at_bound |= hit
            for r in np.flatnonzero(hit):
                names[r].append(p)
        grid_edge = np.zeros(m, dtype=bool)
        if form.nonlinear:
            start_vals = _natural(form, u_starts[np.arange(m), best["start"]])
            for p in form.nonlinear:
                g = grids[p]
                if g.size < 3:
                    continue
                s, v = start_vals[p], params[p]
                grid_edge |= ((s <= g.min()) & (v < g.min())) | ((s >= g.max()) & (v > g.max()))
        status = np.full(m, "converged", dtype=object)
        status[grid_edge] = "grid_edge"
        status[at_bound] = "at_bound"
        status[~best["converged"]] = "not_converged"
        status[best["n_iter"] >= spec.max_iter] = "max_iter"
        status[failed] = "failed"
        status[data.invalid] = "invalid"
        for k in params:
            params[k][data.invalid] = np.nan
        value[data.invalid] = np.nan
        shape = data.batch_shape
        bp = {k: v.reshape((v.shape[0],) + shape) for k, v in boot["params"].items()} if boot else None
        if bp is not None and data.invalid.any():
            for v in bp.values():
                v.reshape(v.shape[0], -1)[:, data.invalid] = np.nan
        return cls(
            form=form,
            spec=spec,
            params={k: _scalar_or_array(v.reshape(shape)) for k, v in params.items()},
            objective=_scalar_or_array(value.reshape(shape)),
            converged=_scalar_or_array((best["converged"] & ~data.invalid).reshape(shape)),
            status=_scalar_or_array(status.astype(str).reshape(shape)),
            bound_params=_scalar_or_array(np.array([",".join(n) for n in names], dtype=str).reshape(shape)),
            n_iter=_scalar_or_array(best["n_iter"].reshape(shape)),
            batch_shape=shape,
            x=data.x,
            y=data.y,
            w=data.w,
            messages=dict(data.messages),
            start_grid=grids,
            bootstrap_params=bp,
        )

    # ------------------------------------------------------------ basics
    @property
    def objective_name(self) -> str:
        return self.spec.objective

    def _flat_params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.params.items()}

    def predict(self, x) -> np.ndarray:
        """The fitted law at new points: shape ``(*batch, k)`` for ``k`` points.

        Examples
        --------
        >>> import numpy as np, scaling
        >>> D = np.geomspace(10, 1e4, 10)
        >>> res = scaling.fit("power", D, 2.0 * D ** -0.5)
        >>> np.round(res.predict([1e6]), 6)
        array([0.002])
        """
        xs = _normalize_x(self.form, x)
        k = next(iter(xs.values())).shape[-1]
        flat = self._flat_params()
        m = len(next(iter(flat.values())))
        with enable_x64():
            xd = {v: jnp.asarray(np.broadcast_to(a.reshape((-1, k)) if a.ndim > 1 else a, (m, k))) for v, a in xs.items()}
            if self.form.variables == ("x",):
                xd = xd["x"]
            out = jax.vmap(self.form.model)({p: jnp.asarray(v) for p, v in flat.items()}, xd)
            out = np.asarray(out, dtype=np.float64)
        return out.reshape(self.batch_shape + (k,))

    def residuals(self) -> np.ndarray:
        """Residuals the objective was built from (log ratios, or differences for ``mse``), ``(*batch, n)``."""
        yhat = self._fitted_values()
        r = np.asarray(residuals(self.spec.objective, yhat, self.y))
        r = np.where(self.w > 0, r, np.nan)
        return r.reshape(self.batch_shape + (self.y.shape[-1],))

    def _fitted_values(self) -> np.ndarray:
        flat = self._flat_params()
        with enable_x64():
            xd = {v: jnp.asarray(a) for v, a in self.x.items()}
            if self.form.variables == ("x",):
                xd = xd["x"]
            return np.asarray(jax.vmap(self.form.model)({p: jnp.asarray(v) for p, v in flat.items()}, xd))

    # ------------------------------------------------------------ model comparison
    @property
    def n_points(self) -> np.ndarray:
        """Effective number of points: the sum of weights (frequency-weight convention)."""
        return _scalar_or_array(self.w.sum(axis=-1).reshape(self.batch_shape))

    @property
    def n_params(self) -> int:
        return len(self.form.params)

    @property
    def rss(self) -> np.ndarray:
        """Weighted residual sum of squares (log space for log objectives)."""
        r = np.nan_to_num(self.residuals().reshape(self.y.shape))
        return _scalar_or_array((self.w * r**2).sum(axis=-1).reshape(self.batch_shape))

    def _n_log_sigma2(self) -> np.ndarray:
        n = np.asarray(self.n_points, dtype=float)
        with np.errstate(divide="ignore"):  # an exact fit (rss = 0) has criterion -inf
            return n * np.log(np.asarray(self.rss, dtype=float) / n)

    @property
    def aic(self) -> np.ndarray:
        """Akaike information criterion of a Gaussian model of the residuals (-inf if exact)."""
        return self._n_log_sigma2() + 2 * self.n_params

    @property
    def bic(self) -> np.ndarray:
        """Bayesian information criterion of a Gaussian model of the residuals (-inf if exact)."""
        return self._n_log_sigma2() + self.n_params * np.log(np.asarray(self.n_points, dtype=float))

    # ------------------------------------------------------------ uncertainty
    @functools.cached_property
    def covariance(self) -> np.ndarray:
        """Gauss-Newton parameter covariance ``s^2 (J^T W J)^-1``, shape ``(*batch, p, p)``.

        Defined for the least-squares objectives (``log_mse``, ``mse``) at an interior
        optimum; NaN for curves with a parameter on a bound (see :attr:`status`).
        Order of rows follows ``form.params``.
        """
        if self.spec.objective not in ("log_mse", "mse"):
            raise ValueError(
                f"a Gauss-Newton covariance is defined for objective 'log_mse' or 'mse', not "
                f"{self.spec.objective!r}; use bootstrap=... and .ci() instead"
            )
        flat = self._flat_params()
        with enable_x64():
            xd = {v: jnp.asarray(a) for v, a in self.x.items()}
            if self.form.variables == ("x",):
                xd = xd["x"]
            J, r = batch_residual_jacobian(self.spec, {k: jnp.asarray(v) for k, v in flat.items()}, xd, jnp.asarray(self.y))
            J, r = np.asarray(J), np.asarray(r)
        w = self.w
        p = len(self.form.params)
        n = w.sum(axis=-1)
        s2 = (w * r**2).sum(axis=-1) / np.maximum(n - p, 1)
        JtJ = np.einsum("mni,mn,mnj->mij", J, w, J)
        cov = np.full(JtJ.shape, np.nan)
        bad = (np.asarray(self.status).reshape(-1) == "at_bound") | (np.asarray(self.status).reshape(-1) == "invalid")
        for i in np.flatnonzero(~bad):
            try:
                cov[i] = s2[i] * np.linalg.inv(JtJ[i])
            except np.linalg.LinAlgError:
                pass
        return cov.reshape(self.batch_shape + (p, p))

    @property
    def stderr(self) -> dict[str, np.ndarray]:
        """Standard errors from :attr:`covariance`."""
        d = np.sqrt(np.diagonal(self.covariance, axis1=-2, axis2=-1))
        return {k: _scalar_or_array(d[..., i]) for i, k in enumerate(self.form.params)}

    def _need_bootstrap(self):
        if self.bootstrap_params is None:
            raise ValueError("this fit has no bootstrap resamples: fit again with bootstrap=200 (say) and key=...")

    def ci(self, level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Percentile bootstrap interval ``(lo, hi)`` of every parameter.

        Examples
        --------
        >>> import numpy as np, scaling
        >>> rng = np.random.default_rng(0)
        >>> D = np.geomspace(1e2, 1e5, 12)
        >>> y = 3.0 * D ** -0.4 * np.exp(0.02 * rng.standard_normal(12))
        >>> res = scaling.fit("power", D, y, bootstrap=200, key=0)
        >>> lo, hi = res.ci(0.95)["alpha"]
        >>> bool(lo < 0.4 < hi)
        True
        """
        self._need_bootstrap()
        _check_level(level)
        q = [(1 - level) / 2, (1 + level) / 2]
        out = {}
        for k, v in self.bootstrap_params.items():
            lo, hi = _nanquantile(v, q)
            out[k] = (_scalar_or_array(lo), _scalar_or_array(hi))
        return out

    def predict_ci(self, x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Percentile bootstrap band of the prediction at ``x``: ``(lo, hi)``, each ``(*batch, k)``."""
        self._need_bootstrap()
        _check_level(level)
        xs = _normalize_x(self.form, x)
        k = next(iter(xs.values())).shape[-1]
        B = next(iter(self.bootstrap_params.values())).shape[0]
        flat = {p: v.reshape(B, -1) for p, v in self.bootstrap_params.items()}
        m = next(iter(flat.values())).shape[1]
        with enable_x64():
            xd = {v: jnp.asarray(np.broadcast_to(a.reshape((-1, k)) if a.ndim > 1 else a, (m, k))) for v, a in xs.items()}
            if self.form.variables == ("x",):
                xd = xd["x"]
            f = jax.vmap(jax.vmap(self.form.model), in_axes=(0, None))
            preds = np.asarray(f({p: jnp.asarray(v) for p, v in flat.items()}, xd))  # (B, m, k)
        q = [(1 - level) / 2, (1 + level) / 2]
        lo, hi = _nanquantile(preds, q)
        return lo.reshape(self.batch_shape + (k,)), hi.reshape(self.batch_shape + (k,))

    def profile_ci(self, param: str, level: float = 0.95):
        """Profile-likelihood interval of ``param`` (Gaussian residuals): see :func:`scaling.profile_ci`."""
        from ._profile import profile_ci

        return profile_ci(self, param, level=level)

    # ------------------------------------------------------------ export
    def to_dataset(self, dims: tuple[str, ...] | None = None, coords: Mapping | None = None):
        """The fit as an ``xarray.Dataset`` in the layout of ``xarray.DataArray.curvefit``.

        Variables: ``coefficients (*dims, param)``, ``objective``, ``status``,
        ``converged``, ``covariance (*dims, cov_i, cov_j)`` for least-squares objectives,
        and ``bootstrap_coefficients (bootstrap, *dims, param)`` when bootstrapped.
        """
        import xarray as xr

        dims = tuple(dims) if dims is not None else tuple(f"curve_{i}" for i in range(len(self.batch_shape)))
        if len(dims) != len(self.batch_shape):
            raise ValueError(f"dims {dims} must name the {len(self.batch_shape)} batch axes of shape {self.batch_shape}")
        names = list(self.form.params)
        coef = np.stack([np.asarray(self.params[k], dtype=np.float64) for k in names], axis=-1)
        ds = xr.Dataset(
            {
                "coefficients": (dims + ("param",), coef),
                "objective": (dims, np.asarray(self.objective, dtype=np.float64)),
                "status": (dims, np.asarray(self.status, dtype=str)),
                "converged": (dims, np.asarray(self.converged, dtype=bool)),
            },
            coords={"param": names, **dict(coords or {})},
        )
        if self.spec.objective in ("log_mse", "mse"):
            ds["covariance"] = (dims + ("cov_i", "cov_j"), self.covariance)
            ds = ds.assign_coords(cov_i=names, cov_j=names)
        if self.bootstrap_params is not None:
            b = np.stack([self.bootstrap_params[k] for k in names], axis=-1)
            ds["bootstrap_coefficients"] = (("bootstrap",) + dims + ("param",), b)
        ds.attrs.update(
            form=self.form.name,
            law=self.form.math,
            objective=self.spec.objective,
            delta=self.spec.delta if self.spec.objective == "log_huber" else np.nan,
            n_starts=int(np.prod([g.size for g in self.start_grid.values()])) if self.start_grid else 1,
            refine=self.spec.refine,
        )
        return ds

    # ------------------------------------------------------------ display
    def summary(self, level: float = 0.95) -> str:
        """A text table of parameters (with intervals when available) and status."""
        lines = [f"form {self.form.name}: {self.form.math}", f"objective {self.spec.objective}"]
        if self.batch_shape:
            lines.append(f"{int(np.prod(self.batch_shape))} curves, batch shape {self.batch_shape}")
            st, counts = np.unique(np.asarray(self.status), return_counts=True)
            lines.append("status: " + ", ".join(f"{s} {c}" for s, c in zip(st, counts)))
            return "\n".join(lines)
        ci = self.ci(level) if self.bootstrap_params is not None else None
        se = self.stderr if (ci is None and self.spec.objective in ("log_mse", "mse")) else None
        for k in self.form.params:
            v = float(self.params[k])
            if ci is not None:
                lo, hi = ci[k]
                extra = f"  [{float(lo):.6g}, {float(hi):.6g}] ({level:.0%} bootstrap)"
            elif se is not None and np.isfinite(se[k]):
                extra = f"  ± {float(se[k]):.3g} (s.e.)"
            else:
                extra = ""
            lines.append(f"  {k:>10} = {v:.6g}{extra}")
        lines.append(f"objective = {float(self.objective):.6g}; status = {self.status}"
                     + (f" ({self.bound_params} on bound)" if self.bound_params else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        if self.batch_shape:
            return f"FitResult(form={self.form.name!r}, batch_shape={self.batch_shape}, objective={self.spec.objective!r})"
        ps = ", ".join(f"{k}={float(v):.6g}" for k, v in self.params.items())
        return f"FitResult(form={self.form.name!r}, {ps}, status={self.status!r})"


def _check_level(level: float) -> None:
    if not (0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _nanquantile(a: np.ndarray, q):
    a = np.asarray(a, dtype=np.float64)
    allnan = np.all(np.isnan(a), axis=0)
    filled = np.where(allnan[None], 0.0, a)
    lo, hi = np.nanquantile(filled, q, axis=0)
    return np.where(allnan, np.nan, lo), np.where(allnan, np.nan, hi)


def _natural(form: Form, u: np.ndarray) -> dict[str, np.ndarray]:
    from ._optimize import to_natural

    with enable_x64():
        return {k: np.asarray(v) for k, v in to_natural(form, jnp.asarray(u)).items()}


def _normalize_x(form: Form, x) -> dict[str, np.ndarray]:
    if len(form.variables) == 1:
        if isinstance(x, Mapping):
            x = x[form.variables[0]]
        xs = {form.variables[0]: np.atleast_1d(np.asarray(x, dtype=np.float64))}
    else:
        if not isinstance(x, Mapping):
            raise TypeError(f"form {form.name!r} needs x as a mapping with keys {form.variables}")
        xs = {v: np.atleast_1d(np.asarray(x[v], dtype=np.float64)) for v in form.variables}
        xs = dict(zip(xs, np.broadcast_arrays(*xs.values())))
    return xs


__all__ = ["FitResult", "STATUSES", "transform_kinds"]
