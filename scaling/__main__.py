"""Fit scaling laws to a CSV from the shell.

    python -m scaling runs.csv --form offset --x D --y loss
    python -m scaling isoflops.csv --form chinchilla --x N=params,D=tokens --y loss \\
        --by experiment --objective log_huber --bootstrap 200 --seed 0

Prints every parameter with its interval (bootstrap percentile with --bootstrap, else
Gauss-Newton standard error), the objective and the status of each fit.
"""

from __future__ import annotations

import argparse
import sys


def _parse_x(spec: str, variables: tuple[str, ...]) -> dict[str, str]:
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if all("=" in p for p in parts):
        mapping = dict(p.split("=", 1) for p in parts)
    elif len(parts) == len(variables):
        mapping = dict(zip(variables, parts))
    else:
        raise SystemExit(f"--x must name {len(variables)} column(s) for variables {variables}, got {spec!r}")
    if set(mapping) != set(variables):
        raise SystemExit(f"--x must map the form's variables {variables}; got {sorted(mapping)}")
    return mapping


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    import scaling

    ap = argparse.ArgumentParser(prog="python -m scaling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="CSV file with one row per point")
    ap.add_argument("--form", default="offset", help=f"one of {', '.join(scaling.forms.available())}")
    ap.add_argument("--x", required=True, help="column(s): 'D', or 'N,D', or 'N=params,D=tokens'")
    ap.add_argument("--y", default="loss", help="loss column (default: loss)")
    ap.add_argument("--by", default=None, help="column to group by: one fit per group")
    ap.add_argument("--query", default=None, help="pandas query to select rows, e.g. 'outlier == False'")
    ap.add_argument("--objective", default="log_mse", help="log_mse, log_huber, mse or asymmetric")
    ap.add_argument("--delta", type=float, default=1e-3, help="Huber delta for log_huber")
    ap.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for intervals")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed for the bootstrap")
    ap.add_argument("--level", type=float, default=0.95, help="interval level")
    ap.add_argument("--out", default=None, help="write all fits as a netCDF file")
    args = ap.parse_args(argv)

    form = scaling.forms.get(args.form)
    table = pd.read_csv(args.csv)
    if args.query:
        table = table.query(args.query)
    mapping = _parse_x(args.x, form.variables)
    for col in [*mapping.values(), args.y] + ([args.by] if args.by else []):
        if col not in table.columns:
            raise SystemExit(f"column {col!r} not in {args.csv}; columns: {', '.join(table.columns)}")
    groups = table.groupby(args.by, sort=True) if args.by else [("all", table)]
    fits = {}
    for name, g in groups:
        x = {v: g[c].to_numpy(float) for v, c in mapping.items()}
        xa = x[form.variables[0]] if len(form.variables) == 1 else x
        try:
            res = scaling.fit(form, xa, g[args.y].to_numpy(float), objective=args.objective, delta=args.delta,
                              bootstrap=args.bootstrap, key=args.seed if args.bootstrap else None)
        except ValueError as exc:
            print(f"== {name}: cannot fit: {exc}")
            continue
        fits[str(name)] = res
        print(f"== {name} ({len(g)} points)")
        print(res.summary(args.level))
    if args.out and fits:
        import xarray as xr

        ds = xr.concat([r.to_dataset() for r in fits.values()], dim="group").assign_coords(group=list(fits))
        ds.attrs.update(source=args.csv, form=form.name, objective=args.objective)
        ds.to_netcdf(args.out)
        print(f"wrote {args.out}")
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
