"""Registered task and model kinds: validation and dispatch read one table."""

import jax
import numpy as np
import pytest

import experiments
import scaling


def test_every_parameter_the_runner_reads_is_valid_in_a_spec():
    # teacher_seed and superclass_seed were read by the runner but rejected by validation
    t = experiments.SweepSpec(task={"kind": "random_network_teacher", "teacher_seed": 3, "input_dim": 3},
                              model={"kind": "rf_ridge", "ridge": 1e-3}, grid={"D": [20], "P": [16], "seed": [0]},
                              n_test=50)
    assert t.task_params["teacher_seed"] == 3 and t.task_params["width"] == 256  # declared default
    s = experiments.SweepSpec(task={"kind": "digits", "superclass_seed": 5}, model={"kind": "krr"},
                              grid={"D": [20], "n_classes": [2], "seed": [0]})
    assert s.task_params["superclass_seed"] == 5


def test_teacher_seed_changes_the_teacher_and_only_it():
    def spec(seed):
        return experiments.SweepSpec(task={"kind": "random_network_teacher", "teacher_seed": seed, "input_dim": 3},
                                     model={"kind": "rf_ridge", "ridge": 1e-3},
                                     grid={"D": [30], "P": [16], "seed": [0]}, n_test=50)
    a, b, c = (experiments.run_unit(spec(s), spec(s).units()[0])["test_loss"] for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_superclass_seed_changes_the_class_map():
    def spec(seed):
        return experiments.SweepSpec(task={"kind": "digits", "superclass_seed": seed},
                                     model={"kind": "rf_ridge", "ridge": 1e-3},
                                     grid={"D": [40], "P": [32], "n_classes": [2], "seed": [0]}, n_test=100)
    outs = [experiments.run_unit(spec(s), spec(s).units()[0])["test_accuracy"] for s in (0, 1)]
    assert not np.array_equal(*outs)


@pytest.mark.parametrize("change, exc, match", [
    (dict(task={"kind": "teacher_student", "alpha": "big"}), TypeError, "parameter 'alpha' must be float"),
    (dict(task={"kind": "teacher_student", "teacher_weights": "gauss"}), ValueError,
     "unknown teacher_weights 'gauss'; expected one of: ones, random"),
    (dict(model={"kind": "rf_ridge", "features": "tanh"}), ValueError, "unknown features 'tanh'"),
    (dict(model={"kind": "rf_ridge", "ridge": float("nan")}), ValueError, "parameter 'ridge' must be finite"),
    (dict(task={"kind": "embeddings", "labels": "l.npy"}), ValueError, "embeddings task needs parameter 'path'"),
    (dict(grid={"D": [10], "P": [10], "seed": [0], "pool": [2]}), ValueError,
     r"grid dims \['pool'\] are not used by model 'rf_ridge' on task 'teacher_student'"),
    (dict(task={"kind": "teacher_student", "n_features": True}), TypeError, "parameter 'n_features' must be int"),
])
def test_parameters_are_checked_against_their_declared_types(change, exc, match):
    base = dict(task={"kind": "teacher_student"}, model={"kind": "rf_ridge"},
                grid={"D": [10], "P": [10], "seed": [0]})
    base.update(change)
    with pytest.raises(exc, match=match):
        experiments.SweepSpec(**base)


def test_a_grid_dim_overrides_the_parameter_of_the_same_name():
    spec = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 500, "noise": 0.0},
                                 model={"kind": "rf_ridge", "ridge": 1e-3},
                                 grid={"D": [20], "P": [10], "noise": [0.0, 0.5], "seed": [0]})
    assert spec.params("task", {"noise": 0.5})["noise"] == 0.5
    ds = experiments.run(spec, progress=False)
    # label noise of variance 0.5 raises the exact population risk by 0.5 at least
    assert float(ds.test_loss.sel(noise=0.5).min()) > float(ds.test_loss.sel(noise=0.0).max()) + 0.4


def test_a_user_defined_task_and_model_go_through_the_same_door():
    def data(spec, coords, key, n_pool, *, n_features=None, n_val=0):
        t = spec.params("task", coords)
        x = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30))).uniform(-1, 1, (n_pool + spec.n_test, 1))
        y = np.sin(t["freq"] * x[:, 0])
        return experiments.UnitData(x[:n_pool], y[:n_pool], x[n_pool:], y[n_pool:])

    def run(spec, coords):  # a polynomial least-squares fit of every D of a unit
        m = spec.params("model", coords)
        d = spec.task_kind.data(spec, coords, experiments.unit_key(spec, coords, coords["seed"]), max(spec.grid["D"]))
        out = {"test_loss": [], "train_loss": []}
        for n in spec.grid["D"]:
            c = np.polyfit(d.x_pool[:n, 0], d.y_pool[:n], m["degree"])
            out["test_loss"].append(np.mean((np.polyval(c, d.x_test[:, 0]) - d.y_test) ** 2))
            out["train_loss"].append(np.mean((np.polyval(c, d.x_pool[:n, 0]) - d.y_pool[:n]) ** 2))
        return out

    experiments.register_task(experiments.TaskKind("sine_test", {"freq": experiments.Param(float, 2.0)}, data),
                              overwrite=True)
    experiments.register_model(experiments.ModelKind(
        "poly_test", {"degree": experiments.Param(int, 3)}, unit_dims=("D",),
        required_dims=frozenset({"D", "seed"}), grid_dims=frozenset({"degree"}),
        variables=lambda spec: ("test_loss", "train_loss"), run=run, nested_dims=("D",)), overwrite=True)
    spec = experiments.SweepSpec(task={"kind": "sine_test", "freq": 1.0}, model={"kind": "poly_test"},
                                 grid={"D": [10, 100], "degree": [1, 5], "seed": [0, 1]}, n_test=200)
    ds = experiments.run(spec, progress=False)
    assert set(ds.data_vars) >= {"test_loss", "train_loss", "status"}
    assert (ds.status == 1).all(), ds.error.values
    # sin(x) on [-1, 1]: degree 5 is far better than a line, with enough data
    assert float(ds.test_loss.sel(D=100, degree=5).max()) < 1e-4 < float(ds.test_loss.sel(D=100, degree=1).min())
    with pytest.raises(ValueError, match=r"unknown poly_test model parameters \['degre'\]"):
        experiments.SweepSpec(task={"kind": "sine_test"}, model={"kind": "poly_test", "degre": 2},
                              grid={"D": [10], "seed": [0]})
    with pytest.raises(ValueError, match="already registered"):
        experiments.register_task(experiments.TaskKind("sine_test", {}, data))
    with pytest.raises(TypeError, match="must be a Param"):
        experiments.register_task(experiments.TaskKind("bad_test", {"a": 1}, data))


def test_existing_toml_specs_still_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples" / "specs"
    specs = sorted(root.glob("*.toml"))
    assert specs
    for p in specs:
        s = experiments.SweepSpec.from_toml(p)
        assert s.n_cells > 0 and set(s.variables) >= {"test_loss", "train_loss"}


def _flaky_run(spec, coords):
    """Fails the first time each unit runs (a marker file per unit), then succeeds."""
    from pathlib import Path

    marker = Path(spec.model["marker_dir"]) / f"seed{coords['seed']}"
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("transient failure")
    return {"test_loss": np.full(len(spec.grid["D"]), float(coords["seed"]))}


def test_dask_retries_failed_units_and_ships_user_kinds_to_workers(tmp_path):
    pytest.importorskip("distributed")
    experiments.register_model(experiments.ModelKind(
        "flaky_test", {"marker_dir": experiments.Param(str, experiments._kinds.REQUIRED)}, unit_dims=("D",),
        required_dims=frozenset({"D", "seed"}), grid_dims=frozenset(), variables=lambda spec: ("test_loss",),
        run=_flaky_run), overwrite=True)
    spec = experiments.SweepSpec(task={"kind": "teacher_student"}, model={"kind": "flaky_test",
                                                                          "marker_dir": str(tmp_path)},
                                 grid={"D": [4, 8], "seed": [0, 1, 2]})
    ds = experiments.run(spec, executor="dask", n_workers=2, progress=False, retries=1)
    assert (ds.status == 1).all(), ds.error.values
    np.testing.assert_array_equal(ds.test_loss.values, np.array([[0.0, 1.0, 2.0]] * 2))
    assert len(list(tmp_path.iterdir())) == 3  # every unit failed once, then passed on its retry


def test_host_units_run_side_by_side_on_the_cpus_the_process_may_use(monkeypatch):
    """Host (BLAS) units run one per usable CPU: the affinity mask (a batch job's allocation),
    not every core of the node."""
    import threading
    import time

    lock, running, peak = threading.Lock(), [0], [0]

    def run(spec, coords):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)  # long enough for every free worker to pick a unit up
        with lock:
            running[0] -= 1
        return {"test_loss": np.zeros(len(spec.grid["D"]))}

    experiments.register_model(experiments.ModelKind(
        "host_test", {}, unit_dims=("D",), required_dims=frozenset({"D", "seed"}), grid_dims=frozenset(),
        variables=lambda spec: ("test_loss",), run=run, host_blas=True), overwrite=True)
    six = experiments.SweepSpec(task={"kind": "teacher_student"}, model={"kind": "host_test"},
                                grid={"D": [4], "seed": [0, 1, 2, 3, 4, 5]})  # whole rounds on 1, 2, 3 cpus
    for cpus in ({0}, {0, 1}, {0, 1, 2}):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, cpus=cpus: cpus, raising=False)
        assert scaling.usable_cpus() == len(cpus)
        peak[0] = 0
        ds = experiments.run(six, progress=False)
        assert (ds.status == 1).all(), ds.error.values
        assert peak[0] == len(cpus)
    # units that do not divide into rounds: one more at a time (3 on 2 cpus: all at once)
    three = experiments.SweepSpec(task={"kind": "teacher_student"}, model={"kind": "host_test"},
                                  grid={"D": [4], "seed": [0, 1, 2]})
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    peak[0] = 0
    ds = experiments.run(three, progress=False)
    assert (ds.status == 1).all() and peak[0] == 3
