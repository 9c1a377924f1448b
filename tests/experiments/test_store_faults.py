"""Sweep stores under faults: damaged chunks, code changes, two runs at once, read-only stores.

Most tests drive :class:`ZarrStore` directly with synthetic unit results (fast, and
independent of any model); the end-to-end ones run real sweeps through ``experiments.run``
and the ``nst`` command.
"""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import experiments
from experiments import _store
from experiments._store import ReadOnlyStoreError, StoreError, ZarrStore

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = ("test_loss", "steps", "converged")
SPEC = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 2000, "alpha": 0.5},
                             model={"kind": "rf_ridge"}, grid={"D": [16, 32], "P": [32, 64, 128], "seed": [0, 1, 2]})


def result(unit):
    """A unit's synthetic results over (D, P): distinct per seed, integer counters and a flag."""
    s = unit["seed"][0]
    base = np.arange(6.0).reshape(2, 3) + 10 * s
    return {"test_loss": base / 7, "steps": 3 * base, "converged": (base % 2 == 0).astype(float),
            "time_s": np.full((2, 3), 0.25)}


def fill(path, spec=SPEC, skip=()):
    with ZarrStore(path, spec, VARIABLES) as st:
        for u in spec.units():
            if u["seed"][0] not in skip:
                st.write(u, result(u), None)
        st.set_attrs(last_run_utc="now", units_computed_last_run=len(spec.units()) - len(skip))
    return experiments.load(path)


def chunk(store, var, seed):
    return store / var / f"0.0.{seed}" if var not in _store.PER_UNIT + ("status",) else store / var / str(seed)


def damage(path: Path, how: str):
    data = path.read_bytes() if path.exists() else b""
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        b = bytearray(data)
        b[len(b) - 5] ^= 0x10  # in the compressed payload
        path.write_bytes(bytes(b))
    elif how == "garbage":
        path.write_bytes(os.urandom(max(len(data), 64)))


def assert_same(a: xr.Dataset, b: xr.Dataset):
    for v in (*VARIABLES, "time_s", "status", "error"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


@pytest.mark.parametrize("var", ["test_loss", "steps", "checksum"])
@pytest.mark.parametrize("how", ["delete", "truncate", "flip", "garbage"])
def test_damaged_chunks_are_found_reported_and_recomputed(tmp_path, var, how):
    store = tmp_path / "s.zarr"
    good = fill(store)
    damage(chunk(store, var, 1), how)
    # Reading never returns wrong numbers: either the values are intact (a flip that blosc
    # undoes) or load() refuses, naming the unit.
    try:
        seen = experiments.load(store)
    except StoreError as exc:
        assert "seed=1" in str(exc) and "rerun the sweep" in str(exc)
        refused = True
    else:
        assert_same(seen, good)
        refused = False
    with ZarrStore(store, SPEC, VARIABLES) as st:
        assert st.status().tolist() == ([1, 0, 1] if refused else [1, 1, 1])
        assert sum(st.recomputed.values()) == int(refused)
        if how == "delete" and var != "checksum":
            assert st.recomputed == {"missing chunk": 1}
        for u in SPEC.units():
            if st.status()[u["seed"][0]] != 1:
                st.write(u, result(u), None)
        st.set_attrs()
    back = experiments.load(store)
    assert_same(back, good)
    assert back.attrs["units_recomputed_last_run"] == int(refused)
    assert ("1 corrupt" in back.attrs["recomputed_last_run"]) == refused


def test_a_damaged_status_chunk_means_recompute(tmp_path):
    store = tmp_path / "s.zarr"
    good = fill(store)
    damage(chunk(store, "status", 2), "garbage")
    with ZarrStore(store, SPEC, VARIABLES) as st:
        assert st.status().tolist() == [1, 1, 0]
        assert st.recomputed in ({"unreadable chunk": 1}, {"invalid status": 1})
        u = SPEC.units()[2]
        st.write(u, result(u), None)
    assert_same(experiments.load(store), good)


def test_damaged_coordinates_and_consolidated_metadata_are_repaired(tmp_path):
    store = tmp_path / "s.zarr"
    good = fill(store)
    (store / ".zmetadata").write_bytes(b"{not json")
    assert_same(experiments.load(store), good)  # read from the arrays' own metadata instead
    damage(store / "P" / "0", "garbage")
    with pytest.raises(StoreError, match="not a readable sweep store"):
        experiments.load(store)
    with ZarrStore(store, SPEC, VARIABLES) as st:  # coordinates are the spec's grid: rewritten
        assert st.repaired == ["P"] and st.status().tolist() == [1, 1, 1]
        st.set_attrs()  # reconsolidates
    back = experiments.load(store)
    assert_same(back, good)
    np.testing.assert_array_equal(back.P.values, SPEC.grid["P"])
    assert back.attrs["repaired_coordinates_last_run"] == "P"
    json.loads((store / ".zmetadata").read_text())


def test_resuming_across_code_versions_needs_an_explicit_flag(tmp_path, monkeypatch):
    store = tmp_path / "s.zarr"
    monkeypatch.setattr(_store, "code_version", lambda: "0.1.0+src.aaaa")
    fill(store, skip=(2,))  # seed 2 missing: a killed run
    monkeypatch.setattr(_store, "code_version", lambda: "0.1.0+src.bbbb")
    with pytest.raises(StoreError, match=r"units computed by other code: '0.1.0\+src.aaaa' \(2 units\).*"
                                         r"allow_version_change=True"):
        ZarrStore(store, SPEC, VARIABLES)
    with ZarrStore(store, SPEC, VARIABLES, allow_version_change=True) as st:
        u = SPEC.units()[2]
        st.write(u, result(u), None)
        st.set_attrs()
    ds = experiments.load(store)
    assert ds.code_version.values.tolist() == ["0.1.0+src.aaaa", "0.1.0+src.aaaa", "0.1.0+src.bbbb"]
    assert json.loads(ds.attrs["code_versions"]) == {"0.1.0+src.aaaa": 2, "0.1.0+src.bbbb": 1}
    assert ds.attrs["code_version"] == "0.1.0+src.bbbb"
    # A finished store opened by other code computes nothing, so it mixes nothing: no refusal.
    monkeypatch.setattr(_store, "code_version", lambda: "0.1.0+src.cccc")
    ZarrStore(store, SPEC, VARIABLES).close()


def test_code_version_follows_every_source_edit(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    first = _store.source_hash([pkg])
    assert _store.source_hash([pkg]) == first
    (pkg / "a.py").write_text("x = 2\n")
    assert _store.source_hash([pkg]) != first
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "b.py").write_text("")
    assert _store.source_hash([pkg]) != first
    assert "+src." in _store.code_version()


def test_a_second_run_on_a_store_in_use_stops_with_a_clear_message(tmp_path):
    store = tmp_path / "s.zarr"
    fill(store, skip=(1,))
    first = ZarrStore(store, SPEC, VARIABLES)
    partial = store / "test_loss" / "0.0.1.0123abcd.partial"  # a write in progress by the holder
    partial.write_bytes(b"half a chunk")
    with pytest.raises(StoreError, match=rf"in use by another run \(pid {os.getpid()} on .*since"):
        ZarrStore(store, SPEC, VARIABLES)
    assert partial.exists()  # never delete another run's temporary file
    first.close()
    with ZarrStore(store, SPEC, VARIABLES) as st:  # the holder is gone: its leftovers are orphans
        assert not partial.exists()
        assert st.status().tolist() == [1, 0, 1]


def test_two_runs_creating_a_store_at_once_do_not_crash(tmp_path):
    store = tmp_path / "fresh.zarr"
    start = threading.Barrier(4)

    def open_store(_):
        start.wait()
        try:
            with ZarrStore(store, SPEC, VARIABLES) as st:
                for u in SPEC.units():
                    st.write(u, result(u), None)
            return "ran"
        except StoreError as exc:
            assert "in use by another run" in str(exc)
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(open_store, range(4)))
    assert "ran" in outcomes and set(outcomes) <= {"ran", "refused"}
    ds = experiments.load(store)
    assert (ds.status == 1).all()
    assert not list(tmp_path.glob(".fresh.zarr.building-*"))


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    store = tmp_path / "s.zarr"
    fill(store, skip=(0,))
    # Another process takes the store's lock the way a run does (flock on the lock file)...
    code = ("import fcntl, json, os, time\n"
            f"fd = os.open({str(_store.lock_path(store))!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "os.ftruncate(fd, 0)\n"
            "os.write(fd, json.dumps({'pid': os.getpid(), 'host': 'h', 'since': 't'}).encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=f"pid {proc.pid}"):
            ZarrStore(store, SPEC, VARIABLES)
    finally:  # ... and is killed: the kernel frees the lock, nothing is left to clean up by hand
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    with ZarrStore(store, SPEC, VARIABLES) as st:
        assert st.status().tolist() == [0, 1, 1]


def test_a_read_only_store_fails_up_front_in_one_line(tmp_path, monkeypatch):
    store = tmp_path / "s.zarr"
    good = fill(store, skip=(2,))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK else real_access(p, mode, **kw))
    with pytest.raises(ReadOnlyStoreError, match="is read-only") as err:
        ZarrStore(store, SPEC, VARIABLES)
    assert "\n" not in str(err.value) and isinstance(err.value, PermissionError)
    monkeypatch.undo()
    assert_same(experiments.load(store), good)  # untouched, and still readable


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_a_chmod_read_only_store_fails_up_front(tmp_path):
    store = tmp_path / "s.zarr"
    fill(store, skip=(2,))
    modes = {}
    for p in [store, *store.rglob("*")]:
        modes[p] = p.stat().st_mode
        p.chmod(modes[p] & ~0o222)
    try:
        with pytest.raises(ReadOnlyStoreError, match="is read-only"):
            ZarrStore(store, SPEC, VARIABLES)
    finally:
        for p, m in modes.items():
            p.chmod(m)


def test_layout_is_consolidated_cf_with_integer_counters_and_vlen_errors(tmp_path):
    store = tmp_path / "s.zarr"
    long_error = "ValueError: " + "x" * 2000
    with ZarrStore(store, SPEC, VARIABLES) as st:
        u0, u1, u2 = SPEC.units()
        st.write(u0, result(u0), None)
        st.write(u1, None, long_error)
        st.set_attrs(units_computed_last_run=2)
    assert (store / ".zmetadata").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "consolidated metadata" warning
        ds = xr.open_zarr(store).load()
    assert ds.status.attrs["flag_meanings"] == "missing done failed"
    assert list(ds.status.attrs["flag_values"]) == [0, 1, 2]
    assert ds.status.values.tolist() == [1, 2, 0] and ds.status.dtype == np.int8
    assert ds.steps.dtype == np.int64 and ds.converged.dtype == np.int8
    assert list(ds.converged.attrs["flag_values"]) == [0, 1] and ds.converged.attrs["flag_meanings"] == "no yes"
    np.testing.assert_array_equal(ds.steps.values[..., 0], 3 * (np.arange(6).reshape(2, 3)))
    assert (ds.steps.values[..., 1:] == -1).all()  # failed and missing units: the declared fill
    assert np.isnan(ds.test_loss.values[..., 1:]).all()
    assert str(ds.error.values[1]) == long_error  # whole, not cut at a fixed width
    meta = json.loads((store / "error" / ".zarray").read_text())
    assert meta["dtype"] == "|O" and meta["filters"] == [{"id": "vlen-utf8"}]
    for v in ("test_loss", "steps", "time_s"):
        assert "units" in ds[v].attrs and "long_name" in ds[v].attrs
    assert ds.time_s.attrs["units"] == "s" and ds.D.attrs["units"] == "samples"
    assert ds.attrs["Conventions"].startswith("CF-") and isinstance(ds.attrs["units_computed_last_run"], int)
    nc = experiments.export_netcdf(store, tmp_path / "s.nc")
    assert str(experiments.load(nc).error.values[1]) == long_error


def test_a_store_of_another_sweep_or_not_a_store_is_refused(tmp_path):
    store = tmp_path / "s.zarr"
    fill(store)
    other = experiments.SweepSpec(task=SPEC.task, model=SPEC.model, grid={**SPEC.grid, "seed": [0, 1]})
    with pytest.raises(StoreError, match="holds a different sweep"):
        ZarrStore(store, other, VARIABLES)
    (tmp_path / "file.zarr").write_text("not a store")
    with pytest.raises(StoreError, match="not a sweep store"):
        ZarrStore(tmp_path / "file.zarr", SPEC, VARIABLES)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(StoreError, match="not a readable sweep store"):
        experiments.load(tmp_path / "empty.zarr")


# ------------------------------------------------------------------ end to end (real sweeps)


def small_spec():
    return experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 2000, "alpha": 0.5},
                                 model={"kind": "rf_ridge", "ridge": 1e-4},
                                 grid={"D": [16, 32, 64], "P": [16, 64], "seed": [0, 1, 2]}, name="faults")


def test_a_sweep_recomputes_a_deleted_chunk_and_says_so(tmp_path):
    store = tmp_path / "r.zarr"
    first = experiments.run(small_spec(), store=store, progress=False)
    assert (first.status == 1).all()
    (store / "test_loss" / "0.0.0").unlink()
    again = experiments.run(small_spec(), store=store, progress=False)
    assert again.attrs["units_computed_last_run"] == 1
    assert again.attrs["recomputed_last_run"] == "1 corrupt (1 missing chunk)"
    np.testing.assert_array_equal(again.test_loss.values, first.test_loss.values)  # bitwise: same seed, same code


def test_a_sweep_refuses_to_mix_code_versions(tmp_path, monkeypatch):
    store = tmp_path / "r.zarr"
    experiments.run(small_spec(), store=store, progress=False)
    g = zarr.open_group(str(store), mode="r+", zarr_format=2, use_consolidated=False)
    g["status"][2:3] = np.zeros(1, np.int8)  # as if killed before its last unit
    monkeypatch.setattr(_store, "code_version", lambda: "9.9.9+src.changed")
    with pytest.raises(StoreError, match="allow_version_change"):
        experiments.run(small_spec(), store=store, progress=False)
    ds = experiments.run(small_spec(), store=store, progress=False, allow_version_change=True)
    assert ds.attrs["units_computed_last_run"] == 1
    assert json.loads(ds.attrs["code_versions"])["9.9.9+src.changed"] == 1
    assert len(json.loads(ds.attrs["code_versions"])) == 2


@pytest.mark.slow  # two fresh interpreters (~25 s on 2 cores); the same race in threads runs by default above
def test_two_nst_sweeps_at_once_share_nothing_and_lose_nothing(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "race"\n[task]\nkind = "teacher_student"\nn_features = 2000\nalpha = 0.5\n'
                    '[model]\nkind = "rf_ridge"\nridge = 1e-4\n[grid]\nD = [16, 32, 64]\nP = [16, 64]\n'
                    'seed = [0, 1, 2, 3]\n')
    store = tmp_path / "r.zarr"
    cmd = [sys.executable, "-m", "experiments", "sweep", str(spec), "--out", str(store), "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    for (out, err), code in zip(outs, codes):
        assert "Traceback" not in err and code in (0, 1), err
        if code == 1:
            assert err.count("\n") == 1 and "in use by another run" in err, err
    assert 0 in codes
    ds = experiments.load(store)
    assert (ds.status == 1).all()
    ref = experiments.run(experiments.SweepSpec.from_toml(spec.read_text()), progress=False)
    np.testing.assert_array_equal(ds.test_loss.values, ref.test_loss.values)
