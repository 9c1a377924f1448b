"""The result of a fit: parameters, status, uncertainty, predictions, export."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import numpy as np

from . import _fast
from ._engine import compiled
from ._forms import Form, evaluate
from ._profile import profile_ci as _profile_ci
from ._spec import Spec, transform_kinds
from ._x64 import enable_x64

STATUSES = ("converged", "grid_edge", "at_bound", "max_iter", "not_converged", "failed", "invalid", "unidentifiable")


def scalar_or_array(a: np.ndarray):
    """0-d arrays become Python/NumPy scalars; others pass through."""
    a = np.asarray(a)
    if a.ndim:
        return a
    return a.item() if a.dtype.kind in "USbO" else a[()]


_scalar_or_array = scalar_or_array


def law_values(form: Form, params: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray]) -> np.ndarray:
    """The law for ``m`` parameter sets at their own points: params ``(m,)``, x ``(m, k)`` -> ``(m, k)``."""
    fast = _fast.law_values(form, params, x)
    if fast is not None:
        return fast
    import jax
    import jax.numpy as jnp

    with enable_x64():
        xd = {v: jnp.asarray(a) for v, a in x.items()}
        p = {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
        return np.asarray(jax.vmap(lambda pp, xx: evaluate(form, pp, xx))(p, xd), dtype=np.float64)


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

    # ------------------------------------------------------------ basics
    @property
    def objective_name(self) -> str:
        return self.spec.objective.name

    def _flat_params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.params.items()}

    def predict(self, x):
        """The fitted law at new points: shape ``(*batch, k)`` for ``k`` points.

        A scalar ``x`` (or a mapping of scalars) on a single fit gives a scalar.

        Examples
        --------
        >>> import numpy as np, scaling
        >>> D = np.geomspace(10, 1e4, 10)
        >>> res = scaling.fit("power", D, 2.0 * D ** -0.5)
        >>> round(float(res.predict(1e6)), 6)
        0.002
        >>> np.round(res.predict([1e6]), 6)
        array([0.002])
        """
        scalar = _is_scalar_x(self.form, x) and not self.batch_shape
        xs = _normalize_x(self.form, x)
        k = next(iter(xs.values())).shape[-1]
        flat = self._flat_params()
        m = len(next(iter(flat.values())))
        xm = {v: np.broadcast_to(a.reshape((-1, k)) if a.ndim > 1 else a, (m, k)) for v, a in xs.items()}
        out = law_values(self.form, flat, xm).reshape(self.batch_shape + (k,))
        return float(out[0]) if scalar else out

    def _fitted_values(self) -> np.ndarray:
        return law_values(self.form, self._flat_params(), self.x)

    def residuals(self) -> np.ndarray:
        """Residuals the objective was built from (log ratios, or differences for ``mse``), ``(*batch, n)``."""
        r = _fast.residuals(self.spec.objective, self._fitted_values(), self.y)
        r = np.where(self.w > 0, r, np.nan)
        return r.reshape(self.batch_shape + (self.y.shape[-1],))

    # ------------------------------------------------------------ model comparison
    @property
    def n_points(self) -> np.ndarray:
        """Effective number of points: the sum of weights (frequency-weight convention)."""
        return scalar_or_array(self.w.sum(axis=-1).reshape(self.batch_shape))

    @property
    def n_params(self) -> int:
        return len(self.form.params)

    @property
    def rss(self) -> np.ndarray:
        """Weighted residual sum of squares (log space for log objectives)."""
        r = np.nan_to_num(self.residuals().reshape(self.y.shape))
        return scalar_or_array((self.w * r**2).sum(axis=-1).reshape(self.batch_shape))

    def _rss_floor(self) -> np.ndarray:
        """The smallest RSS rounding can resolve: an exact fit gets this instead of 0."""
        scale = 1.0 if self.spec.objective.log else np.nanmax(np.abs(self.y), axis=-1) ** 2
        return (self.w.sum(axis=-1) * 1e-30 * scale).reshape(self.batch_shape)

    def _n_log_sigma2(self) -> np.ndarray:
        n = np.asarray(self.n_points, dtype=float)
        rss = np.maximum(np.asarray(self.rss, dtype=float), self._rss_floor())
        return n * np.log(rss / n)

    @property
    def aic(self) -> np.ndarray:
        """Akaike information criterion of a Gaussian model of the residuals.

        An exact fit (RSS below rounding) uses the rounding floor ``n * 1e-30`` (relative):
        criteria stay finite, so differences between forms never become NaN.
        """
        return self._n_log_sigma2() + 2 * self.n_params

    @property
    def bic(self) -> np.ndarray:
        """Bayesian information criterion of a Gaussian model of the residuals."""
        return self._n_log_sigma2() + self.n_params * np.log(np.asarray(self.n_points, dtype=float))

    @property
    def r_squared(self) -> np.ndarray:
        """Weighted ``R^2`` in the space of the residuals (log space for log objectives)."""
        y = np.log(self.y) if self.spec.objective.log else self.y
        w = self.w
        mean = (w * y).sum(-1, keepdims=True) / np.maximum(w.sum(-1, keepdims=True), 1e-300)
        tss = (w * (y - mean) ** 2).sum(-1).reshape(self.batch_shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            return scalar_or_array(1.0 - np.asarray(self.rss, dtype=float) / tss)

    # ------------------------------------------------------------ uncertainty
    @property
    def covariance_kind(self) -> str:
        """``"gauss-newton"`` (least squares: ``s^2 (J^T W J)^-1``) or ``"sandwich"`` (robust)."""
        return "gauss-newton" if self.spec.objective.gaussian else "sandwich"

    def _jacobian(self):
        """``d residual / d param (m, n, p)`` and the residuals ``(m, n)`` at the optimum."""
        flat = self._flat_params()
        flat = {k: np.where(np.isfinite(v), v, 1.0) for k, v in flat.items()}
        closed_form = _fast.residual_jacobian(self.form, self.spec.objective, flat, self.x, self.y)
        if closed_form is not None:  # power sums: no tracing
            return closed_form
        import jax.numpy as jnp

        with enable_x64():
            J, r = compiled().batch_residual_jacobian(self.spec, {k: jnp.asarray(v) for k, v in flat.items()},
                                           {v: jnp.asarray(a) for v, a in self.x.items()}, jnp.asarray(self.y))
            return np.asarray(J), np.asarray(r)

    @functools.cached_property
    def covariance(self) -> np.ndarray:
        """Parameter covariance, shape ``(*batch, p, p)``, rows in ``form.params`` order.

        Least-squares objectives (``log_mse``, ``mse``): Gauss-Newton ``s^2 (J^T W J)^-1``
        with ``s^2 = RSS / (n - p)``. Other objectives (``log_huber``, ``asymmetric``):
        the sandwich (robust) covariance of an M-estimator,
        ``n/(n-p) A^-1 B A^-1`` with ``B = sum_i w_i psi(r_i)^2 J_i J_i^T`` and
        ``A = sum_i w_i psi'(r_i) J_i J_i^T``; for Huber ``psi'`` (1 inside ``delta``, 0
        outside) is replaced by its mean over the points (Huber 1981, sec. 7.6), so ``A``
        stays positive definite however few points fall inside ``delta``. See
        :attr:`covariance_kind`. NaN for curves with a parameter on a bound, invalid or
        unidentifiable curves (see :attr:`status`).
        """
        J, r = self._jacobian()
        w = self.w
        p = len(self.form.params)
        n = w.sum(axis=-1)
        obj = self.spec.objective
        if obj.gaussian:
            s2 = (w * r**2).sum(axis=-1) / np.maximum(n - p, 1)
            bread_w = w
            meat_w = None
        else:
            import jax.numpy as jnp

            with enable_x64():
                bread_w = w * np.asarray(obj.bread_weights(jnp.asarray(r), jnp.asarray(w)))
                meat_w = w * np.asarray(obj.psi(jnp.asarray(r))) ** 2
        A = np.einsum("mni,mn,mnj->mij", J, bread_w, J)
        cov = np.full(A.shape, np.nan)
        status = np.asarray(self.status).reshape(-1)
        bad = np.isin(status, ("at_bound", "invalid", "unidentifiable", "failed"))
        for i in np.flatnonzero(~bad):
            try:
                Ainv = np.linalg.inv(A[i])
            except np.linalg.LinAlgError:
                continue
            if meat_w is None:
                cov[i] = s2[i] * Ainv
            else:
                B = np.einsum("ni,n,nj->ij", J[i], meat_w[i], J[i])
                cov[i] = n[i] / max(n[i] - p, 1) * Ainv @ B @ Ainv
        return cov.reshape(self.batch_shape + (p, p))

    @property
    def stderr(self) -> dict[str, np.ndarray]:
        """Standard errors from :attr:`covariance` (every objective; see :attr:`covariance_kind`)."""
        d = np.sqrt(np.maximum(np.diagonal(self.covariance, axis1=-2, axis2=-1), 0.0))
        d = np.where(np.isnan(np.diagonal(self.covariance, axis1=-2, axis2=-1)), np.nan, d)
        return {k: scalar_or_array(d[..., i]) for i, k in enumerate(self.form.params)}

    @property
    def correlation(self) -> np.ndarray:
        """Parameter correlation matrix from :attr:`covariance`, ``(*batch, p, p)``."""
        c = self.covariance
        d = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
        with np.errstate(divide="ignore", invalid="ignore"):
            return c / (d[..., :, None] * d[..., None, :])

    def wald_ci(self, level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``estimate +- t * stderr`` (Student t with ``n - p`` degrees of freedom)."""
        from scipy import stats

        _check_level(level)
        n = np.asarray(self.n_points, dtype=float)
        t = stats.t.ppf((1 + level) / 2, np.maximum(n - self.n_params, 1))
        return {k: (scalar_or_array(np.asarray(self.params[k]) - t * np.asarray(se)),
                    scalar_or_array(np.asarray(self.params[k]) + t * np.asarray(se)))
                for k, se in self.stderr.items()}

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
            out[k] = (scalar_or_array(lo), scalar_or_array(hi))
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
        xm = {v: np.broadcast_to(a.reshape((-1, k)) if a.ndim > 1 else a, (m, k)) for v, a in xs.items()}
        preds = law_values(self.form, {p: v.reshape(-1) for p, v in flat.items()},
                           {v: np.tile(a, (B, 1)) for v, a in xm.items()}).reshape(B, m, k)
        q = [(1 - level) / 2, (1 + level) / 2]
        lo, hi = _nanquantile(preds, q)
        return lo.reshape(self.batch_shape + (k,)), hi.reshape(self.batch_shape + (k,))

    def profile_ci(self, param: str, level: float = 0.95):
        """Profile-likelihood interval of ``param`` (every objective): see :func:`scaling.profile_ci`."""
        return _profile_ci(self, param, level=level)

    # ------------------------------------------------------------ export
    def to_dataset(self, dims: tuple[str, ...] | None = None, coords: Mapping | None = None):
        """The fit as an ``xarray.Dataset`` in the layout of ``xarray.DataArray.curvefit``.

        Variables: ``coefficients (*dims, param)``, ``stderr (*dims, param)``, ``objective``,
        ``status``, ``converged``, ``covariance (*dims, cov_i, cov_j)`` (its kind in the
        attrs), and ``bootstrap_coefficients (bootstrap, *dims, param)`` when bootstrapped.
        """
        import xarray as xr

        dims = tuple(dims) if dims is not None else tuple(f"curve_{i}" for i in range(len(self.batch_shape)))
        if len(dims) != len(self.batch_shape):
            raise ValueError(f"dims {dims} must name the {len(self.batch_shape)} batch axes of shape {self.batch_shape}")
        names = list(self.form.params)
        coef = np.stack([np.asarray(self.params[k], dtype=np.float64) for k in names], axis=-1)
        se = np.stack([np.asarray(self.stderr[k], dtype=np.float64) for k in names], axis=-1)
        ds = xr.Dataset(
            {
                "coefficients": (dims + ("param",), coef),
                "stderr": (dims + ("param",), se, {"kind": self.covariance_kind}),
                "objective": (dims, np.asarray(self.objective, dtype=np.float64)),
                "status": (dims, np.asarray(self.status, dtype=str)),
                "converged": (dims, np.asarray(self.converged, dtype=bool)),
                "covariance": (dims + ("cov_i", "cov_j"), self.covariance, {"kind": self.covariance_kind}),
            },
            coords={"param": names, "cov_i": names, "cov_j": names, **dict(coords or {})},
        )
        if self.bootstrap_params is not None:
            b = np.stack([self.bootstrap_params[k] for k in names], axis=-1)
            ds["bootstrap_coefficients"] = (("bootstrap",) + dims + ("param",), b)
        obj = self.spec.objective
        ds.attrs.update(
            form=self.form.name,
            law=self.form.text,
            objective=obj.name,
            delta=getattr(obj, "delta", np.nan),
            n_starts=int(np.prod([g.size for g in self.start_grid.values()])) if self.start_grid else 1,
            refine=self.spec.refine,
        )
        return ds

    # ------------------------------------------------------------ display
    def _interval_table(self, level: float):
        """Intervals and their kind: bootstrap percentile if resampled, else Wald."""
        if self.bootstrap_params is not None:
            return self.ci(level), f"{level:.0%} bootstrap percentile"
        return self.wald_ci(level), f"{level:.0%} Wald (t x s.e., {self.covariance_kind} covariance)"

    def summary(self, level: float = 0.95) -> str:
        """A plain-text report to paste into a paper or a log.

        Formula, objective, every parameter with its standard error and interval (and the
        interval's kind), the correlation matrix, AIC/BIC, ``R^2`` in log space, status. A
        batched result gives a table, one row per curve.

        Examples
        --------
        >>> import numpy as np, scaling
        >>> D = np.geomspace(1e2, 1e5, 12)
        >>> y = 2.0 * D ** -0.3 * np.exp(0.01 * np.sin(np.arange(12.0)))
        >>> text = scaling.fit("power", D, y).summary()
        >>> text.splitlines()[0]
        'form power: L = A * x^(-alpha)'
        >>> "correlation" in text and "R^2 (log space)" in text
        True
        """
        _check_level(level)
        obj = self.spec.objective
        lines = [f"form {self.form.name}: {self.form.text}", f"objective: {obj.describe()}"]
        if self.batch_shape:
            return "\n".join(lines + self._batch_table())
        se = self.stderr
        ci, kind = self._interval_table(level)
        lines.append(f"points: {float(self.n_points):g}; status: {self.status}"
                     + (f" ({self.bound_params} on bound)" if self.bound_params else ""))
        lines.append(f"intervals: {kind}")
        lines.append(f"  {'parameter':>10}  {'estimate':>12}  {'std.err':>10}  {'interval':>27}")
        for k in self.form.params:
            lo, hi = ci[k]
            lines.append(f"  {k:>10}  {float(self.params[k]):>12.6g}  {float(se[k]):>10.3g}  "
                         f"[{float(lo):>11.6g}, {float(hi):>11.6g}]")
        lines.append("correlation:")
        corr = self.correlation
        lines.append("  " + " " * 10 + "".join(f"{k:>9}" for k in self.form.params))
        for i, k in enumerate(self.form.params):
            lines.append(f"  {k:>10}" + "".join(f"{corr[i, j]:>9.3f}" for j in range(len(self.form.params))))
        lines.append(f"objective = {float(self.objective):.6g}; AIC = {float(self.aic):.4f}; "
                     f"BIC = {float(self.bic):.4f}; R^2 ({'log' if obj.log else 'linear'} space) = "
                     f"{float(self.r_squared):.6f}")
        return "\n".join(lines)

    def _batch_table(self, max_rows: int = 50) -> list[str]:
        m = int(np.prod(self.batch_shape))
        status = np.asarray(self.status).reshape(-1)
        st, counts = np.unique(status, return_counts=True)
        out = [f"{m} curves, batch shape {self.batch_shape}; status: " + ", ".join(f"{s} {c}" for s, c in zip(st, counts))]
        se = {k: np.asarray(v).reshape(-1) for k, v in self.stderr.items()}
        flat = self._flat_params()
        head = f"  {'curve':>10}" + "".join(f"  {k:>12}  {'s.e.':>9}" for k in self.form.params) + f"  {'status':>14}"
        out.append(head)
        for r in range(min(m, max_rows)):
            idx = str(np.unravel_index(r, self.batch_shape)) if len(self.batch_shape) > 1 else str(r)
            out.append(f"  {idx:>10}" + "".join(f"  {flat[k][r]:>12.6g}  {se[k][r]:>9.3g}" for k in self.form.params)
                       + f"  {status[r]:>14}")
        if m > max_rows:
            out.append(f"  ... {m - max_rows} more curves (to_dataset() holds all)")
        return out

    def __repr__(self) -> str:
        if self.batch_shape:
            return f"FitResult(form={self.form.name!r}, batch_shape={self.batch_shape}, objective={self.objective_name!r})"
        ps = ", ".join(f"{k}={float(v):.6g}" for k, v in self.params.items())
        return f"FitResult(form={self.form.name!r}, {ps}, status={self.status!r})"


def _check_level(level: float) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not (0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _nanquantile(a: np.ndarray, q):
    a = np.asarray(a, dtype=np.float64)
    allnan = np.all(np.isnan(a), axis=0)
    filled = np.where(allnan[None], 0.0, a)
    lo, hi = np.nanquantile(filled, q, axis=0)
    return np.where(allnan, np.nan, lo), np.where(allnan, np.nan, hi)


def _is_scalar_x(form: Form, x) -> bool:
    if isinstance(x, Mapping):
        return all(np.ndim(v) == 0 for v in x.values())
    return np.ndim(x) == 0


def _normalize_x(form: Form, x) -> dict[str, np.ndarray]:
    if len(form.variables) == 1:
        if isinstance(x, Mapping):
            if set(x) != set(form.variables):
                raise ValueError(f"form {form.name!r} takes variable {form.variables[0]!r}; got keys {sorted(x)}")
            x = x[form.variables[0]]
        xs = {form.variables[0]: np.atleast_1d(np.asarray(x, dtype=np.float64))}
    else:
        if not isinstance(x, Mapping):
            raise TypeError(f"form {form.name!r} needs x as a mapping with keys {form.variables}")
        missing = [v for v in form.variables if v not in x]
        if missing:
            raise ValueError(f"form {form.name!r} needs x keys {form.variables}; missing {missing}")
        xs = {v: np.atleast_1d(np.asarray(x[v], dtype=np.float64)) for v in form.variables}
        xs = dict(zip(xs, np.broadcast_arrays(*xs.values())))
    return xs


__all__ = ["FitResult", "STATUSES", "law_values", "scalar_or_array", "transform_kinds"]
