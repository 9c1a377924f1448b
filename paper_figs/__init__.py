"""Regenerate the figures of "Explaining Neural Scaling Laws" (Bahri, Dyer, Kaplan, Lee, Sharma).

``python -m paper_figs --preset quick --out DIR`` runs every figure; see :func:`run`.
"""

from __future__ import annotations

import importlib
import time
import traceback
from pathlib import Path
from typing import NamedTuple

from ._common import PRESETS, Context, Row
from ._report import write_report

FIGURES = ("fig1_regimes", "fig2_duality", "fig3_pretrained", "fig4_spectra", "fig5_manifold", "fig6_aspect_ratio")

__all__ = ["FIGURES", "PRESETS", "Context", "Row", "RunResult", "run"]


class RunResult(NamedTuple):
    """What :func:`run` made: the report rows, the report's path, and the figures that failed
    (name -> ``"ExceptionType: message"``; empty when all ran)."""

    rows: list
    report: Path
    failures: dict


def run(out, *, preset: str = "quick", only=None, executor: str = "local", scheduler: str | None = None,
        data_dir: str | None = None, embeddings: str | None = None, labels: str | None = None,
        progress: bool = True, raise_errors: bool = False) -> RunResult:
    """Make the figures (all, or those in ``only``) and ``report.md`` under ``out``.

    Each figure runs its sweeps (stored under ``out/data``, so a rerun resumes or reuses
    them), fits, and writes ``out/figures/<name>.png|pdf``. A figure that fails is recorded
    in the report and the others still run (``raise_errors=True`` re-raises instead).

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
    [('alpha_D (P = 1024, 16 <= D <= P/16)', 0.3, 'agrees'), ('alpha_P (D = 1024, 16 <= P <= D/16)', 0.26, 'agrees')]
    """
    names = list(only) if only else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figures {unknown}; expected some of: {', '.join(FIGURES)}")
    ctx = Context(Path(out), preset=preset, executor=executor, scheduler=scheduler, data_dir=data_dir,
                  progress=progress, embeddings=embeddings, labels=labels)
    rows, timings, failures = [], {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            rows += importlib.import_module(f"paper_figs.{name}").run(ctx)
        except Exception as exc:  # noqa: BLE001 - one figure's failure must not lose the others
            if raise_errors:
                raise
            failures[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        timings[name] = time.perf_counter() - t0
        print(f"[paper_figs] {name}: {timings[name]:.0f} s" + (" (FAILED)" if name in failures else ""), flush=True)
    report = write_report(ctx.out, rows, preset=preset, timings=timings, failures=failures)
    return RunResult(rows, report, failures)
