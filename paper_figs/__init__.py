"""Regenerate the figures of "Explaining Neural Scaling Laws" (Bahri, Dyer, Kaplan, Lee, Sharma).

``python -m paper_figs --preset quick --out DIR`` runs every figure (:func:`run`);
``python -m paper_figs --replot DIR`` redraws them and the report from ``DIR/data`` without
running anything (:func:`replot`). Each figure module is ``compute(ctx) -> Dataset``,
``plot(ds) -> Figure`` and ``rows(ds) -> list[Row]``; the Dataset is stored as
``DIR/data/<NAME>.nc``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import multiprocessing
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import scaling

from ._common import PRESETS
from ._common import Context
from ._common import Row
from ._common import check_storable
from ._common import exponent_from
from ._common import fit_to_dataset
from ._common import plot_curve_from
from ._common import plot_fit_from
from ._common import replot_figure
from ._common import run_figure
from ._report import write_report

FIGURES = ("fig1_regimes", "fig2_duality", "fig3_pretrained", "fig4_spectra", "fig5_manifold", "fig6_aspect_ratio")

__all__ = [
    "FIGURES",
    "PRESETS",
    "Context",
    "Row",
    "RunResult",
    "check_storable",
    "default_jobs",
    "exponent_from",
    "fit_to_dataset",
    "plot_curve_from",
    "plot_fit_from",
    "replot",
    "replot_figure",
    "run",
    "run_figure",
]


class RunResult(NamedTuple):
    """What :func:`run` or :func:`replot` made: the report rows, the report's path, and the
    figures that failed (name -> ``"ExceptionType: message"``; empty when all ran)."""

    rows: list
    report: Path
    failures: dict


def _names(only) -> list[str]:
    names = list(only) if only else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figures {unknown}; expected some of: {', '.join(FIGURES)}")
    return names


def _each_figure(names, make, *, raise_errors: bool, verb: str, announce: bool = True):
    """Call ``make(module)`` for every figure; failures are kept as data (one line printed
    each, unless ``announce`` is False)."""
    rows, timings, failures = [], {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            rows += make(importlib.import_module(f"paper_figs.{name}"))
        except Exception as exc:  # noqa: BLE001 - one figure's failure must not lose the others
            if raise_errors:
                raise
            failures[name] = f"{type(exc).__name__}: {exc}"
        timings[name] = time.perf_counter() - t0
        if announce:
            _announce(name, verb, timings[name], failures.get(name))
    return rows, timings, failures


def _announce(name: str, verb: str, seconds: float, failure: str | None) -> None:
    status = f" (FAILED: {failure})" if failure is not None else ""
    print(f"[paper_figs] {name} {verb}: {seconds:.0f} s{status}", flush=True)


def _accelerator_present() -> bool:
    """Whether this host shows a GPU or TPU (checked without starting JAX, which would claim
    the device's memory in this process)."""
    platforms = os.environ.get("JAX_PLATFORMS", os.environ.get("JAX_PLATFORM_NAME", "")).lower()
    if platforms:
        return any(p in platforms for p in ("cuda", "gpu", "rocm", "tpu"))
    return (shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")
            or os.path.exists("/dev/accel0") or os.path.exists("/dev/kfd"))


def default_jobs(n_figures: int) -> int:
    """Figures made side by side by :func:`run` when ``jobs`` is not given: two on a host with
    at least two CPU cores and no accelerator (a figure alternates between sweeps that use
    every core and single-threaded fitting, compiling and plotting, which the other fills),
    one on a GPU/TPU host (one device, one process).

    Examples
    --------
    >>> import paper_figs
    >>> paper_figs.default_jobs(1)  # one figure: nothing to run beside it
    1
    >>> paper_figs.default_jobs(6) in (1, 2)
    True
    """
    if scaling.usable_cpus() < 2 or _accelerator_present():
        return 1
    return max(1, min(2, n_figures))


def _start_method() -> str:
    """``"fork"`` when it is safe (one thread, JAX not started: the workers then inherit the
    imported toolkit instead of importing it again, seconds each), else ``"spawn"``."""
    # Linux only: macOS system libraries are not fork-safe (Python's default there is spawn)
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return "spawn"
    if "jax" in sys.modules:
        try:
            from jax._src import xla_bridge

            if xla_bridge.backends_are_initialized():  # XLA's threads would not survive a fork
                return "spawn"
        except Exception:  # noqa: BLE001 - cannot tell: the safe choice
            return "spawn"
    return "fork"


def _make_in_worker(name: str, ctx: Context, blas_threads: int):
    """:func:`_each_figure` for one figure in a worker process (the parent prints its line:
    a worker's stdout may not be the caller's, e.g. under pytest or in a notebook)."""
    import matplotlib

    matplotlib.use("Agg")
    from threadpoolctl import threadpool_limits

    # the cores are shared with the other figure: BLAS threads that spin-wait for a busy
    # core would slow both down
    with threadpool_limits(blas_threads, user_api="blas"):
        return _each_figure([name], lambda module: module.run(ctx), raise_errors=False, verb="made", announce=False)


def _each_figure_in_processes(names, ctx: Context, jobs: int):
    """:func:`_each_figure` with figures in ``jobs`` worker processes (forked when nothing
    in this process has started JAX, else started fresh). Rows come back in ``names`` order."""
    results, timings, failures = {}, {}, {}
    blas = max(1, scaling.usable_cpus() // jobs)
    quiet = dataclasses.replace(ctx, progress=False)  # interleaved progress bars help nobody
    context = multiprocessing.get_context(_start_method())
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {pool.submit(_make_in_worker, name, quiet, blas): name for name in names}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            try:
                rows, seconds, failed = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died (out of memory, killed)
                rows, seconds, failed = [], {name: float("nan")}, {name: f"{type(exc).__name__}: {exc}"}
            _announce(name, "made", seconds[name], failed.get(name))
            results[name] = rows
            timings.update(seconds)
            failures.update(failed)
    rows = [r for name in names for r in results.get(name, [])]
    return rows, {name: timings[name] for name in names if name in timings}, failures


def run(out, *, preset: str = "quick", only=None, executor: str = "local", scheduler: str | None = None,
        data_dir: str | None = None, embeddings: str | None = None, labels: str | None = None,
        progress: bool = True, raise_errors: bool = False, jobs: int | None = None) -> RunResult:
    """Make the figures (all, or those in ``only``) and ``report.md`` under ``out``.

    Each figure runs its sweeps (stored under ``out/data``, so a rerun resumes or reuses
    them), fits, stores everything it draws as ``out/data/<name>.nc``, and writes
    ``out/figures/<name>.png|pdf`` from that file. A figure that fails is recorded in the
    report and in ``failures`` and the others still run (``raise_errors=True`` re-raises
    instead, with its traceback).

    ``jobs`` figures are made side by side in worker processes (default
    :func:`default_jobs`: two on a CPU-only host, one with a GPU/TPU or with a Dask
    scheduler; ``raise_errors`` runs in this process). Figures share nothing; the workers'
    BLAS threads are capped (cores / jobs) so two figures do not oversubscribe the cores,
    which changes the summation order of some host linear algebra: results agree with a
    ``jobs=1`` run to rounding (measured on the quick preset: every report number within
    4e-10), not bit for bit. Use ``jobs=1`` to reproduce a sequential run's bits.

    Returns
    -------
    RunResult
        ``rows``: one :class:`Row` per measured quantity (value, interval, theory, verdict);
        ``report``: the path of ``report.md``; ``failures``: figure name -> error, as data.

    Examples
    --------
    >>> import paper_figs
    >>> rows, report, failures = paper_figs.run("figures", only=["fig2_duality"], progress=False)  # doctest: +SKIP
    >>> [(r.quantity, round(r.value, 2), r.verdict) for r in rows][:2]  # doctest: +SKIP
    [('alpha_D (P = 1024, 16 <= D <= P/8)', 0.27, 'agrees'), ('alpha_P (D = 1024, 16 <= P <= D/8)', 0.27, 'agrees')]
    """
    names = _names(only)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    ctx = Context(Path(out), preset=preset, executor=executor, scheduler=scheduler, data_dir=data_dir,
                  progress=progress, embeddings=embeddings, labels=labels)
    if jobs is None:
        jobs = 1 if raise_errors or executor != "local" or scheduler is not None else default_jobs(len(names))
    jobs = min(jobs, len(names))
    t0 = time.perf_counter()
    if jobs > 1 and not raise_errors:
        rows, timings, failures = _each_figure_in_processes(names, ctx, jobs)
    else:
        rows, timings, failures = _each_figure(names, lambda module: module.run(ctx), raise_errors=raise_errors,
                                               verb="made")
    report = write_report(ctx.out, rows, preset=preset, timings=timings, failures=failures,
                          wall=time.perf_counter() - t0, jobs=jobs)
    return RunResult(rows, report, failures)


def replot(out, *, only=None, raise_errors: bool = False) -> RunResult:
    """Redraw the figures and ``report.md``/``report.csv`` in ``out`` from ``out/data/<name>.nc``.

    No sweep, fit or theory computation runs: each figure's ``plot(ds)`` and ``rows(ds)``
    read the Dataset its ``compute`` stored. A figure whose file is missing (or that cannot
    be redrawn) is a failure, as data, naming the file; the others are still redrawn.

    Raises
    ------
    FileNotFoundError
        When ``out/data`` does not exist at all (nothing was ever made there).

    Examples
    --------
    >>> import paper_figs
    >>> paper_figs.replot("/nonexistent/figures")
    Traceback (most recent call last):
    ...
    FileNotFoundError: nothing to replot: /nonexistent/figures/data does not exist (make it with `python -m paper_figs --out /nonexistent/figures`)
    >>> rows, report, failures = paper_figs.replot("figures")  # doctest: +SKIP
    """
    names = _names(only)
    out = Path(out)
    if not (out / "data").is_dir():
        raise FileNotFoundError(f"nothing to replot: {out / 'data'} does not exist "
                                f"(make it with `python -m paper_figs --out {out}`)")
    rows, timings, failures = _each_figure(names, lambda module: replot_figure(module, out),
                                           raise_errors=raise_errors, verb="redrawn")
    presets = {str(r) for r in _stored_presets(out, names)} or {"quick"}
    report = write_report(out, rows, preset="/".join(sorted(presets)), timings=timings, failures=failures,
                          command=f"python -m paper_figs --replot {out}")
    return RunResult(rows, report, failures)


def _stored_presets(out: Path, names) -> list[str]:
    import xarray as xr

    found = []
    for name in names:
        path = out / "data" / f"{name}.nc"
        if path.is_file():
            with xr.open_dataset(path) as ds:
                found.append(str(ds.attrs.get("preset", "")))
    return [p for p in found if p]
