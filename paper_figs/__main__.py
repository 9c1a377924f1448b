"""``python -m paper_figs --preset quick --out figures``: regenerate the paper's analyses.

``python -m paper_figs --replot figures`` redraws every figure and the report from
``figures/data/*.nc`` without running any sweep.
"""

import argparse
import sys

from . import FIGURES, replot, run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick", choices=["quick", "full"],
                    help="quick: synthetic data and digits, minutes on a CPU; full: the paper's data sets and sizes")
    ap.add_argument("--out", default="figures", help="output directory (figures/, data/, report.md)")
    ap.add_argument("--replot", default=None, metavar="DIR",
                    help="redraw the figures and report.md in DIR from DIR/data/<figure>.nc; runs no sweep")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(FIGURES)}")
    ap.add_argument("--data-dir", default=None, help="directory with CIFAR/SVHN/MNIST files (full preset)")
    ap.add_argument("--executor", default="local", choices=["local", "devices", "dask"])
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address for the sweeps")
    ap.add_argument("--embeddings", default=None, help="Fig. 3 on your own embeddings (.npy/.nc/.zarr) ...")
    ap.add_argument("--labels", default=None, help="... with their integer labels (.npy)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="figures made side by side in worker processes (default: 2 on a CPU-only host "
                         "with 2+ cores, 1 with a GPU/TPU)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--debug", action="store_true", help="stop at the first failing figure with its traceback")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # the command writes files; importing paper_figs leaves the backend alone
    only = args.only.split(",") if args.only else None
    try:
        if args.replot is not None:
            result = replot(args.replot, only=only, raise_errors=args.debug)
        else:
            executor = "dask" if args.scheduler else args.executor
            result = run(args.out, preset=args.preset, only=only, executor=executor, scheduler=args.scheduler,
                         data_dir=args.data_dir, embeddings=args.embeddings, labels=args.labels,
                         progress=not args.no_progress, raise_errors=args.debug, jobs=args.jobs)
    except Exception as exc:  # noqa: BLE001 - the command reports one line; --debug shows the traceback
        if args.debug:
            raise
        print(f"python -m paper_figs: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(result.report.read_text())
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
