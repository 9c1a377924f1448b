"""Sweeps: exponents recovered, kill-and-resume, Dask equals in-process, failures recorded."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import experiments
import scaling

RESULT_VARS = ("test_loss", "train_loss", "test_accuracy", "status", "error")
ROOT = Path(__file__).resolve().parents[2]


def small_spec(n_seeds=12):
    return experiments.SweepSpec(
        task={"kind": "teacher_student", "n_features": 4000, "alpha": 0.5},
        model={"kind": "rf_ridge", "ridge": 1e-4},
        grid={"D": [16, 32, 64, 128], "P": [16, 64, 256], "seed": list(range(n_seeds))},
        name="small")


def assert_same_results(a: xr.Dataset, b: xr.Dataset):
    """Identical in every result variable and coordinate (wall times and run metadata aside)."""
    for v in RESULT_VARS:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    for c in a.coords:
        np.testing.assert_array_equal(a[c].values, b[c].values)
    assert a.attrs["spec_fingerprint"] == b.attrs["spec_fingerprint"]


def test_teacher_student_sweep_recovers_the_exponents():
    # alpha_K = 0.3 with 1e5 teacher features; edges 16..64 at the other size 1024 (16x):
    # in this window power-law fits of the theory are within 0.03 of alpha_K.
    sizes = [16, 20, 25, 32, 40, 50, 64, 1024]
    spec = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 100_000, "alpha": 0.3},
                                 model={"kind": "rf_ridge"}, grid={"D": sizes, "P": sizes, "seed": list(range(8))})
    ds = experiments.run(spec, progress=False)
    mean = ds.test_loss.mean("seed")
    x = np.array(sizes[:-1])
    alpha_D = scaling.fit("power", x, mean.sel(P=1024).values[:-1]).params["alpha"]
    alpha_P = scaling.fit("power", x, mean.sel(D=1024).values[:-1]).params["alpha"]
    assert abs(alpha_D - 0.3) < 0.05, alpha_D
    assert abs(alpha_P - 0.3) < 0.05, alpha_P


def test_results_are_an_xarray_dataset_with_provenance():
    ds = experiments.run(small_spec(2), progress=False)
    assert ds.test_loss.dims == ("D", "P", "seed")
    assert ds.status.dims == ("seed",) and (ds.status == 1).all()
    assert ds.D.attrs["units"] == "samples"
    for key in ("spec", "spec_fingerprint", "package_versions", "git_revision", "device", "seeds"):
        assert key in ds.attrs
    assert experiments.SweepSpec.from_dict(__import__("json").loads(ds.attrs["spec"])) == small_spec(2)
    assert np.all(np.isfinite(ds.test_loss)) and np.all(ds.time_s > 0)


def test_same_seed_same_numbers():
    a = experiments.run(small_spec(2), progress=False)
    b = experiments.run(small_spec(2), progress=False)
    assert_same_results(a, b)


def test_killed_sweep_resumes_without_losing_or_repeating_work(tmp_path):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text('''
name = "kill-test"
[task]
kind = "teacher_student"
n_features = 4000
alpha = 0.5
[model]
kind = "rf_ridge"
ridge = 1e-4
[grid]
D = [16, 32, 64, 128, 256]
P = [16, 64, 256, 512]
seed = [''' + ", ".join(str(s) for s in range(40)) + "]\n")
    spec = experiments.SweepSpec.from_toml(spec_path)
    store = tmp_path / "results.zarr"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "experiments", "sweep", str(spec_path), "--out", str(store),
                                 "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    done_at_kill = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if store.exists():
                try:
                    done_at_kill = int((xr.open_zarr(store, consolidated=False).status.values == 1).sum())
                except Exception:  # noqa: BLE001 - the store may be mid-creation
                    continue
                if done_at_kill >= 5:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    before = experiments.load(store)
    done = before.status.values == 1
    assert 5 <= done.sum() < 40
    resumed = experiments.run(spec, store=store, progress=False)
    # Only the missing units were computed: nothing lost, nothing repeated.
    assert resumed.attrs["units_computed_last_run"] == int((~done).sum())
    assert resumed.attrs["cells_computed_last_run"] == int((~done).sum()) * 20
    np.testing.assert_array_equal(resumed.test_loss.values[..., done], before.test_loss.values[..., done])
    assert_same_results(resumed, experiments.run(spec, progress=False))


def test_dask_local_cluster_gives_identical_results():
    spec = small_spec(4)
    local = experiments.run(spec, progress=False)
    distributed = experiments.run(spec, executor="dask", n_workers=2, progress=False)
    assert_same_results(local, distributed)


def test_failures_are_recorded_not_fatal(tmp_path):
    # digits has 1257 training images: D = 5000 cannot be drawn, so those units fail.
    spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "krr"},
                                 grid={"D": [50, 100], "seed": [0, 1], "n_classes": [10]}, n_test=200)
    ok = experiments.run(spec, progress=False)
    assert (ok.status == 1).all()
    bad = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "krr"},
                                grid={"D": [50, 5000], "seed": [0, 1]}, n_test=200)
    with pytest.warns(RuntimeWarning, match=r"2 of 2 units failed; .* First: ValueError: the grid asks for 5000"):
        ds = experiments.run(bad, store=tmp_path / "bad.zarr", progress=False)
    assert (ds.status == 2).all()
    assert "asks for 5000 training" in str(ds.error.values[0])
    assert "failed" in experiments.summary(ds)
    # where warnings are errors, the results come with the exception (an in-memory run would
    # otherwise lose them): half the units failed, the other half are there
    def data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
        if coords["seed"] == 1:
            time.sleep(0.3)  # seed 3 fails first on two cores; the warning still names seed 1 (grid order)
        if coords["seed"] % 2:
            raise ValueError(f"odd seed {coords['seed']}")
        x = np.linspace(-1, 1, n_pool + spec.n_test)[:, None] ** np.arange(1, 5)
        return experiments.UnitData(x[:n_pool], x[:n_pool, 0], x[n_pool:], x[n_pool:, 0])

    experiments.register_task(experiments.TaskKind("odd_seeds_fail", {}, data), overwrite=True)
    half = experiments.SweepSpec(task={"kind": "odd_seeds_fail"}, model={"kind": "rf_ridge", "ridge": 1e-3},
                                 grid={"D": [8, 16], "P": [8, 16], "seed": [0, 1, 2, 3]}, n_test=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", experiments.UnitsFailedWarning)
        said = experiments.run(half, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", experiments.UnitsFailedWarning)
        with pytest.raises(experiments.UnitsFailedWarning, match="2 of 4 units failed.*odd seed 1") as raised:
            experiments.run(half, progress=False)
    kept = raised.value.dataset
    assert kept.status.values.tolist() == [1, 2, 1, 2]
    assert np.isfinite(kept.test_loss.sel(seed=[0, 2])).all()
    for name in ("test_loss", "train_loss", "status", "error"):  # (time_s and its checksum vary)
        xr.testing.assert_identical(kept[name], said[name])


def test_a_store_of_another_sweep_is_refused(tmp_path):
    store = tmp_path / "r.zarr"
    experiments.run(small_spec(1), store=store, progress=False)
    with pytest.raises(ValueError, match="holds a different sweep"):
        experiments.run(small_spec(2), store=store, progress=False)


def test_netcdf_export_round_trip(tmp_path):
    store = tmp_path / "r.zarr"
    ds = experiments.run(small_spec(1), store=store, progress=False)
    nc = experiments.export_netcdf(store, tmp_path / "r.nc")
    back = experiments.load(nc)
    assert_same_results(ds, back)


def test_bad_executor_and_scheduler():
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        experiments.run(small_spec(1), executor="slurm")
    with pytest.raises(ValueError, match="needs executor='dask'"):
        experiments.run(small_spec(1), scheduler="tcp://x:1")


def test_an_interrupt_cancels_queued_units_and_keeps_finished_ones():
    """Ctrl-C in a host-parallel sweep: queued units are cancelled at once (they used to all
    run before the exception surfaced), units already running finish and are recorded."""
    import concurrent.futures
    import threading

    from experiments._run import _collect

    started, recorded = [], []
    gate = threading.Event()

    def unit(k):
        started.append(k)
        if k == 1:
            gate.wait(5)  # still running when the interrupt comes
        elif k > 1:
            time.sleep(0.02)  # the queue takes ~0.8 s to drain: the interrupt lands long before
        return k, {"k": k}, None

    def record(u, result, error):
        if u == 0:
            gate.set()
            raise KeyboardInterrupt
        recorded.append(u)

    pool = concurrent.futures.ThreadPoolExecutor(2)
    futures = [pool.submit(unit, k) for k in range(40)]
    with pytest.raises(KeyboardInterrupt):
        _collect(pool, futures, record)
    pool.shutdown(wait=True)
    assert len(started) < 40  # queued units never ran
    assert 1 in recorded  # the unit running at the interrupt was recorded
    assert all(f.done() for f in futures)
