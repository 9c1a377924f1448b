r"""Compute-optimal allocation from a fitted Chinchilla or Kaplan law.

For a compute budget ``C = k N D`` (``k = 6`` by default: forward + backward FLOPs per
parameter per token) the loss-minimising model size and data size are power laws,

.. math::
    N_{opt}(C) = G\,(C/k)^{a}, \qquad D_{opt}(C) = G^{-1}\,(C/k)^{b}, \qquad a + b = 1,

Chinchilla (Hoffmann et al. 2022, eq. 4; Besiroglu et al. 2024):
``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``.
Kaplan (Kaplan et al. 2020, eq. 1.5 rewritten): with ``r = alpha_N/alpha_D``,
``a = 1/(1+r)``, ``b = r/(1+r)``, ``G = (r N_c^r / D_c)^(1/(1+r))``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._result import FitResult
from ._shared import GroupedFit, group_name
from ._x64 import enable_x64


def _chinchilla(p, logc):
    import jax.numpy as jnp

    s = p["alpha"] + p["beta"]
    a, b = p["beta"] / s, p["alpha"] / s
    log_g = (jnp.log(p["alpha"] * p["A"]) - jnp.log(p["beta"] * p["B"])) / s
    log_n = log_g + a * logc
    log_d = -log_g + b * logc
    loss = p["E"] + p["A"] * jnp.exp(-p["alpha"] * log_n) + p["B"] * jnp.exp(-p["beta"] * log_d)
    return a, b, log_g, log_n, log_d, loss


def _kaplan(p, logc):
    import jax.numpy as jnp

    r = p["alpha_N"] / p["alpha_D"]
    a, b = 1.0 / (1.0 + r), r / (1.0 + r)
    log_g = (jnp.log(r) + r * jnp.log(p["N_c"]) - jnp.log(p["D_c"])) / (1.0 + r)
    log_n = log_g + a * logc
    log_d = -log_g + b * logc
    loss = jnp.exp(p["alpha_D"] * jnp.logaddexp(r * (jnp.log(p["N_c"]) - log_n), jnp.log(p["D_c"]) - log_d))
    return a, b, log_g, log_n, log_d, loss


LAWS = {"chinchilla": (_chinchilla, ("E", "A", "B", "alpha", "beta")),
        "kaplan": (_kaplan, ("N_c", "D_c", "alpha_N", "alpha_D"))}


def _parameter_sets(result):
    """``(law name, param names, values (m, p), covariance (m, p, p), bootstrap (B, m, p) | None, batch dims)``."""
    if isinstance(result, GroupedFit):
        form, joint = result.form, result.joint
    elif isinstance(result, FitResult):
        form, joint = result.form, None
    else:
        raise TypeError(f"compute_optimal takes a FitResult or GroupedFit, got {type(result).__name__}")
    if form.name not in LAWS or set(form.params) != set(LAWS[form.name][1]):
        raise ValueError(f"compute_optimal needs a fit of the 'chinchilla' or 'kaplan' form (all parameters free), "
                         f"got form {form.name!r}")
    names = LAWS[form.name][1]
    if joint is None:
        m = int(np.prod(result.batch_shape, dtype=int))
        vals = np.stack([np.asarray(result.params[k], dtype=float).reshape(m) for k in names], -1)
        order = [form.params.index(k) for k in names]
        cov = result.covariance.reshape(m, len(form.params), len(form.params))[:, order][:, :, order]
        boot = None
        if result.bootstrap_params is not None:
            B = next(iter(result.bootstrap_params.values())).shape[0]
            boot = np.stack([np.asarray(result.bootstrap_params[k], dtype=float).reshape(B, m) for k in names], -1)
        dims = {f"curve_{i}": n for i, n in enumerate(result.batch_shape)}
        return form.name, names, vals, cov, boot, dims, result.batch_shape
    G = len(result.groups)
    jnames = list(joint.form.params)
    idx = np.array([[jnames.index(k if k in result.shared else group_name(k, g)) for k in names] for g in range(G)])
    jv = np.array([float(joint.params[k]) for k in jnames])
    vals = jv[idx]
    jc = joint.covariance
    cov = np.stack([jc[np.ix_(i, i)] for i in idx])
    return form.name, names, vals, cov, None, {"group": G}, (G,)


def compute_optimal(result, compute, *, flops: float = 6.0, level: float = 0.95):
    r"""Loss-minimising model size ``N_opt``, data ``D_opt`` and loss ``L_opt`` per budget.

    Parameters
    ----------
    result : FitResult or GroupedFit
        A fit of the ``chinchilla`` or ``kaplan`` form (a batch, or a shared fit, gives
        one allocation per curve or group).
    compute : array_like
        Compute budgets ``C`` in FLOPs, > 0.
    flops : float
        ``k`` in the FLOP model ``C = k N D`` (default 6).
    level : float
        Interval level.

    Returns
    -------
    xarray.Dataset
        Over ``(*batch, compute)``: ``N_opt``, ``D_opt``, ``L_opt`` with delta-method
        intervals ``*_lower``, ``*_upper`` (log-normal for ``N`` and ``D``; from the fit's
        :attr:`~FitResult.covariance`, sandwich for Huber fits) and, when the fit was
        bootstrapped, percentile intervals ``*_boot_lower``, ``*_boot_upper``. Exponents
        ``a``, ``b`` and coefficient ``G`` (``N_opt = G (C/k)^a``, ``D_opt = (C/k)^b / G``)
        as variables with their standard errors, and as attrs for a single fit.

    Examples
    --------
    >>> import numpy as np, scaling
    >>> N, D = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6))
    >>> L = 1.7 + 400 / N**0.34 + 410 / D**0.28
    >>> res = scaling.fit("chinchilla", {"N": N.ravel(), "D": D.ravel()}, L.ravel())
    >>> opt = scaling.compute_optimal(res, [1e21, 1e23])
    >>> round(opt.attrs["a"], 4), round(opt.attrs["b"], 4)
    (0.4516, 0.5484)
    >>> bool(np.allclose(6 * opt.N_opt * opt.D_opt, opt["compute"]))
    True
    """
    import jax
    import jax.numpy as jnp
    import xarray as xr

    c = np.atleast_1d(np.asarray(compute, dtype=np.float64))
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"compute must be a 1-D array of finite budgets > 0, got {compute!r}")
    if isinstance(flops, bool) or not isinstance(flops, (int, float, np.floating)) or not (np.isfinite(flops) and flops > 0):
        raise ValueError(f"flops (k in C = k N D) must be a finite number > 0, got {flops!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    law_name, names, vals, cov, boot, dims, batch_shape = _parameter_sets(result)
    law = LAWS[law_name][0]
    logc = np.log(c / flops)

    def outputs(theta):  # (p,) -> (a, b, log G, log N (k,), log D (k,), L (k,))
        p = dict(zip(names, theta))
        a, b, lg, ln, ld, loss = law(p, jnp.asarray(logc))
        return jnp.concatenate([jnp.stack([a, b, lg]), ln, ld, loss])

    with enable_x64():
        f = jax.jit(jax.vmap(outputs))
        jac = jax.jit(jax.vmap(jax.jacfwd(outputs)))
        out = np.asarray(f(jnp.asarray(vals)))
        J = np.asarray(jac(jnp.asarray(vals)))
        var = np.einsum("mqi,mij,mqj->mq", J, cov, J)
        bout = None if boot is None else np.asarray(f(jnp.asarray(boot.reshape(-1, boot.shape[-1])))).reshape(
            boot.shape[0], boot.shape[1], -1)
    se = np.sqrt(np.where(var >= 0, var, np.nan))
    k = c.size
    z = stats.norm.ppf((1 + level) / 2)
    bdims = tuple(dims)
    shape = tuple(batch_shape)

    def series(a, i):
        return a[..., i: i + k].reshape(shape + (k,))

    ln, ld, loss = series(out, 3), series(out, 3 + k), series(out, 3 + 2 * k)
    sln, sld, sl = series(se, 3), series(se, 3 + k), series(se, 3 + 2 * k)
    cdims = bdims + ("compute",)
    data = {
        "N_opt": (cdims, np.exp(ln), {"long_name": "compute-optimal parameters", "units": "parameters"}),
        "D_opt": (cdims, np.exp(ld), {"long_name": "compute-optimal tokens", "units": "tokens"}),
        "L_opt": (cdims, loss, {"long_name": "loss at the optimum", "units": "loss"}),
        "N_opt_lower": (cdims, np.exp(ln - z * sln)), "N_opt_upper": (cdims, np.exp(ln + z * sln)),
        "D_opt_lower": (cdims, np.exp(ld - z * sld)), "D_opt_upper": (cdims, np.exp(ld + z * sld)),
        "L_opt_lower": (cdims, loss - z * sl), "L_opt_upper": (cdims, loss + z * sl),
        "a": (bdims, out[..., 0].reshape(shape)), "b": (bdims, out[..., 1].reshape(shape)),
        "G": (bdims, np.exp(out[..., 2]).reshape(shape)),
        "a_stderr": (bdims, se[..., 0].reshape(shape)), "b_stderr": (bdims, se[..., 1].reshape(shape)),
        "log_G_stderr": (bdims, se[..., 2].reshape(shape)),
    }
    if bout is not None:
        q = [(1 - level) / 2, (1 + level) / 2]
        for name, i, tr in (("N_opt", 3, np.exp), ("D_opt", 3 + k, np.exp), ("L_opt", 3 + 2 * k, lambda v: v)):
            lo, hi = np.nanquantile(tr(bout[..., i: i + k]), q, axis=0)
            data[f"{name}_boot_lower"] = (cdims, lo.reshape(shape + (k,)))
            data[f"{name}_boot_upper"] = (cdims, hi.reshape(shape + (k,)))
    coords = {"compute": ("compute", c, {"units": "FLOPs"})}
    if isinstance(result, GroupedFit):
        coords["group"] = [str(g) for g in result.groups]
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(form=law_name, flops_model=f"C = {flops:g} N D", flops=float(flops), level=float(level),
                    interval="delta method (log-normal for N_opt, D_opt)"
                    + ("; bootstrap percentile in *_boot_*" if bout is not None else ""),
                    covariance=(result.joint if isinstance(result, GroupedFit) else result).covariance_kind)
    if not shape:
        ds.attrs.update(a=float(out[0, 0]), b=float(out[0, 1]), G=float(np.exp(out[0, 2])))
    return ds


__all__ = ["compute_optimal"]
