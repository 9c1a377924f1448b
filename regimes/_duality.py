"""The duality test: data exponent at large model = model exponent at large data (= alpha_K)."""

from __future__ import annotations

import numpy as np
import xarray as xr

import scaling

from ._grid import _mean_curve, loss_variable


def _edge_mask(da, vary, fixed_dim, ratio, min_size):
    values = da[vary].values.astype(float)
    return (values <= float(da[fixed_dim].values[-1]) / ratio) & (values >= min_size)


def _edge(da, vary, fixed_dim, ratio, min_size):
    return da.isel({fixed_dim: -1}).isel({vary: _edge_mask(da, vary, fixed_dim, ratio, min_size)})


def duality(ds, var: str | None = None, *, D: str = "D", P: str = "P", seed: str | None = "seed",
            ratio: float = 4.0, form: str = "power", alpha_K=None, eigenvalues=None, bootstrap: int = 200,
            key=0, level: float = 0.95, min_size: float = 0) -> xr.Dataset:
    r"""Test the duality ``alpha_D = alpha_P (= alpha_K)`` on a loss grid over (D, P).

    ``alpha_D`` is fitted to the loss against ``D`` at the largest ``P`` (restricted to
    ``D <= P_max / ratio``, the resolution-limited side), ``alpha_P`` to the loss against
    ``P`` at the largest ``D`` (``P <= D_max / ratio``); sizes below ``min_size`` are left out
    (the first few eigenmodes make the smallest sizes pre-asymptotic). Intervals come from a bootstrap
    over seeds when the grid has a ``seed`` dim with several seeds (the same resampled
    seeds for both legs, so their difference is paired), else over points. ``form="power"``
    (default) suits curves without a floor inside the window, such as noiseless targets at
    ``D <= P/ratio``; ``"offset"`` adds an asymptote (less stable on noisy edges). The optional
    third leg ``alpha_K`` is a number, a ``(value, lo, hi)`` triple, or is fitted to
    ``eigenvalues`` by :func:`kernels.spectral_exponent`.

    Returns
    -------
    xarray.Dataset
        ``alpha``, ``alpha_lo``, ``alpha_hi`` over ``leg`` (``"D"``, ``"P"``[, ``"K"``]);
        ``difference`` (alpha_D - alpha_P) with ``difference_lo/hi``; attrs
        ``consistent`` (the difference interval contains 0) and the configuration.

    Examples
    --------
    >>> import numpy as np, xarray as xr, regimes
    >>> D = P = np.geomspace(10, 1e5, 17)
    >>> L = D[:, None] ** -0.4 + P[None, :] ** -0.4   # each edge has a floor: use "offset"
    >>> r = regimes.duality(xr.Dataset({"test_loss": (("D", "P"), L)}, coords={"D": D, "P": P}),
    ...                     form="offset", bootstrap=50)
    >>> np.round(r.alpha.values, 3)
    array([0.4, 0.4])
    """
    from scaling._fit import as_key  # one definition of "key or int seed"
    import jax

    da = loss_variable(ds, var)
    for d in (D, P):
        if d not in da.dims:
            raise ValueError(f"dimension {d!r} not in {var!r} dims {da.dims}")
    if form not in ("offset", "power"):
        raise ValueError(f"unknown form {form!r}; expected one of: offset, power")
    has_seeds = bool(seed) and seed in da.dims and da.sizes[seed] >= 2
    mean = _mean_curve(da, seed).transpose(D, P)
    edge_D = _edge(mean, D, P, ratio, min_size)
    edge_P = _edge(mean, P, D, ratio, min_size)
    for name, e in (("D", edge_D), ("P", edge_P)):
        if np.count_nonzero(np.isfinite(e.values)) < 5:
            raise ValueError(
                f"only {np.count_nonzero(np.isfinite(e.values))} points on the {name} edge with ratio {ratio}: "
                "extend the grid or lower ratio"
            )
    xD, xP = edge_D[D].values.astype(float), edge_P[P].values.astype(float)
    fit_D = scaling.fit(form, xD, edge_D.values, skipna=True)
    fit_P = scaling.fit(form, xP, edge_P.values, skipna=True)
    q = [(1 - level) / 2, (1 + level) / 2]
    k = as_key(key)
    if has_seeds:
        S = da.sizes[seed]
        idx = np.asarray(jax.random.randint(k, (bootstrap, S), 0, S))
        full = da.transpose(seed, D, P).values
        resampled = np.nanmean(full[idx], axis=1)  # (B, D, P) with the same seeds for both legs
        mD = _edge_mask(mean, D, P, ratio, min_size)
        mP = _edge_mask(mean, P, D, ratio, min_size)
        bD = scaling.fit(form, xD, resampled[:, mD, -1], skipna=True, errors="ignore").params["alpha"]
        bP = scaling.fit(form, xP, resampled[:, -1, mP], skipna=True, errors="ignore").params["alpha"]
        method = f"bootstrap over {S} seeds ({bootstrap} resamples)"
    else:
        kD, kP = jax.random.split(k)
        bD = scaling.fit(form, xD, edge_D.values, skipna=True, bootstrap=bootstrap, key=kD).bootstrap_params["alpha"]
        bP = scaling.fit(form, xP, edge_P.values, skipna=True, bootstrap=bootstrap, key=kP).bootstrap_params["alpha"]
        method = f"bootstrap over points ({bootstrap} resamples)"
    legs = ["D", "P"]
    alpha = [float(fit_D.params["alpha"]), float(fit_P.params["alpha"])]
    lo = [float(np.nanquantile(bD, q[0])), float(np.nanquantile(bP, q[0]))]
    hi = [float(np.nanquantile(bD, q[1])), float(np.nanquantile(bP, q[1]))]
    diff = np.asarray(bD) - np.asarray(bP)
    if eigenvalues is not None:
        import kernels

        se = kernels.spectral_exponent(eigenvalues, level=level)
        alpha_K = (se.alpha, *se.ci)
    if alpha_K is not None:
        kv = np.atleast_1d(np.asarray(alpha_K, dtype=float))
        legs.append("K")
        alpha.append(float(kv[0]))
        lo.append(float(kv[1]) if kv.size == 3 else np.nan)
        hi.append(float(kv[2]) if kv.size == 3 else np.nan)
    d_lo, d_hi = np.nanquantile(diff, q)
    out = xr.Dataset(
        {
            "alpha": ("leg", alpha),
            "alpha_lo": ("leg", lo),
            "alpha_hi": ("leg", hi),
            "difference": ((), alpha[0] - alpha[1]),
            "difference_lo": ((), float(d_lo)),
            "difference_hi": ((), float(d_hi)),
            "n_points": ("leg", [xD.size, xP.size] + ([0] if len(legs) == 3 else [])),
        },
        coords={"leg": legs},
        attrs={
            "consistent": int(d_lo <= 0 <= d_hi),
            "interval_method": method,
            "form": form,
            "ratio": float(ratio),
            "level": float(level),
            "D_edge": f"{da.name} vs {D} at {P} = {float(mean[P].values[-1]):g}, {D} <= {P}/{ratio:g}",
            "P_edge": f"{da.name} vs {P} at {D} = {float(mean[D].values[-1]):g}, {P} <= {D}/{ratio:g}",
        },
    )
    out["alpha"].attrs["long_name"] = "scaling exponent"
    return out
