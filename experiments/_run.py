"""Run a sweep locally, on every local device, or on a Dask cluster; resume what a store lacks."""

from __future__ import annotations

import concurrent.futures
import datetime
import traceback
import warnings

import numpy as np
import xarray as xr

try:
    # xarray imports dask.array the first time it builds any Variable (to test whether the
    # data is a dask array): 0.7 s. Paying it with the package import keeps it out of the
    # first sweep (a cold random-feature sweep is otherwise mostly that import).
    import dask.array  # noqa: F401
except ImportError:  # dask is a dependency, but xarray works without it
    pass

from scaling import usable_cpus

from ._kinds import _HOST_THREADS, MODELS, TASKS, TaskKind
from ._spec import SweepSpec, as_spec
from ._store import DONE, FAILED, MISSING, MemoryStore, ZarrStore
from ._units import _blas_controller, run_unit

EXECUTORS = ("local", "devices", "dask")


class UnitsFailedWarning(RuntimeWarning):
    """Warned by :func:`run` when units failed (their cells hold fill values; a rerun
    retries them). ``dataset`` holds the run's results, so nothing is lost where warnings
    are raised as errors (``-W error``): ``except UnitsFailedWarning as w: ds = w.dataset``.

    Examples
    --------
    >>> import warnings, experiments
    >>> w = experiments.UnitsFailedWarning("1 of 2 units failed")
    >>> isinstance(w, RuntimeWarning), w.dataset is None
    (True, True)
    """

    def __init__(self, message: str, dataset: xr.Dataset | None = None):
        super().__init__(message)
        self.dataset = dataset


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _safe_unit(spec: SweepSpec, unit: dict, threads: int = 1):
    """Run one unit (a ``host_blas`` one with ``threads`` threads of its own); a failure
    becomes an error message, never a dead sweep."""
    token = _HOST_THREADS.set(max(1, int(threads)))
    try:
        return unit, run_unit(spec, unit), None
    except Exception as exc:  # noqa: BLE001 - every failure is recorded with its message
        return unit, None, _describe(exc)
    finally:
        _HOST_THREADS.reset(token)


def _collect(pool: concurrent.futures.Executor, futures: list, record) -> None:
    """Record each unit as it completes. On an interrupt (Ctrl-C) or an error, the queued units
    are cancelled at once, the running ones finish and are recorded too (a rerun resumes from
    them), and the exception goes on."""
    seen = set()  # recorded, or failed to record
    try:
        for f in concurrent.futures.as_completed(futures):
            seen.add(f)
            record(*f.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for f in futures:
            if f in seen or not f.done() or f.cancelled() or f.exception() is not None:
                continue
            try:
                record(*f.result())
            except Exception:  # noqa: BLE001 - the store itself failed: the first error is the one to report
                break
        raise


def _host_schedule(n_units: int, cores: int) -> tuple[int, list[int]]:
    """How ``n_units`` host units (each on one BLAS thread) share ``cores``: the number of
    units run at once, and each unit's own threads (:func:`~experiments._kinds.host_threads`).

    Fewer units than cores: all at once, the cores split among them. More: one per core,
    plus one when the last round would leave cores idle (``n_units % cores``), so that unit
    shares the cores from the start instead of running alone at the end. Measured on 2
    cores, 9 x 9 digits grid to 1000: 3 units in 166 ms, against 184 ms with the last unit
    spread over both cores at the end; 5 units equal (278 ms), and 4 units slower with a
    third thread (225 ms against 205 ms), hence only when the rounds do not divide.

    Examples
    --------
    >>> _host_schedule(3, 2), _host_schedule(4, 2), _host_schedule(2, 4)
    ((3, [1, 1, 1]), (2, [1, 1, 1, 1]), (2, [2, 2]))
    """
    if n_units < cores:
        return n_units, [max(1, cores // n_units)] * n_units
    return cores + (1 if n_units % cores else 0), [1] * n_units


def _unit_or_raise(spec: SweepSpec, unit: dict, kinds=()):
    """A Dask task: raising lets the scheduler retry the unit (on another worker). The
    spec's kinds travel with it, so user-registered kinds work on workers too."""
    for kind in kinds:
        table = TASKS if isinstance(kind, TaskKind) else MODELS
        if kind.name not in table:
            table[kind.name] = kind
    return unit, run_unit(spec, unit), None


def _device_unit(spec, unit, device):
    import jax

    with jax.default_device(device):
        return _safe_unit(spec, unit)


def run(spec, *, store=None, executor: str = "local", scheduler: str | None = None, n_workers: int | None = None,
        retry_failed: bool = True, progress: bool = True, allow_version_change: bool = False,
        retries: int = 2, resources: dict | None = None) -> xr.Dataset:
    """Run every cell of a sweep and return the results as an ``xarray.Dataset``.

    Parameters
    ----------
    spec : SweepSpec, mapping, or path/text of a TOML spec
    store : path, optional
        A zarr store written unit by unit as results arrive. If it exists (a previous,
        perhaps killed, run of the same spec) only the missing units are computed. Without
        a store results stay in memory.
    executor : {"local", "devices", "dask"}
        ``"local"``: in this process, unit after unit (each unit batched internally; store
        writes overlap the next unit's compute). ``"devices"``: every local JAX device
        (several GPUs): network units shard their cells over the devices (``jax.sharding``),
        other units run one per device. ``"dask"``: units as tasks on a Dask cluster: ``scheduler`` is the address of
        an existing scheduler (e.g. from dask-jobqueue on SLURM), or None for a local
        cluster of ``n_workers`` processes. Results are bitwise reproducible wherever the
        BLAS library and its thread count match (a local cluster inherits this process's);
        across different hardware they agree to rounding.
    retry_failed : bool
        Recompute units that failed in an earlier run.
    progress : bool
        A progress bar of cells done / total with an ETA.
    retries : int
        ``executor="dask"``: times a failed unit is resubmitted (a lost worker, a GPU out
        of memory) before it is recorded as failed; a rerun retries it again.
    resources : mapping, optional
        ``executor="dask"``: abstract resources every unit needs, e.g. ``{"GPU": 1}`` on
        workers started with ``--resources GPU=1`` (one unit per GPU at a time). The
        client writes every unit's zarr region as its result arrives (workers need no
        access to the store).
    allow_version_change : bool
        Resume a store whose finished units were computed by other code (a different
        package version or source hash); refused by default, since it mixes results of two
        code versions. The store's ``code_versions`` attribute records both.

    Returns
    -------
    xarray.Dataset
        Metrics (``test_loss``, ``train_loss``, ``test_accuracy``, ``time_s``, ...) over the
        grid's dims; ``status`` and ``error`` per unit; provenance in attrs.
        ``attrs["units_computed_last_run"]`` counts the units this call computed.

    Warns
    -----
    UnitsFailedWarning
        When units failed (a ``RuntimeWarning``); it carries the results as ``.dataset``,
        also where warnings are raised as errors.

    Examples
    --------
    >>> import experiments
    >>> spec = experiments.SweepSpec(
    ...     task={"kind": "teacher_student", "n_features": 2000, "alpha": 0.5},
    ...     model={"kind": "rf_ridge"},
    ...     grid={"D": [16, 32, 64], "P": [32, 128], "seed": [0, 1]})
    >>> ds = experiments.run(spec, progress=False)
    >>> ds.test_loss.dims, int(ds.status.min())
    (('D', 'P', 'seed'), 1)
    """
    spec = as_spec(spec)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise ValueError("a scheduler address needs executor='dask'")
    variables = spec.variables
    sink = (ZarrStore(store, spec, variables, allow_version_change=allow_version_change) if store is not None
            else MemoryStore(spec, variables))  # a store verifies its units, resets damaged ones, holds a lock
    status = sink.status()
    units = spec.units()
    todo = [u for u in units
            if status[tuple(i for i, _ in u.values())] in ((MISSING, FAILED) if retry_failed else (MISSING,))]
    done_cells = (len(units) - len(todo)) * spec.cells_per_unit
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.n_cells, initial=done_cells, unit="cell", desc=spec.name, smoothing=0.1)
    # failed units' errors by grid index: the warning names the first failed unit in grid
    # order, the same whichever unit happened to finish first
    failed = {}

    def record(unit, result, error):
        sink.write(unit, result, error)
        if error is not None:
            failed[tuple(i for i, _ in unit.values())] = error
        if bar is not None:
            bar.update(spec.cells_per_unit)
            if failed:
                bar.set_postfix(failed_units=len(failed))

    try:
        host_parallel = spec.model_kind.runs_on_host(spec) and executor in ("local", "devices") and len(todo) > 1
        if host_parallel:
            # host linear algebra, one BLAS thread per unit (run_unit): about one unit per core,
            # results written as they complete
            workers, threads = _host_schedule(len(todo), usable_cpus())
            with _blas_controller().limit(limits=1, user_api="blas"), concurrent.futures.ThreadPoolExecutor(workers) as pool:
                _collect(pool, [pool.submit(_safe_unit, spec, u, t) for u, t in zip(todo, threads)], record)
        elif executor == "local" or (executor == "devices" and spec.model_kind.sharded):
            # one unit at a time (a sharded model spreads each unit over every local
            # device itself); the store writes of one unit overlap the next unit's compute
            with concurrent.futures.ThreadPoolExecutor(1) as writer:
                pending = None
                alone = usable_cpus() if spec.model_kind.runs_on_host(spec) else 1  # a lone host unit
                for u in todo:
                    done = _safe_unit(spec, u, alone)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(record, *done)
                if pending is not None:
                    pending.result()
        elif executor == "devices":
            import jax

            devices = jax.local_devices()
            with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool:
                _collect(pool, [pool.submit(_device_unit, spec, u, devices[i % len(devices)])
                                for i, u in enumerate(todo)], record)
        else:
            _run_dask(spec, todo, scheduler, n_workers, record, retries, resources)
        sink.set_attrs(last_run_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       units_computed_last_run=len(todo), cells_computed_last_run=len(todo) * spec.cells_per_unit)
        ds = sink.load()
        if failed:  # recorded, not raised (the other units' results are kept): said, not silent
            warnings.warn(UnitsFailedWarning(
                f"{len(failed)} of {len(todo)} units failed; their cells hold fill values and a rerun retries them "
                f"(experiments.summary lists every error). First: {failed[min(failed)]}", ds), stacklevel=2)
        return ds
    finally:
        if bar is not None:
            bar.close()
        sink.close()  # release the store's lock


def _run_dask(spec, todo, scheduler, n_workers, record, retries=2, resources=None):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ImportError("executor='dask' needs dask.distributed: install the 'cluster' extra") from exc
    cluster = None
    if scheduler is None:
        import dask

        # Dask starts workers with one BLAS thread; BLAS summation order (and so the last
        # bits of every result) depends on the thread count, so local workers get this
        # process's count and reproduce an in-process run exactly.
        threads = str(_blas_threads())
        env = {k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(n_workers=n_workers or 2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
    client = Client(scheduler if scheduler is not None else cluster)
    try:
        # Workers compute and return results; this process (the client) writes each unit's
        # region of the store as it arrives, so the store has one writer and workers need no
        # shared file system.
        kinds = (spec.task_kind, spec.model_kind)
        futures = {client.submit(_unit_or_raise, spec, u, kinds, pure=False, retries=retries, resources=resources): i
                   for i, u in enumerate(todo)}
        for fut in as_completed(futures):
            try:
                record(*fut.result())
            except Exception as exc:  # noqa: BLE001 - failed after its retries: recorded, retried next run
                record(todo[futures[fut]], None, _describe(exc))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _blas_threads() -> int:
    try:
        from threadpoolctl import threadpool_info

        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if counts:
            return int(counts[0])
    except ImportError:
        pass
    return usable_cpus()


def summary(ds: xr.Dataset) -> str:
    """A one-paragraph account of a sweep's completeness and failures."""
    st = ds["status"].values
    lines = [f"{ds.attrs.get('title', 'sweep')}: {int((st == DONE).sum())}/{st.size} units done, "
             f"{int((st == FAILED).sum())} failed, {int((st == MISSING).sum())} missing"]
    errs = ds["error"].values[st == FAILED]
    for e in np.unique(errs)[:5]:
        lines.append(f"  failed: {e}")
    return "\n".join(lines)
