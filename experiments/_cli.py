"""``nst``: run sweeps and analyse stored results from the shell.

    nst sweep SPEC.toml --out results.zarr [--executor dask --scheduler tcp://HOST:8786]
    nst fit results.zarr --dim D [--form offset] [--var test_loss]
    nst regimes results.zarr [--ratio 4]
    nst export results.zarr results.nc
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _sweep(args):
    from ._run import run, summary
    from ._spec import SweepSpec

    spec = SweepSpec.from_toml(args.spec)
    ds = run(spec, store=args.out, executor=args.executor, scheduler=args.scheduler, n_workers=args.workers,
             progress=not args.no_progress)
    print(summary(ds))
    print(f"computed {ds.attrs['units_computed_last_run']} units this run; results in {args.out}")
    if args.netcdf:
        from ._store import export_netcdf

        print(f"wrote {export_netcdf(args.out, args.netcdf)}")
    return 0 if int((ds.status.values == 1).all()) else 1


def _loss(ds, var):
    from regimes._grid import loss_variable

    return loss_variable(ds, var)


def _fit(args):
    import scaling  # noqa: F401 - registers the .scaling accessor used below

    from ._store import load

    ds = load(args.results)
    da = _loss(ds, args.var)
    if args.dim not in da.dims:
        raise SystemExit(f"dim {args.dim!r} not in {da.name!r} dims {da.dims}")
    if "seed" in da.dims and args.dim != "seed":
        da = da.mean("seed", skipna=True)
    fits = da.scaling.fit(args.form, dim=args.dim, objective=args.objective, bootstrap=args.bootstrap,
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
            lo, hi = np.nanquantile(b, [0.025, 0.975])
            ci = f"  (95% CI of the exponent [{lo:.4g}, {hi:.4g}])"
        print(f"{where}: {params}{ci}  [{sel.status.item()}]")
    return 0


def _regimes(args):
    import regimes

    from ._store import load

    ds = load(args.results)
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
    else:
        m = da.mean("seed") if "seed" in da.dims else da
        c = regimes.classify(m["D"].values, m.transpose(..., "D").values)
        print(f"along D: {np.atleast_1d(c.label)} alpha = {np.round(np.atleast_1d(c.alpha), 3)}")
    return 0


def _export(args):
    from ._store import export_netcdf

    print(f"wrote {export_netcdf(args.results, args.out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nst", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run (or resume) a sweep from a TOML spec")
    s.add_argument("spec")
    s.add_argument("--out", required=True, help="zarr store (resumed if it exists)")
    s.add_argument("--executor", default="local", choices=["local", "devices", "dask"])
    s.add_argument("--scheduler", default=None, help="Dask scheduler address (implies --executor dask)")
    s.add_argument("--workers", type=int, default=None, help="local Dask cluster size")
    s.add_argument("--netcdf", default=None, help="also export the results to this netCDF file")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_sweep)
    f = sub.add_parser("fit", help="fit a scaling law along one dim of stored results")
    f.add_argument("results")
    f.add_argument("--dim", default="D")
    f.add_argument("--var", default=None)
    f.add_argument("--form", default="offset")
    f.add_argument("--objective", default="log_mse")
    f.add_argument("--bootstrap", type=int, default=0)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_fit)
    r = sub.add_parser("regimes", help="classify regimes (and test the duality) of stored results")
    r.add_argument("results")
    r.add_argument("--var", default=None)
    r.add_argument("--ratio", type=float, default=4.0)
    r.set_defaults(func=_regimes)
    e = sub.add_parser("export", help="export stored results to netCDF")
    e.add_argument("results")
    e.add_argument("out")
    e.set_defaults(func=_export)
    args = ap.parse_args(argv)
    if getattr(args, "scheduler", None):
        args.executor = "dask"
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
