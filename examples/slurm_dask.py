"""Run a sweep on a SLURM cluster with Dask: one worker per GPU, the client writes the store.

    python examples/slurm_dask.py examples/specs/cifar10_cnn_cluster.toml --out /shared/cifar.zarr \
        --jobs 8 --partition gpu --walltime 04:00:00

What it does:
- dask-jobqueue's ``SLURMCluster`` submits ``--jobs`` batch jobs, each running one Dask worker
  that declares ``--resources GPU=1``; every unit is submitted with ``resources={"GPU": 1}``,
  so a worker runs one unit at a time on its GPU.
- A unit that fails (a preempted node, a lost worker, a GPU out of memory) is resubmitted
  ``--retries`` times, then recorded as failed; rerunning the same command recomputes
  exactly the missing and failed units (the store is resumable, and a killed or resumed run
  gives bitwise the same Dataset as one uninterrupted run on the same hardware).
- Workers return results; this process (the client) writes each unit's zarr region as it
  arrives. The store has a single writer, and only the machine running this script needs
  to reach ``--out``.
- The Dask dashboard listens on 127.0.0.1 only (reach it with ``ssh -L 8787:localhost:8787
  login-node``); ``--dashboard-address :8787`` exposes it on every interface, if you ask.

Why the ``if __name__ == "__main__":`` guard: Dask (like ``multiprocessing``) may start
worker processes that re-import the main module; without the guard each of them would run
the script again, submitting new SLURM jobs and starting clusters recursively. Keep every
cluster-creating line under the guard when you adapt this script.

Needs the ``cluster`` extra (dask, distributed, dask-jobqueue) on the login node and the
toolkit with its ``gpu`` extra in the environment the batch jobs activate (``--python``).
"""

from __future__ import annotations

import argparse


def build_cluster(args):
    """A SLURMCluster whose workers each hold one GPU; nothing starts until ``scale``."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        queue=args.partition,
        cores=args.cores,
        processes=1,  # one worker process per job: it owns the job's GPU
        memory=args.memory,
        walltime=args.walltime,
        job_extra_directives=["--gres=gpu:1"] + list(args.sbatch or []),
        worker_extra_args=["--resources", "GPU=1"],
        python=args.python,
        scheduler_options={"dashboard_address": args.dashboard_address},
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="sweep spec (TOML)")
    ap.add_argument("--out", required=True, help="zarr store (resumable)")
    ap.add_argument("--jobs", type=int, default=4, help="SLURM jobs = workers = GPUs")
    ap.add_argument("--partition", default=None)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--memory", default="64GB")
    ap.add_argument("--walltime", default="04:00:00")
    ap.add_argument("--sbatch", action="append", help="extra #SBATCH directive (repeatable)")
    ap.add_argument("--python", default=None, help="python of the environment the jobs use")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--dashboard-address", default="127.0.0.1:8787")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)

    import experiments

    cluster = build_cluster(args)
    cluster.scale(jobs=args.jobs)
    try:
        ds = experiments.run(args.spec, store=args.out, executor="dask", scheduler=cluster.scheduler_address,
                             retries=args.retries, resources={"GPU": 1})
        print(experiments.summary(ds))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
