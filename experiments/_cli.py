"""``nst``: run sweeps and analyse stored results from the shell.

    nst sweep SPEC.toml --out results.zarr [--executor dask --scheduler tcp://HOST:8786]
    nst fit results.zarr --dim D [--form offset] [--var test_loss]
    nst regimes results.zarr [--ratio 4]
    nst export results.zarr results.nc

Errors print one line and exit with status 2 (usage: an unknown option, a missing
argument or input file) or 1 (data: an empty, malformed or non-UTF-8 spec, an invalid
spec, a store that is busy, read-only, damaged or of another sweep, failed units). Add
--debug for the full traceback.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np

USAGE, DATA = 2, 1
LOSS_NAMES = ("test_loss", "test_mse", "loss")


class UsageError(Exception):
    """A command line that cannot be run as written (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (raised, printed by :func:`main`), not usage + message."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _input_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path} does not exist")
    return p


def _output_dir(path: str) -> None:
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")


def read_spec(path: str):
    """The SweepSpec in a TOML file, or a one-line error naming the file and the problem."""
    from ._spec import SweepSpec

    p = _input_file(path, "spec file")
    if p.is_dir():
        raise UsageError(f"spec file {path} is a directory")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"spec {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    if not text.strip():
        raise ValueError(f"spec {path} is empty; it needs [task], [model] and [grid] tables")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"spec {path} is not valid TOML: {exc}") from None
    try:
        return SweepSpec.from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"spec {path}: {_message(exc)}") from None


def _sweep(args):
    from ._run import UnitsFailedWarning, run, summary
    from ._store import export_netcdf

    spec = read_spec(args.spec)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.netcdf:
        _output_dir(args.netcdf)
    with warnings.catch_warnings():  # failed units: the summary below lists them, and the exit status says so
        warnings.simplefilter("ignore", UnitsFailedWarning)
        ds = run(spec, store=args.out, executor=args.executor, scheduler=args.scheduler, n_workers=args.workers,
                 progress=not args.no_progress, allow_version_change=args.allow_version_change)
    print(summary(ds))
    recomputed = ds.attrs.get("recomputed_last_run", "")
    again = f" ({int(ds.attrs.get('units_recomputed_last_run', 0))} recomputed: {recomputed})" if recomputed else ""
    print(f"computed {ds.attrs['units_computed_last_run']} units this run{again}; results in {args.out}")
    if args.netcdf:
        print(f"wrote {export_netcdf(args.out, args.netcdf)}")
    return 0 if bool((ds.status.values == 1).all()) else DATA


def _results(path: str):
    from ._store import load

    _input_file(path, "results")
    return load(path)


def _loss(ds, var):
    if var is not None:
        if var not in ds.data_vars:
            raise UsageError(f"--var {var!r} is not in the results; available: {', '.join(map(str, ds.data_vars))}")
        return ds[var]
    for name in LOSS_NAMES:
        if name in ds.data_vars:
            return ds[name]
    raise ValueError(f"no loss variable ({', '.join(LOSS_NAMES)}) in the results: pass --var")


def _fit(args):
    import scaling

    if args.form not in scaling.forms.available():
        raise UsageError(f"unknown --form {args.form!r}; expected one of: {', '.join(scaling.forms.available())}")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    ds = _results(args.results)
    da = _loss(ds, args.var)
    if args.dim not in da.dims:
        raise UsageError(f"--dim {args.dim!r} is not a dim of {da.name!r}; its dims are {', '.join(da.dims)}")
    if "seed" in da.dims and args.dim != "seed":
        da = da.mean("seed", skipna=True)
    fits = da.scaling.fit(dim=args.dim, form=args.form, objective=args.objective, bootstrap=args.bootstrap,
                          key=args.seed)
    others = [d for d in fits.coefficients.dims if d != "param"]
    flat = fits.stack(curve=others) if others else fits.expand_dims(curve=[0])
    for i in range(flat.sizes["curve"]):
        sel = flat.isel(curve=i)
        where = ", ".join(f"{d}={sel[d].item()}" for d in others) or "all"
        params = "  ".join(f"{p}={float(sel.coefficients.sel(param=p)):.4g}" for p in fits.param.values)
        ci = ""
        if "bootstrap_coefficients" in sel:
            b = sel.bootstrap_coefficients.sel(param="alpha" if "alpha" in fits.param.values else fits.param.values[-1])
            b = np.asarray(b)[np.isfinite(b)]
            if b.size:
                lo, hi = np.quantile(b, [0.025, 0.975])
                ci = f"  (95% CI of the exponent [{lo:.4g}, {hi:.4g}])"
        print(f"{where}: {params}{ci}  [{sel.status.item()}]")
    return 0


def _regimes(args):
    import regimes

    if not (np.isfinite(args.ratio) and args.ratio > 1):
        raise UsageError(f"--ratio must be a finite number > 1, got {args.ratio}")
    ds = _results(args.results)
    da = _loss(ds, args.var)
    if {"D", "P"} <= set(da.dims) or {"D", "width"} <= set(da.dims):
        P = "P" if "P" in da.dims else "width"
        m = regimes.regime_map(da, D="D", P=P, ratio=args.ratio)
        for e in m.edge.values:
            r = m.sel(edge=e)
            print(f"{e:>22}: {r.edge_label.item():<20} alpha = {float(r.edge_alpha):.3f} "
                  f"[{float(r.edge_alpha_lo):.3f}, {float(r.edge_alpha_hi):.3f}]  expected {r.edge_expected.item()}")
        d = regimes.duality(da, D="D", P=P, ratio=args.ratio)
        print(f"duality: alpha_D = {float(d.alpha.sel(leg='D')):.3f}, alpha_{P} = {float(d.alpha.sel(leg='P')):.3f}, "
              f"difference {float(d.difference):+.3f} [{float(d.difference_lo):+.3f}, {float(d.difference_hi):+.3f}]"
              f" -> {'consistent' if d.attrs['consistent'] else 'NOT consistent'}")
    elif "D" in da.dims:
        m = da.mean("seed") if "seed" in da.dims else da
        c = regimes.classify(m["D"].values, m.transpose(..., "D").values, skipna=True)
        alphas = ", ".join(f"{a:.3f}" if np.isfinite(a) else "n/a" for a in np.atleast_1d(c.alpha))
        print(f"along D: {', '.join(map(str, np.atleast_1d(c.label)))} (alpha {alphas})")
    else:
        raise ValueError(f"the results have no D dim to classify (dims: {', '.join(da.dims)})")
    return 0


def _export(args):
    from ._store import export_netcdf

    _input_file(args.results, "results")
    _output_dir(args.out)
    print(f"wrote {export_netcdf(args.results, args.out)}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The ``nst`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    ap = _Parser(prog="nst", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                 parents=[common])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("sweep", help="run (or resume) a sweep from a TOML spec", parents=[common])
    s.add_argument("spec", help="the sweep's TOML spec file")
    s.add_argument("--out", required=True, help="zarr store (resumed if it exists)")
    s.add_argument("--executor", default="local", choices=["local", "devices", "dask"])
    s.add_argument("--scheduler", default=None, help="Dask scheduler address (implies --executor dask)")
    s.add_argument("--workers", type=int, default=None, help="local Dask cluster size")
    s.add_argument("--netcdf", default=None, help="also export the results to this netCDF file")
    s.add_argument("--allow-version-change", action="store_true",
                   help="resume a store whose finished units were computed by other code (both versions are recorded)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_sweep)
    f = sub.add_parser("fit", help="fit a scaling law along one dim of stored results", parents=[common])
    f.add_argument("results")
    f.add_argument("--dim", default="D")
    f.add_argument("--var", default=None)
    f.add_argument("--form", default="offset")
    f.add_argument("--objective", default="log_mse")
    f.add_argument("--bootstrap", type=int, default=0)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_fit)
    r = sub.add_parser("regimes", help="classify regimes (and test the duality) of stored results", parents=[common])
    r.add_argument("results")
    r.add_argument("--var", default=None)
    r.add_argument("--ratio", type=float, default=4.0)
    r.set_defaults(func=_regimes)
    e = sub.add_parser("export", help="export stored results to netCDF", parents=[common])
    e.add_argument("results")
    e.add_argument("out")
    e.set_defaults(func=_export)
    return ap


def _message(exc: BaseException) -> str:
    """An exception as one line: its message (its type when the message alone is unclear)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) or not text:
        text = f"{type(exc).__name__}: {text or 'no message'}"
    elif not isinstance(exc, (ValueError, TypeError, OSError, UsageError)):
        text = f"{type(exc).__name__}: {text}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run ``nst`` with ``argv`` (default: the command line); return the exit status.

    Examples
    --------
    >>> from experiments._cli import main
    >>> main(["sweep", "/nonexistent/spec.toml", "--out", "r.zarr"])
    2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = parser().parse_args(argv)
        if getattr(args, "scheduler", None):
            args.executor = "dask"
        return args.func(args)
    except UsageError as exc:
        if debug:
            raise
        print(f"nst: error: {_message(exc)}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every other failure is one line (the traceback with --debug)
        if debug:
            raise
        print(f"nst: error: {_message(exc)}", file=sys.stderr)
        return DATA


if __name__ == "__main__":
    sys.exit(main())
