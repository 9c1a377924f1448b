"""Fit scaling laws along named dimensions of xarray objects; the ``.scaling`` accessor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from . import _forms
from ._fit import fit
from ._local import local_exponent


def fit_dataarray(da: xr.DataArray, dim: str | Sequence[str], *, form, variables: Mapping[str, str] | None = None,
                  skipna: bool = True, **fit_kwargs) -> xr.Dataset:
    """Fit ``form`` along ``dim`` of ``da``, one fit per position along every other dim.

    Arguments follow ``xarray.DataArray.curvefit(coords, func)``: the dimension(s) first,
    then the law, here as the keyword ``form``.

    Parameters
    ----------
    da : xarray.DataArray
        Losses, e.g. over ``(D, width, seed)``.
    form : str or Form
    dim : str or sequence of str
        The dimension(s) whose points make up each curve, e.g. ``"D"``; for two-variable
        forms often two dims, e.g. ``("N", "D")``.
    variables : mapping, optional
        Form variable -> coordinate name (default: the form's variable names for
        multi-variable forms, the coordinate of ``dim`` for one-variable forms).
    skipna : bool
        Missing cells (NaN, e.g. failed sweep cells) are left out of their curve.
    **fit_kwargs
        Passed to :func:`scaling.fit`.

    Returns
    -------
    xarray.Dataset
        ``coefficients (*other_dims, param)``, ``covariance (..., cov_i, cov_j)`` for
        least-squares objectives, ``objective``, ``status``, ``converged``, and
        ``bootstrap_coefficients`` when bootstrapped; coordinates of the other dims kept;
        ``da.attrs`` carried over under the fit's own attrs.

    Examples
    --------
    >>> import numpy as np, xarray as xr, scaling
    >>> D = np.geomspace(1e2, 1e5, 10)
    >>> da = xr.DataArray(0.1 + np.array([[2.0], [4.0]]) * D ** -0.5, dims=("width", "D"),
    ...                   coords={"width": [64, 128], "D": D})
    >>> ds = da.scaling.fit("D", form="offset")
    >>> ds.coefficients.sel(param="A").values.round(3)
    array([2., 4.])
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    f = _forms.get(form)
    if isinstance(dim, _forms.Form) or (isinstance(dim, str) and dim not in da.dims and dim in _forms.available()):
        raise TypeError(f"the first argument is the dim to fit along (as in xarray's curvefit), got {dim!r}; "
                        f"pass the law as form=..., e.g. .scaling.fit('D', form='offset')")
    dims = (dim,) if isinstance(dim, str) else tuple(dim)
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ValueError(f"dims {missing} not in the DataArray's dims {da.dims}")
    other = tuple(d for d in da.dims if d not in dims)
    da_t = da.transpose(*other, *dims)
    if variables is None:
        if len(f.variables) == 1:
            if len(dims) != 1:
                raise ValueError(f"one-variable form {f.name!r}: give one dim or variables={{'x': coord}}")
            variables = {f.variables[0]: dims[0]}
        else:
            variables = {v: v for v in f.variables}
    unknown = [v for v in f.variables if v not in variables]
    if unknown:
        raise ValueError(f"variables must map every form variable {f.variables}; missing {unknown}")
    xs = {}
    for v, cname in variables.items():
        if cname not in da_t.coords:
            raise ValueError(f"coordinate {cname!r} (for variable {v!r}) not found; available: {list(da_t.coords)}")
        c = da_t.coords[cname]
        if not np.issubdtype(c.dtype, np.number):
            raise TypeError(f"coordinate {cname!r} must be numeric to serve as {v!r}, got dtype {c.dtype}")
        xs[v] = np.broadcast_to(c.broadcast_like(da_t).transpose(*da_t.dims).values, da_t.shape)
    batch_shape = da_t.shape[: len(other)]
    npts = int(np.prod(da_t.shape[len(other):], dtype=int))
    y = da_t.values.reshape(batch_shape + (npts,))
    x = {v: a.reshape(batch_shape + (npts,)) for v, a in xs.items()}
    res = fit(f, x, y, skipna=skipna, **fit_kwargs)
    coords = {d: da_t.coords[d] for d in other if d in da_t.coords}
    out = res.to_dataset(dims=other, coords=coords)
    for name, c in da_t.coords.items():  # non-dimension coords along the batch dims
        if name not in out.coords and set(c.dims) <= set(other):
            out = out.assign_coords({name: c})
    out.attrs = {**da.attrs, **out.attrs, "fit_dims": list(dims), "variable": str(da.name)}
    if "units" in da.attrs:
        out["objective"].attrs["units"] = "(log units)^2" if res.spec.objective.log else f"({da.attrs['units']})^2"
    return out


@xr.register_dataarray_accessor("scaling")
class ScalingDataArrayAccessor:
    """``da.scaling.fit(dim, form=...)``, ``da.scaling.local_exponent(dim)``."""

    def __init__(self, obj: xr.DataArray):
        self._obj = obj

    def fit(self, dim, *, form, **kwargs) -> xr.Dataset:
        """Fit along ``dim`` (dim first, law as ``form=``, like ``curvefit``): see :func:`scaling.fit_dataarray`."""
        return fit_dataarray(self._obj, dim, form=form, **kwargs)

    def local_exponent(self, dim: str, l_inf=None, *, bandwidth: float | None = None) -> xr.DataArray:
        """Local exponent along ``dim`` (see :func:`scaling.local_exponent`)."""
        da = self._obj.transpose(..., dim)
        out = local_exponent(da[dim].values, da.values, l_inf, bandwidth=bandwidth)
        res = da.copy(data=out)
        res.name = f"local_exponent_{dim}"
        res.attrs = {"long_name": f"-dlog(L - L_inf)/dlog {dim}", "units": "1"}
        return res


@xr.register_dataset_accessor("scaling")
class ScalingDatasetAccessor:
    """``ds.scaling.fit(dim, form=..., var=...)``."""

    def __init__(self, obj: xr.Dataset):
        self._obj = obj

    def fit(self, dim, *, form, var: str | None = None, **kwargs) -> xr.Dataset:
        """Fit data variable ``var`` along ``dim`` (see :func:`scaling.fit_dataarray`).

        Without ``var`` every data variable that has ``dim`` is fitted, as
        ``Dataset.curvefit`` does, and results are prefixed ``{var}_`` (``test_loss_coefficients``).
        """
        if var is not None:
            if var not in self._obj.data_vars:
                raise ValueError(f"no data variable {var!r}; available: {list(self._obj.data_vars)}")
            out = fit_dataarray(self._obj[var], dim, form=form, **kwargs)
            out.attrs = {**self._obj.attrs, **out.attrs}
            return out
        dims = (dim,) if isinstance(dim, str) else tuple(dim)
        names = [v for v in self._obj.data_vars if set(dims) <= set(self._obj[v].dims)]
        if not names:
            raise ValueError(f"no data variable has dims {dims}; variables: {list(self._obj.data_vars)}")
        parts = []
        for v in names:
            out = fit_dataarray(self._obj[v], dim, form=form, **kwargs)
            parts.append(out.rename({k: f"{v}_{k}" for k in out.data_vars}))
        merged = xr.merge(parts, compat="override", combine_attrs="drop_conflicts")
        merged.attrs = {**self._obj.attrs, **merged.attrs}
        return merged
