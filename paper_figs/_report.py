"""report.md (and report.csv, the same rows as data): every measured exponent beside theory."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

from ._common import Row


def _num(v):
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def write_report(out: Path, rows: list[Row], *, preset: str, timings: dict[str, float], failures: dict[str, str],
                 command: str | None = None, wall: float | None = None, jobs: int = 1) -> Path:
    """Write ``report.md`` and ``report.csv`` (the rows as data) under ``out``; return the .md path.

    ``command`` is what made them (default ``python -m paper_figs --preset <preset>``);
    ``wall``, the run's wall-clock seconds, with ``jobs`` figures made side by side.
    """
    command = command or f"python -m paper_figs --preset {preset}"
    lines = [
        f"# Explaining Neural Scaling Laws - regenerated ({preset} preset)",
        "",
        f"Made {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`. Figures are in "
        "`figures/` (PNG and PDF), the data behind them in `data/` (zarr sweeps, and one netCDF file per figure "
        "holding everything it draws and reports: `python -m paper_figs --replot DIR` redraws from those). Intervals are 95%; *agrees* means the theory value lies in "
        "the measured interval (or that two intervals overlap): no fixed slack. Theory values are for the same finite setting "
        "(sizes, fit window and form) as the measurement unless labelled a heuristic.",
        "",
        "| figure | quantity | measured | 95% interval | theory | regime | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        theory = "" if r.theory is None else f"{_num(r.theory)} ({r.theory_label})" if r.theory_label else _num(r.theory)
        lines.append(f"| {r.figure} | {r.quantity} | {_num(r.value)} | [{_num(r.lo)}, {_num(r.hi)}] | {theory} | "
                     f"{r.regime} | {r.verdict} |")
    lines += ["", "## Run", "", "| figure | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    if jobs > 1:
        lines.append(f"| sum over figures ({jobs} made side by side) | {sum(timings.values()):.0f} |")
    else:
        lines.append(f"| total | {sum(timings.values()):.0f} |")
    if wall is not None:
        lines.append(f"| wall clock | {wall:.0f} |")
    if failures:
        lines += ["", "## Failures", ""] + [f"- {k}: {v}" for k, v in failures.items()]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    import pandas as pd

    pd.DataFrame([r.as_dict() for r in rows]).to_csv(Path(out) / "report.csv", index=False)
    return path
