"""Sweep results on disk: a zarr store written unit by unit, resumable, never corrupted.

Layout: one ``xarray.Dataset`` with the grid's dims and coordinates; every metric over all
dims, chunked one unit per chunk; ``status`` (0 missing, 1 done, 2 failed) and ``error``
over the dims outside a unit. A unit's metrics are written first and its status last;
zarr writes each chunk atomically (temporary file + rename), so a run killed at any point
leaves every chunk either old or new, and a unit whose status is not 1 is simply recomputed.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from ._spec import UNITS, SweepSpec

MISSING, DONE, FAILED = 0, 1, 2
ERROR_WIDTH = 500
VOLATILE_ATTRS = ("created_utc", "host", "device", "git_revision", "last_run_utc", "units_computed_last_run",
                  "cells_computed_last_run")


def _git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(spec: SweepSpec) -> dict:
    """Attributes recording what produced a sweep: spec, versions, revision, device, time."""
    import jax

    versions = {}
    for pkg in ("neural-scaling-theory", "jax", "jaxlib", "neural-tangents", "numpy", "scipy", "optax", "xarray",
                "zarr"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    dev = jax.devices()[0]
    return {
        "title": spec.name,
        "spec": spec.to_json(),
        "spec_fingerprint": spec.fingerprint,
        "package_versions": json.dumps(versions, sort_keys=True),
        "git_revision": _git_revision(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "host": platform.node(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": json.dumps(spec.grid.get("seed", [])),
        "conventions": "status: 0 missing, 1 done, 2 failed; losses: MSE summed over outputs (or cross-entropy)",
    }


def empty_dataset(spec: SweepSpec, variables: tuple[str, ...]) -> xr.Dataset:
    shape = spec.shape
    outer = spec.outer_dims
    oshape = tuple(len(spec.grid[d]) for d in outer)
    data = {v: (spec.dims, np.full(shape, np.nan)) for v in variables + ("time_s",)}
    data["status"] = (outer, np.zeros(oshape, dtype=np.int8))
    data["error"] = (outer, np.full(oshape, "", dtype=f"<U{ERROR_WIDTH}"))
    coords = {d: np.asarray(v) for d, v in spec.grid.items()}
    ds = xr.Dataset(data, coords=coords, attrs=provenance(spec))
    for d in spec.dims:
        ds[d].attrs["units"] = UNITS.get(d, "1")
    for v in variables:
        ds[v].attrs["long_name"] = v.replace("_", " ")
    ds["time_s"].attrs.update(long_name="wall time per cell (unit time / cells)", units="s")
    ds["status"].attrs["flag_values"] = "0 missing, 1 done, 2 failed"
    return ds


def _encoding(spec: SweepSpec, ds: xr.Dataset) -> dict:
    enc = {}
    for name, var in ds.data_vars.items():
        enc[name] = {"chunks": tuple(1 if d in spec.outer_dims else ds.sizes[d] for d in var.dims)}
    return enc


class ZarrStore:
    """The on-disk results of one sweep."""

    def __init__(self, path, spec: SweepSpec, variables: tuple[str, ...]):
        self.path = Path(path)
        self.spec = spec
        self.variables = variables
        if self.path.exists():
            self._check()
            self._clean_partial_writes()
        else:
            self._create()

    def _create(self):
        ds = empty_dataset(self.spec, self.variables)
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=parent))
        try:
            ds.to_zarr(tmp / "store.zarr", mode="w", zarr_format=2, consolidated=False, encoding=_encoding(self.spec, ds))
            os.replace(tmp / "store.zarr", self.path)  # atomic: the store appears complete or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _check(self):
        try:
            attrs = xr.open_zarr(self.path, consolidated=False).attrs
        except Exception as exc:  # noqa: BLE001 - any unreadable store
            raise ValueError(f"{self.path} exists but is not a readable sweep store: {exc}") from None
        if attrs.get("spec_fingerprint") != self.spec.fingerprint:
            raise ValueError(
                f"{self.path} holds a different sweep (spec fingerprint {attrs.get('spec_fingerprint')!r}, this spec "
                f"{self.spec.fingerprint!r}); use another --out path or delete it"
            )

    def _clean_partial_writes(self):
        for p in self.path.rglob("*.partial"):
            p.unlink(missing_ok=True)

    def status(self) -> np.ndarray:
        return xr.open_zarr(self.path, consolidated=False)["status"].values

    def write(self, unit: dict, result: dict | None, error: str | None):
        region = {d: slice(i, i + 1) for d, (i, _) in unit.items()}
        full = {**region, **{d: slice(None) for d in self.spec.unit_dims}}
        outer = self.spec.outer_dims
        if result is not None:
            shape = tuple(1 if d in outer else len(self.spec.grid[d]) for d in self.spec.dims)
            order = [self.spec.unit_dims.index(d) for d in self.spec.dims if d in self.spec.unit_dims]
            metrics = {}
            for v in self.variables + ("time_s",):
                arr = np.transpose(result[v], order).reshape(shape)
                metrics[v] = (self.spec.dims, arr)
            xr.Dataset(metrics).to_zarr(self.path, region=full, zarr_format=2, consolidated=False)
        flag = DONE if error is None else FAILED
        oshape = (1,) * len(outer)
        xr.Dataset({"status": (outer, np.full(oshape, flag, dtype=np.int8)),
                    "error": (outer, np.full(oshape, (error or "")[:ERROR_WIDTH], dtype=f"<U{ERROR_WIDTH}"))}
                   ).to_zarr(self.path, region=region, zarr_format=2, consolidated=False)

    def set_attrs(self, **attrs):
        import zarr

        group = zarr.open_group(str(self.path), mode="a", zarr_format=2)
        group.attrs.update(attrs)

    def load(self) -> xr.Dataset:
        return load(self.path)


class MemoryStore:
    """Results held in memory (``store=None``): same interface, nothing to resume."""

    def __init__(self, spec: SweepSpec, variables: tuple[str, ...]):
        self.spec = spec
        self.variables = variables
        self.ds = empty_dataset(spec, variables)

    def status(self) -> np.ndarray:
        return self.ds["status"].values

    def write(self, unit: dict, result: dict | None, error: str | None):
        idx = {d: i for d, (i, _) in unit.items()}
        if result is not None:
            order = [self.spec.unit_dims.index(d) for d in self.spec.dims if d in self.spec.unit_dims]
            for v in self.variables + ("time_s",):
                self.ds[v][idx] = np.transpose(result[v], order)
        self.ds["status"][idx] = DONE if error is None else FAILED
        self.ds["error"][idx] = (error or "")[:ERROR_WIDTH]

    def set_attrs(self, **attrs):
        self.ds.attrs.update(attrs)

    def load(self) -> xr.Dataset:
        return self.ds.copy(deep=True)


def load(store) -> xr.Dataset:
    """Load a sweep's results (a zarr store, or a netCDF export) into memory.

    Examples
    --------
    >>> import experiments
    >>> experiments.load("/nonexistent.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: no sweep results at /nonexistent.zarr
    """
    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(f"no sweep results at {path}")
    if path.suffix in (".nc", ".nc4", ".netcdf"):
        return xr.load_dataset(path)
    return xr.open_zarr(path, consolidated=False).load()


def export_netcdf(store, path) -> Path:
    """Write a sweep's results as one netCDF file."""
    ds = load(store)
    path = Path(path)
    ds.to_netcdf(path)
    return path
