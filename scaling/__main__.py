"""Fit scaling laws to a CSV from the shell.

    scaling-fit runs.csv --form offset --x D --y loss
    scaling-fit isoflops.csv --form chinchilla --x N=params,D=tokens --y loss \\
        --by experiment --where outlier=False --objective log_huber --compute-optimal 1e21,1e23
    scaling-fit isoflops.csv --form chinchilla --x N=params,D=tokens --by experiment --shared alpha,beta

Prints every parameter with its standard error and interval, and says which kind:
bootstrap percentile with --bootstrap, else Wald from the Gauss-Newton covariance
(log_mse, mse) or the sandwich (robust) covariance (log_huber, asymmetric). Then the
correlation matrix, AIC/BIC, R^2 in log space and the status of each fit.

Rows are selected with --where (repeatable, all must hold): COLUMN=VALUE, COLUMN!=VALUE,
COLUMN<VALUE, COLUMN<=VALUE, COLUMN>VALUE, COLUMN>=VALUE. Values are compared as numbers
when both sides are numbers, else as text; nothing is evaluated.

Errors print one line; exit status 2 for usage errors (options, missing file), 1 for
data errors (empty, malformed or non-UTF-8 file, bad values, fits that fail). --debug
shows the traceback.
"""

from __future__ import annotations

import argparse
import re
import sys

PROG = "scaling-fit"


class UsageError(Exception):
    """Bad command line: exit status 2."""


class DataError(Exception):
    """Bad input data: exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UsageError(message)


def parse_x(spec: str, variables: tuple[str, ...]) -> dict[str, str]:
    """``--x`` -> {form variable: column}; duplicate or unknown variables are errors."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise UsageError(f"--x names no column: {spec!r}")
    if all("=" in p for p in parts):
        pairs = [tuple(s.strip() for s in p.split("=", 1)) for p in parts]
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise UsageError(f"--x maps {', '.join(dup)} more than once: {spec!r}")
        mapping = dict(pairs)
    elif any("=" in p for p in parts):
        raise UsageError(f"--x mixes VAR=COLUMN and bare columns: {spec!r}")
    elif len(parts) == len(variables):
        mapping = dict(zip(variables, parts))
    else:
        raise UsageError(f"--x must name {len(variables)} column(s) for variables {', '.join(variables)}; got {spec!r}")
    if set(mapping) != set(variables):
        raise UsageError(f"--x must map the form's variables {', '.join(variables)}; got {', '.join(mapping)}")
    return mapping


_WHERE = re.compile(r"^\s*([^<>=!]+?)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")


def parse_where(clause: str) -> tuple[str, str, str]:
    """``'budget>=1e20'`` -> ``('budget', '>=', '1e20')``; no expression is evaluated."""
    m = _WHERE.match(clause)
    if not m or not m.group(3):
        raise UsageError(f"--where takes COLUMN OP VALUE with OP one of = != < <= > >=, got {clause!r}")
    col, op, value = m.groups()
    return col, "=" if op == "==" else op, value


def apply_where(table, clauses):
    import numpy as np

    keep = np.ones(len(table), dtype=bool)
    for col, op, value in clauses:
        if col not in table.columns:
            raise UsageError(f"--where column {col!r} not in the file; columns: {', '.join(map(str, table.columns))}")
        series = table[col]
        try:
            v = float(value)
            numeric = series.dtype.kind in "fiu"
        except ValueError:
            numeric = False
        if series.dtype.kind == "b" and value.lower() in ("true", "false"):
            left, right = series.to_numpy(), value.lower() == "true"
        elif numeric:
            left, right = series.to_numpy(float), v
        else:
            left, right = series.astype(str).to_numpy(), value
            if op in ("<", "<=", ">", ">="):
                raise DataError(f"--where {col}{op}{value}: column {col!r} is not numeric, so only = and != apply")
        keep &= {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
                 ">": left > right, ">=": left >= right}[op]
    return table[keep]


def build_parser(forms_available) -> argparse.ArgumentParser:
    ap = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="CSV file with one row per point")
    ap.add_argument("--form", default="offset", help=f"one of {', '.join(forms_available)}")
    ap.add_argument("--x", required=True, help="column(s): 'D', or 'N,D', or 'N=params,D=tokens'")
    ap.add_argument("--y", default="loss", help="loss column (default: loss)")
    ap.add_argument("--by", default=None, help="column to group by: one fit per group")
    ap.add_argument("--shared", default=None,
                    help="with --by: parameters shared by all groups (e.g. alpha,beta), one joint fit + LR test")
    ap.add_argument("--where", action="append", default=[], metavar="COND",
                    help="row filter COLUMN=VALUE (or != < <= > >=); repeat to combine")
    ap.add_argument("--objective", default="log_mse", help="log_mse, log_huber, mse or asymmetric")
    ap.add_argument("--delta", type=float, default=1e-3, help="Huber delta for log_huber")
    ap.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for percentile intervals")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed for the bootstrap")
    ap.add_argument("--level", type=float, default=0.95, help="interval level")
    ap.add_argument("--compute-optimal", default=None, metavar="C1,C2,...",
                    help="chinchilla/kaplan: print N_opt, D_opt, L_opt with intervals at these FLOP budgets")
    ap.add_argument("--flops", type=float, default=6.0, help="k in the FLOP model C = k N D (default 6)")
    ap.add_argument("--out", default=None, help="write all fits as a netCDF file")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def read_table(path: str):
    import pandas as pd

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a CSV file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path} is empty: expected a header row and one row per point")
    import io

    try:
        table = pd.read_csv(io.StringIO(text))
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a well-formed CSV: {str(exc).strip().splitlines()[-1]}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no columns") from None
    if table.empty:
        raise DataError(f"{path} has a header but no data rows")
    return table


def _column(table, col: str, path: str):
    import numpy as np

    try:
        return table[col].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = next((v for v in table[col] if not _is_number(v)), None)
        raise DataError(f"column {col!r} of {path} must be numeric; found {bad!r}") from None


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def run(argv, out) -> int:
    import numpy as np

    import scaling

    ap = build_parser(scaling.forms.available())
    args = ap.parse_args(argv)
    try:
        form = scaling.forms.get(args.form)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name in ("delta", "level", "flops"):
        v = getattr(args, name)
        if not np.isfinite(v) or v <= 0 or (name == "level" and v >= 1):
            raise UsageError(f"--{name} must be {'in (0, 1)' if name == 'level' else 'finite and > 0'}, got {v}")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if args.objective not in ("log_mse", "log_huber", "mse", "asymmetric"):
        raise UsageError(f"unknown --objective {args.objective!r}; expected one of: log_mse, log_huber, mse, asymmetric")
    mapping = parse_x(args.x, form.variables)
    where = [parse_where(c) for c in args.where]
    budgets = None
    if args.compute_optimal:
        try:
            budgets = np.array([float(v) for v in args.compute_optimal.split(",") if v.strip()])
        except ValueError:
            raise UsageError(f"--compute-optimal takes comma-separated numbers, got {args.compute_optimal!r}") from None
        if form.name not in ("chinchilla", "kaplan"):
            raise UsageError(f"--compute-optimal needs --form chinchilla or kaplan, not {form.name!r}")
    shared = [s.strip() for s in args.shared.split(",") if s.strip()] if args.shared else None
    if shared and not args.by:
        raise UsageError("--shared needs --by (the groups that share the parameters)")

    table = read_table(args.csv)
    for col in [*mapping.values(), args.y] + ([args.by] if args.by else []):
        if col not in table.columns:
            raise UsageError(f"column {col!r} not in {args.csv}; columns: {', '.join(map(str, table.columns))}")
    table = apply_where(table, where)
    if table.empty:
        raise DataError("no rows left after --where " + " and ".join(args.where))
    fit_kw = dict(objective=args.objective, delta=args.delta)

    def show_optimal(res, label):
        if budgets is None:
            return
        opt = scaling.compute_optimal(res, budgets, flops=args.flops, level=args.level)
        print(f"compute-optimal allocation ({opt.attrs['flops_model']}; {args.level:.0%} {opt.attrs['interval']}):",
              file=out)
        groups = opt.group.values if "group" in opt.dims else [None]
        for g in groups:
            o = opt.sel(group=g) if g is not None else opt
            head = f"  [{g}] " if g is not None else "  "
            print(f"{head}a = {float(o.a):.4f} ± {float(o.a_stderr):.2g}, b = {float(o.b):.4f}, G = {float(o.G):.4g}",
                  file=out)
            for j, c in enumerate(opt["compute"].values):
                oc = o.isel(compute=j)
                print(f"{head}C = {c:.3g}: N_opt = {float(oc.N_opt):.4g} [{float(oc.N_opt_lower):.4g}, "
                      f"{float(oc.N_opt_upper):.4g}], D_opt = {float(oc.D_opt):.4g} [{float(oc.D_opt_lower):.4g}, "
                      f"{float(oc.D_opt_upper):.4g}], L_opt = {float(oc.L_opt):.4g}", file=out)

    def xy(g):
        x = {v: _column(g, c, args.csv) for v, c in mapping.items()}
        return x, _column(g, args.y, args.csv)

    if shared:
        x, y = xy(table)
        try:
            res = scaling.fit(form, x, y, groups=table[args.by].astype(str).to_numpy(), shared=shared, **fit_kw)
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot fit: {exc}") from None
        print(res.summary(args.level), file=out)
        show_optimal(res, "shared")
        if args.out:
            res.to_dataset().assign_attrs(source=args.csv).to_netcdf(args.out)
            print(f"wrote {args.out}", file=out)
        return 0

    groups = table.groupby(args.by, sort=True) if args.by else [("all", table)]
    fits = {}
    failed = 0
    for name, g in groups:
        x, y = xy(g)
        try:
            res = scaling.fit(form, x, y, bootstrap=args.bootstrap, key=args.seed if args.bootstrap else None, **fit_kw)
        except (ValueError, TypeError) as exc:
            print(f"== {name}: cannot fit: {exc}", file=out)
            failed += 1
            continue
        fits[str(name)] = res
        print(f"== {name} ({len(g)} points)", file=out)
        print(res.summary(args.level), file=out)
        show_optimal(res, name)
    if args.out and fits:
        import xarray as xr

        ds = xr.concat([r.to_dataset() for r in fits.values()], dim="group").assign_coords(group=list(fits))
        ds.attrs.update(source=args.csv, form=form.name, objective=args.objective)
        ds.to_netcdf(args.out)
        print(f"wrote {args.out}", file=out)
    if not fits:
        raise DataError(f"no group could be fitted ({failed} failed; see above)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scaling-fit``: returns the exit status (0 ok, 1 data, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return run(argv, sys.stdout)
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except UsageError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else is still one line unless --debug
        if debug:
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
