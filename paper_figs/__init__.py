"""Regenerate the figures of "Explaining Neural Scaling Laws" (Bahri, Dyer, Kaplan, Lee, Sharma).

``python -m paper_figs --preset quick --out DIR`` runs every figure (:func:`run`);
``python -m paper_figs --replot DIR`` redraws them and the report from ``DIR/data`` without
running anything (:func:`replot`). Each figure module is ``compute(ctx) -> Dataset``,
``plot(ds) -> Figure`` and ``rows(ds) -> list[Row]``; the Dataset is stored as
``DIR/data/<NAME>.nc``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import NamedTuple

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


def _each_figure(names, make, *, raise_errors: bool, verb: str):
    """Call ``make(module)`` for every figure; failures are kept as data (one line printed each)."""
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
        status = f" (FAILED: {failures[name]})" if name in failures else ""
        print(f"[paper_figs] {name} {verb}: {timings[name]:.0f} s{status}", flush=True)
    return rows, timings, failures


def run(out, *, preset: str = "quick", only=None, executor: str = "local", scheduler: str | None = None,
        data_dir: str | None = None, embeddings: str | None = None, labels: str | None = None,
        progress: bool = True, raise_errors: bool = False) -> RunResult:
    """Make the figures (all, or those in ``only``) and ``report.md`` under ``out``.

    Each figure runs its sweeps (stored under ``out/data``, so a rerun resumes or reuses
    them), fits, stores everything it draws as ``out/data/<name>.nc``, and writes
    ``out/figures/<name>.png|pdf`` from that file. A figure that fails is recorded in the
    report and in ``failures`` and the others still run (``raise_errors=True`` re-raises
    instead, with its traceback).

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
    ctx = Context(Path(out), preset=preset, executor=executor, scheduler=scheduler, data_dir=data_dir,
                  progress=progress, embeddings=embeddings, labels=labels)
    rows, timings, failures = _each_figure(names, lambda module: module.run(ctx), raise_errors=raise_errors,
                                           verb="made")
    report = write_report(ctx.out, rows, preset=preset, timings=timings, failures=failures)
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
