"""Sweep results on disk: a zarr store written unit by unit, resumable, verified, never silently wrong.

Layout (zarr format 2, consolidated metadata, CF-style attributes): one ``xarray.Dataset``
with the grid's dims and coordinates; every metric over all dims, chunked one unit per
chunk; per unit (over the dims outside a unit) ``status`` (a CF flag: 0 missing, 1 done,
2 failed), ``error`` (a variable-length string), ``code_version`` (the code that computed
it) and ``checksum`` (a hash of the unit's stored values, its error and its code version).

Guarantees:

- **Atomic units.** A unit's metrics are written first, then its error, code version and
  checksum, and its status last; zarr writes each chunk atomically (temporary file +
  rename), so a run killed at any point leaves every chunk either old or new, and a unit
  whose status is not 1 is simply recomputed.
- **Verified on open.** Every finished unit is read back and checked against its checksum
  when a run opens the store (and when :func:`load` reads it): a deleted, truncated,
  garbage or bit-flipped chunk makes the unit "not done", so the run recomputes it and
  reports how many units it recomputed and why; :func:`load` refuses a store with a
  corrupt unit instead of returning wrong numbers.
- **One code version per result.** Each unit records the code version (package version
  plus a hash of the ``scaling``, ``kernels`` and ``experiments`` sources). Resuming a
  store whose finished units came from other code is refused unless
  ``allow_version_change=True``; the store's ``code_versions`` attribute then lists every
  version and its number of units.
- **One writer.** A run holds an exclusive lock (``flock`` on ``.NAME.nst-lock`` beside
  the store, released by the kernel if the process dies, so a killed run leaves no stale
  lock); a second run on the same store, even one starting at the same moment on a store
  not yet created, stops at once with a message naming the holder. A new store is built
  in a temporary directory and renamed into place. Only the lock holder removes
  temporary ``*.partial`` files, and then only orphans of dead writers remain.
- **Write access** is checked up front: a read-only store fails before any work, in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import functools
import hashlib
import importlib.util
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
FLAG_MEANINGS = "missing done failed"
LAYOUT = 2  # attrs["store_layout"]: 2 = checksums, code versions, flags, vlen strings
PER_UNIT = ("error", "code_version", "checksum")  # string variables over the outer dims
VOLATILE_ATTRS = ("created_utc", "host", "device", "git_revision", "last_run_utc", "units_computed_last_run",
                  "cells_computed_last_run", "units_recomputed_last_run", "recomputed_last_run",
                  "repaired_coordinates_last_run", "code_version", "code_versions")
SOURCE_PACKAGES = ("scaling", "kernels", "experiments")


class StoreError(ValueError):
    """A sweep store cannot be used as asked (busy, read-only, another sweep, other code, corrupt)."""


class ReadOnlyStoreError(StoreError, PermissionError):
    """The store (or the directory that would hold it) is not writable."""


# ------------------------------------------------------------------ variables (CF metadata, dtypes)


@dataclasses.dataclass(frozen=True)
class Variable:
    """How one result variable is stored: dtype, fill for units not yet computed, CF attributes.

    Integer counters are stored as integers (``fill`` marks cells without a value: units
    not computed, or failed); flags carry ``flag_values``/``flag_meanings``.
    """

    long_name: str
    units: str | None = "1"
    dtype: str = "float64"
    fill: float = float("nan")
    flag_meanings: str | None = None

    def attrs(self) -> dict:
        out = {"long_name": self.long_name}
        if self.units is not None:
            out["units"] = self.units
        if self.flag_meanings is not None:
            out["flag_values"] = np.arange(len(self.flag_meanings.split()), dtype=self.dtype)
            out["flag_meanings"] = self.flag_meanings
        if self.dtype != "float64":
            out["comment"] = f"{int(self.fill)} where the cell has no value (status != 1)"
        return out

    def encode(self, values) -> np.ndarray:
        """Computed values (floats) in the stored dtype; NaN becomes the fill of integer variables."""
        a = np.asarray(values, dtype=np.float64)
        if self.dtype == "float64":
            return a
        return np.where(np.isfinite(a), np.round(a), self.fill).astype(self.dtype)


VARIABLES = {
    "test_loss": Variable("test loss (MSE summed over outputs, or cross-entropy)"),
    "train_loss": Variable("training loss"),
    "test_accuracy": Variable("test accuracy (fraction correct)"),
    "excess_loss": Variable("test loss above the Bayes floor (population risk minus noise)"),
    "time_s": Variable("wall time per cell (unit time / cells)", "s"),
    "steps": Variable("optimizer steps taken", "1", "int64", -1),
    "converged": Variable("training reached its stopping criterion", None, "int8", -1, "no yes"),
    "width_used": Variable("network width used", "hidden units (channels)", "int64", -1),
    "n_params": Variable("trainable parameters", "1", "int64", -1),
}


def variable(name: str) -> Variable:
    """The storage of a result variable (a float, dimensionless, unless registered otherwise)."""
    return VARIABLES.get(name, Variable(name.replace("_", " ")))


# ------------------------------------------------------------------ code version and provenance


@functools.lru_cache(maxsize=1)
def _git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_hash(roots) -> str:
    """A hash of every ``.py`` file under ``roots`` (paths and contents, in a fixed order)."""
    h = hashlib.sha256()
    for root in roots:
        root = Path(root)
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root.parent).as_posix().encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The version of the code that computes results: package version plus a hash of its sources.

    Any edit to ``scaling``, ``kernels`` or ``experiments`` (committed or not) changes it.

    Examples
    --------
    >>> from experiments._store import code_version
    >>> "+src." in code_version()
    True
    """
    try:
        version = metadata.version("neural-scaling-theory")
    except metadata.PackageNotFoundError:
        version = "unknown"
    roots = []
    for name in SOURCE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            roots.append(Path(spec.origin).parent)
    return f"{version}+src.{source_hash(roots)}"


code_version()  # hashed when the code is imported, the code that then runs


@functools.lru_cache(maxsize=1)
def _package_versions() -> str:
    """Installed versions of the packages a sweep depends on (read once per process: the
    metadata lookups cost ~80 ms, more than a small sweep)."""
    versions = {}
    for pkg in ("neural-scaling-theory", "jax", "jaxlib", "numpy", "scipy", "optax", "xarray", "zarr"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return json.dumps(versions, sort_keys=True)


def provenance(spec: SweepSpec) -> dict:
    """Attributes recording what produced a sweep: spec, versions, revision, device, time."""
    import jax

    dev = jax.devices()[0]
    return {
        "title": spec.name,
        "Conventions": "CF-1.10",
        "store_layout": LAYOUT,
        "spec": spec.to_json(),
        "spec_fingerprint": spec.fingerprint,
        "package_versions": _package_versions(),
        "code_version": code_version(),
        "code_versions": json.dumps({}),
        "git_revision": _git_revision(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "host": platform.node(),
        "created_utc": _now(),
        "seeds": json.dumps(spec.grid.get("seed", [])),
        "conventions": "status: 0 missing, 1 done, 2 failed; losses: MSE summed over outputs (or cross-entropy); "
                       "checksum: blake2b of a unit's stored values, error and code_version",
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ the Dataset layout


def empty_dataset(spec: SweepSpec, variables: tuple[str, ...]) -> xr.Dataset:
    """A sweep's Dataset before any unit is computed: fills, flags, CF attributes, provenance."""
    shape = spec.shape
    outer = spec.outer_dims
    oshape = tuple(len(spec.grid[d]) for d in outer)
    data = {}
    for v in variables + ("time_s",):
        meta = variable(v)
        data[v] = (spec.dims, np.full(shape, meta.fill, dtype=meta.dtype), meta.attrs())
    data["status"] = (outer, np.zeros(oshape, dtype=np.int8),
                      {"long_name": "unit status", "flag_values": np.array([MISSING, DONE, FAILED], dtype=np.int8),
                       "flag_meanings": FLAG_MEANINGS})
    texts = {"error": "error message of a failed unit (empty if none)",
             "code_version": "code version that computed the unit (package version + source hash)",
             "checksum": "blake2b-128 of the unit's stored values, error and code_version"}
    for name, long_name in texts.items():
        data[name] = (outer, np.full(oshape, "", dtype=object), {"long_name": long_name})
    coords = {d: np.asarray(v) for d, v in spec.grid.items()}
    ds = xr.Dataset(data, coords=coords, attrs=provenance(spec))
    for d in spec.dims:
        ds[d].attrs["units"] = UNITS.get(d, "1")
    return ds


def _encoding(spec: SweepSpec, ds: xr.Dataset) -> dict:
    enc = {}
    for name, var in ds.data_vars.items():
        enc[name] = {"chunks": tuple(1 if d in spec.outer_dims else ds.sizes[d] for d in var.dims)}
        if var.dtype.kind in "iu":
            enc[name]["_FillValue"] = None  # integers stay integers when read (no CF masking to float)
    return enc


def _canonical(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        a = np.where(np.isnan(a), np.nan, a)  # one NaN bit pattern, whatever produced it
    return a


def unit_checksum(values: dict, error: str, version: str) -> str:
    """Hash of one unit: its stored values (over the unit's own dims), error text and code version."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(values):
        a = _canonical(values[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(b"\0error:" + str(error).encode("utf-8", "surrogatepass"))
    h.update(b"\0version:" + str(version).encode())
    return h.hexdigest()


def _unit_values(spec: SweepSpec, variables, result: dict | None) -> dict:
    """A unit's values in storage order (the spec's dims, outer dims dropped) and stored dtypes."""
    order = [spec.unit_dims.index(d) for d in spec.dims if d in spec.unit_dims]
    shape = tuple(len(spec.grid[d]) for d in spec.dims if d in spec.unit_dims)
    out = {}
    for v in variables + ("time_s",):
        meta = variable(v)
        if result is None:  # a failed unit: fills, never stale numbers from an earlier run
            out[v] = np.full(shape, meta.fill, dtype=meta.dtype)
        else:
            out[v] = meta.encode(np.transpose(np.asarray(result[v]), order).reshape(shape))
    return out


# ------------------------------------------------------------------ locking


class _Lock:
    """An exclusive ``flock`` on a file: held while the file descriptor is open, freed by the
    kernel when the process ends however it ends (so a killed run never leaves a stale lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd = None

    @classmethod
    def acquire(cls, path: Path, what: str) -> "_Lock":
        lock = cls(path)
        try:
            fd = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError as exc:
            raise ReadOnlyStoreError(f"cannot write to {what}: {exc.strerror} ({lock.path})") from None
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise ReadOnlyStoreError(f"cannot write to {what}: read-only file system") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreError(
                f"{what} is in use by another run ({holder}); wait for it to finish (then rerun to resume), "
                "or use another store") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": platform.node(), "since": _now()}).encode())
        lock.fd = fd
        return lock

    def release(self):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
            self.fd = None

    def __del__(self):
        self.release()


def _read_holder(fd) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info, _ = json.JSONDecoder().raw_decode(os.read(fd, 4096).decode())
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def lock_path(store: Path) -> Path:
    """The lock file of a store: beside it (a file inside would be read as part of the zarr hierarchy)."""
    store = Path(store)
    return store.parent / f".{store.name}.nst-lock"


# ------------------------------------------------------------------ the store


class ZarrStore:
    """The on-disk results of one sweep, opened for writing by one run at a time.

    Parameters
    ----------
    path : path of the zarr store (created if missing)
    spec : SweepSpec
    variables : names of the result variables (besides ``time_s``)
    allow_version_change : bool
        Resume a store whose finished units were computed by other code.

    Attributes
    ----------
    recomputed : dict
        Units found damaged on open, and reset for recomputation: ``{reason: count}``.

    Raises
    ------
    StoreError
        Another run holds the store; it holds another sweep; its finished units come from
        other code (without ``allow_version_change``); it is not a sweep store.
    ReadOnlyStoreError
        The store, or the directory that would hold it, is not writable.
    """

    def __init__(self, path, spec: SweepSpec, variables: tuple[str, ...], *, allow_version_change: bool = False):
        self.path = Path(path)
        self.spec = spec
        self.variables = tuple(variables)
        self.allow_version_change = bool(allow_version_change)
        self.version = code_version()
        self.recomputed: dict[str, int] = {}
        self.repaired: list[str] = []  # coordinates rewritten from the spec
        self._lock = None
        self._group = None
        try:
            if self.path.exists():
                if not self.path.is_dir():
                    raise StoreError(f"{self.path} exists but is not a sweep store (not a directory)")
                self._check_writable()
            else:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ReadOnlyStoreError(f"cannot create the store {self.path}: {exc.strerror or exc}") from None
            self._lock = _Lock.acquire(lock_path(self.path), f"the store {self.path}")
            if self.path.exists():
                self._check()
                self._clean_partial_writes()
                self._verify()
            else:
                self._clean_partial_writes()
                self._create()
            self._group = self._zarr_group("r+")
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- opening
    def _create(self):
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.building-", dir=self.path.parent))
        try:
            ds = empty_dataset(self.spec, self.variables)
            ds.to_zarr(tmp / "store.zarr", mode="w", zarr_format=2, consolidated=True,
                       encoding=_encoding(self.spec, ds))
            os.rename(tmp / "store.zarr", self.path)  # atomic: the store appears complete or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _check_writable(self):
        for p in [self.path, *(q for q in self.path.iterdir() if q.is_dir())]:
            if not os.access(p, os.W_OK):
                raise ReadOnlyStoreError(
                    f"the store {self.path} is read-only ({p} is not writable); results can still be read with "
                    "experiments.load, or copy the store to resume it")

    def _zarr_group(self, mode: str):
        import zarr

        return zarr.open_group(str(self.path), mode=mode, zarr_format=2, use_consolidated=False)

    def _check(self):
        try:
            group = self._zarr_group("r")
            attrs = dict(group.attrs)
        except Exception as exc:  # noqa: BLE001 - any unreadable store
            raise StoreError(f"{self.path} exists but is not a readable sweep store: {exc}") from None
        if attrs.get("spec_fingerprint") != self.spec.fingerprint:
            raise StoreError(
                f"{self.path} holds a different sweep (spec fingerprint {attrs.get('spec_fingerprint')!r}, this spec "
                f"{self.spec.fingerprint!r}); use another --out path or delete it")
        if attrs.get("store_layout") != LAYOUT:
            raise StoreError(f"{self.path} was written by an older version of the toolkit (no checksums or code "
                             "versions to verify its units); rerun the sweep into a new store")
        names = set(group.array_keys())
        missing = ({"status", *PER_UNIT, "time_s", *self.variables} | set(self.spec.dims)) - names
        if missing:
            raise StoreError(f"{self.path} lacks the arrays {sorted(missing)} (damaged metadata, or written by code "
                             "with other result variables); rerun into a new store")
        self._repair_coordinates()

    def _repair_coordinates(self):
        """Coordinates are the spec's grid: a damaged coordinate chunk is rewritten from it."""
        group = self._zarr_group("r+")
        for d in self.spec.dims:
            want = np.asarray(self.spec.grid[d])
            try:
                ok = np.array_equal(np.asarray(group[d][...]), want)
            except Exception:  # noqa: BLE001 - an unreadable chunk
                ok = False
            if not ok:
                group[d][...] = want.astype(group[d].dtype)
                self.repaired.append(d)

    def _clean_partial_writes(self):
        # We hold the store's lock: no other run writes here, so every *.partial file, and
        # every unfinished build of this store, is the orphan of a killed writer.
        if self.path.is_dir():
            for p in self.path.rglob("*.partial"):
                p.unlink(missing_ok=True)
        for tmp in self.path.parent.glob(f".{self.path.name}.building-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def _verify(self):
        """Check every finished unit against its checksum; reset damaged ones; check code versions."""
        report = verify_units(self._zarr_group("r"), self.variables, self.path)
        versions = {}
        for idx, st in report.status.items():
            if st == DONE and idx not in report.damaged:
                versions[report.versions[idx]] = versions.get(report.versions[idx], 0) + 1
        pending = any(st != DONE or idx in report.damaged for idx, st in report.status.items())
        other = {v: n for v, n in versions.items() if v != self.version}
        if other and pending and not self.allow_version_change:
            old = ", ".join(f"{v!r} ({n} units)" for v, n in sorted(other.items()))
            raise StoreError(
                f"{self.path} holds units computed by other code: {old}; this code is {self.version!r}. Resuming would "
                "mix results of two code versions: pass allow_version_change=True (nst sweep --allow-version-change) "
                "to resume anyway (provenance records both versions), or use a new store")
        if report.damaged:
            self._group = self._zarr_group("r+")
            for idx, reason in report.damaged.items():
                self._reset(idx)
                self.recomputed[reason] = self.recomputed.get(reason, 0) + 1

    def _reset(self, idx: tuple):
        """Mark a unit missing, then overwrite its chunks with fills (damaged chunks go away)."""
        g = self._group
        one = tuple(slice(i, i + 1) for i in idx)
        g["status"][one] = np.full((1,) * len(idx), MISSING, dtype=np.int8)
        for v, arr in _unit_values(self.spec, self.variables, None).items():
            g[v][self._region(idx)] = arr
        for name in PER_UNIT:
            g[name][one] = np.full((1,) * len(idx), "", dtype=object)

    def _region(self, idx: tuple) -> tuple:
        outer = self.spec.outer_dims
        return tuple(idx[outer.index(d)] if d in outer else slice(None) for d in self.spec.dims)

    # ---------------------------------------------------------------- the runner's interface
    def status(self) -> np.ndarray:
        """Unit statuses over the outer dims (damaged units already reset to missing)."""
        return np.asarray(self._group["status"][...])

    def write(self, unit: dict, result: dict | None, error: str | None):
        """Record one unit: its metrics (or fills if it failed), error, code version, checksum, then status."""
        idx = tuple(unit[d][0] for d in self.spec.outer_dims)
        g = self._group
        values = _unit_values(self.spec, self.variables, result)
        for v, arr in values.items():
            g[v][self._region(idx)] = arr
        text = error or ""
        one = tuple(slice(i, i + 1) for i in idx)
        g["error"][one] = np.full((1,) * len(idx), text, dtype=object)
        g["code_version"][one] = np.full((1,) * len(idx), self.version, dtype=object)
        g["checksum"][one] = np.full((1,) * len(idx), unit_checksum(values, text, self.version), dtype=object)
        g["status"][one] = np.full((1,) * len(idx), DONE if error is None else FAILED, dtype=np.int8)

    def set_attrs(self, **attrs):
        """Update the store's attributes (and the code-version provenance), then reconsolidate."""
        import zarr

        st = np.asarray(self._group["status"][...])
        cv = np.asarray(self._group["code_version"][...], dtype=object)
        versions = {}
        for v in cv[st == DONE]:
            versions[str(v)] = versions.get(str(v), 0) + 1
        self._group.attrs.update({
            **attrs,
            "code_version": self.version,
            "code_versions": json.dumps(versions, sort_keys=True),
            "units_recomputed_last_run": int(sum(self.recomputed.values())),
            "recomputed_last_run": describe_recomputed(self.recomputed),
            "repaired_coordinates_last_run": ", ".join(self.repaired),
        })
        zarr.consolidate_metadata(str(self.path), zarr_format=2)

    def load(self) -> xr.Dataset:
        return load(self.path)

    def close(self):
        """Release the store's lock (a killed process releases it too)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def describe_recomputed(recomputed: dict) -> str:
    """``{"checksum mismatch": 1}`` -> ``"1 corrupt (1 checksum mismatch)"``; ``""`` when none."""
    n = sum(recomputed.values())
    if not n:
        return ""
    return f"{n} corrupt ({', '.join(f'{c} {r}' for r, c in sorted(recomputed.items()))})"


@dataclasses.dataclass
class _Verification:
    outer: tuple  # the dims that index units
    status: dict  # unit index -> status
    versions: dict  # unit index -> code version (finished units)
    damaged: dict  # unit index -> reason


def _dims(arr) -> tuple:
    return tuple(arr.attrs.get("_ARRAY_DIMENSIONS", ()))


def verify_units(group, variables, path) -> _Verification:
    """Read every unit of a store and check finished ones against their checksums.

    Works from the store alone (dims from the arrays' ``_ARRAY_DIMENSIONS``), so it needs
    no spec and reads stores whose spec the current code would no longer accept.
    """
    outer = _dims(group["status"])
    units = list(np.ndindex(*group["status"].shape))

    def region(arr, idx):
        return tuple(idx[outer.index(d)] if d in outer else slice(None) for d in _dims(arr))

    def reader(name):
        arr = group[name]
        try:
            full = np.asarray(arr[...])
            return lambda idx: full[region(arr, idx)]
        except Exception:  # noqa: BLE001 - a damaged chunk: read unit by unit
            return lambda idx: np.asarray(arr[region(arr, idx)])

    metrics = (*variables, "time_s")
    read = {name: reader(name) for name in ("status", *PER_UNIT, *metrics)}
    status, versions, damaged = {}, {}, {}
    for idx in units:
        try:
            st = int(read["status"](idx))
        except Exception:  # noqa: BLE001
            status[idx], damaged[idx] = MISSING, "unreadable chunk"
            continue
        if st not in (MISSING, DONE, FAILED):
            status[idx], damaged[idx] = MISSING, "invalid status"
            continue
        status[idx] = st
        if st != DONE:
            continue
        try:
            texts = {k: str(read[k](idx)) for k in PER_UNIT}
            values = {v: read[v](idx) for v in metrics}
        except Exception:  # noqa: BLE001 - truncated or garbage chunk
            damaged[idx] = "unreadable chunk"
            continue
        versions[idx] = texts["code_version"]
        if unit_checksum(values, texts["error"], texts["code_version"]) != texts["checksum"]:
            def chunk(v):
                return Path(path) / v / ".".join(str(idx[outer.index(d)]) if d in outer else "0"
                                                  for d in _dims(group[v]))
            # a finished unit whose values were all fills would have matched; so a chunk file
            # that is absent now was deleted
            gone = any(not chunk(v).exists() for v in (*metrics, *PER_UNIT))
            damaged[idx] = "missing chunk" if gone else "checksum mismatch"
    return _Verification(outer, status, versions, damaged)


class MemoryStore:
    """Results held in memory (``store=None``): same interface, nothing to resume."""

    def __init__(self, spec: SweepSpec, variables: tuple[str, ...]):
        self.spec = spec
        self.variables = tuple(variables)
        self.version = code_version()
        self.recomputed: dict[str, int] = {}
        self._ds = None

    @property
    def ds(self) -> xr.Dataset:
        """The Dataset, made at the first write: while the first units compute (its
        provenance asks every package for its version and JAX for its devices)."""
        if self._ds is None:
            self._ds = empty_dataset(self.spec, self.variables)
        return self._ds

    def status(self) -> np.ndarray:
        if self._ds is None:
            return np.full(tuple(len(self.spec.grid[d]) for d in self.spec.outer_dims), MISSING, dtype=np.int8)
        return self._ds["status"].values

    def write(self, unit: dict, result: dict | None, error: str | None):
        idx = {d: i for d, (i, _) in unit.items()}
        values = _unit_values(self.spec, self.variables, result)
        text = error or ""
        checksum = unit_checksum(values, text, self.version)
        variables = self.ds.variables  # numpy-backed: written in place, no per-write xarray indexing
        for v, arr in values.items():
            var = variables[v]
            var.data[tuple(idx.get(d, slice(None)) for d in var.dims)] = arr
        at = tuple(idx[d] for d in self.spec.outer_dims)
        for name, value in (("error", text), ("code_version", self.version), ("checksum", checksum),
                            ("status", DONE if error is None else FAILED)):
            variables[name].data[at] = value

    def set_attrs(self, **attrs):
        done = int((self.ds["status"].values == DONE).sum())
        self.ds.attrs.update(attrs, code_version=self.version,
                             code_versions=json.dumps({self.version: done} if done else {}),
                             units_recomputed_last_run=0, recomputed_last_run="", repaired_coordinates_last_run="")

    def load(self) -> xr.Dataset:
        return self.ds.copy(deep=True)

    def close(self):
        pass


def load(store, *, verify: bool = True) -> xr.Dataset:
    """Load a sweep's results (a zarr store, or a netCDF export) into memory.

    Parameters
    ----------
    store : path
    verify : bool
        Check every finished unit of a zarr store against its checksum and refuse a store
        with a damaged unit (rerun the sweep on it to recompute those units).

    Raises
    ------
    FileNotFoundError
        Nothing at ``store``.
    StoreError
        Not a readable store, or a finished unit's data is damaged.

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
        try:
            return xr.load_dataset(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise StoreError(f"{path} is not a readable netCDF file: {type(exc).__name__}: {exc}") from None
    try:
        import zarr

        group = zarr.open_group(str(path), mode="r", zarr_format=2, use_consolidated=False)
        attrs = dict(group.attrs)
    except Exception as exc:  # noqa: BLE001 - any unreadable store
        raise StoreError(f"{path} is not a readable sweep store: {type(exc).__name__}: {exc}") from None
    if verify and attrs.get("store_layout") == LAYOUT:
        try:
            outer = _dims(group["status"])
            dims = set(outer) | {d for k in group.array_keys() for d in _dims(group[k])}
            variables = tuple(k for k in group.array_keys() if k not in ("status", "time_s", *PER_UNIT, *dims))
            report = verify_units(group, variables, path)
            coords = {d: np.asarray(group[d][...]) for d in outer}
        except Exception as exc:  # noqa: BLE001 - damaged metadata
            raise StoreError(f"{path} is not a readable sweep store: {type(exc).__name__}: {exc}") from None
        if report.damaged:
            where = "; ".join(", ".join(f"{d}={coords[d][i]}" for d, i in zip(outer, idx)) + f": {why}"
                              for idx, why in list(report.damaged.items())[:3])
            more = f" and {len(report.damaged) - 3} more" if len(report.damaged) > 3 else ""
            raise StoreError(f"{path}: {len(report.damaged)} finished units are damaged ({where}{more}); rerun the "
                             "sweep on this store to recompute them")
    try:  # chunks=None: plain numpy reads (dask would make one task per unit chunk, 10x slower)
        return xr.open_zarr(path, consolidated=True, chunks=None).load()
    except Exception:  # noqa: BLE001 - no or damaged consolidated metadata: read the arrays' own
        pass
    try:
        return xr.open_zarr(path, consolidated=False, chunks=None).load()
    except Exception as exc:  # noqa: BLE001 - damaged metadata or chunks outside the units
        raise StoreError(f"{path} is not a readable sweep store: {type(exc).__name__}: {exc}") from None


def export_netcdf(store, path) -> Path:
    """Write a sweep's results as one netCDF file."""
    ds = load(store)
    path = Path(path)
    ds.to_netcdf(path)
    return path
