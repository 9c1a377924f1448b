"""The device engine of ``rf_ridge`` (one JAX program per unit) against independent per-cell
solves, the host engine, and itself over two devices.

Tolerances are forward-error bounds of the reference solves: a backward-stable Cholesky or LU
solve of an ``n x n`` system with condition number ``kappa`` has relative error at most about
``n kappa eps``; both the engine and the reference carry that much, so their weights may differ by
twice the bound, and each metric by that difference pushed through the features.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import experiments
from experiments._rf_device import rf_grid_device

ROOT = Path(__file__).resolve().parents[2]
EPS = np.finfo(np.float64).eps


def relu_features(rng, n, d_in, p):
    X = rng.standard_normal((n, d_in))
    return np.sqrt(2.0) * np.maximum(X @ rng.standard_normal((d_in, p)) / np.sqrt(d_in), 0)


def reference_cell(F, Y, d, p, ridge):
    """One cell by np.linalg.solve (LU), and a bound on its weights' error (Frobenius)."""
    Ft = F[:d, :p]
    if p <= d:
        A = Ft.T @ Ft + ridge * p * np.eye(p)
        theta = np.linalg.solve(A, Ft.T @ Y[:d])
        err = p * np.linalg.cond(A) * EPS * np.linalg.norm(theta)
    else:
        K = Ft @ Ft.T / p + ridge * np.eye(d)
        alpha = np.linalg.solve(K, Y[:d])
        theta = Ft.T @ alpha / p
        err = d * np.linalg.cond(K) * EPS * np.linalg.norm(alpha) * np.linalg.norm(Ft, 2) / p
    return theta, err


def assert_cell_matches(out, i, j, F_tr, Y_tr, F_te, Y_te, d, p, ridge):
    theta, err = reference_cell(F_tr, Y_tr, d, p, ridge)
    delta = 2 * err  # both solutions carry the bound
    assert np.linalg.norm(out["weights"][i, j] - theta) <= delta
    for F, Y, name in ((F_te[:, :p], Y_te, "test_mse"), (F_tr[:d, :p], Y_tr[:d], "train_mse")):
        residual = F @ theta - Y
        shift = np.linalg.norm(F, 2) * delta  # how far the predictions may move
        bound = (2 * np.linalg.norm(residual) + shift) * shift / F.shape[0]
        assert abs(out[name][i, j] - np.sum(residual**2) / F.shape[0]) <= bound + 4 * EPS * out[name][i, j]
    if Y_te.shape[1] == 1:
        assert np.isnan(out["test_accuracy"][i, j])  # one output: no argmax accuracy
        return
    pred = F_te[:, :p] @ theta
    top2 = np.sort(pred, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * np.linalg.norm(F_te[:, :p], 2) * delta  # argmax cannot flip
    agree = np.argmax(pred, 1) == np.argmax(Y_te, 1)
    n_te = Y_te.shape[0]
    assert abs(out["test_accuracy"][i, j] - agree.mean()) <= np.sum(~clear) / n_te + 1e-15


@pytest.mark.parametrize("ridge", [1e-3, 1e-6])
def test_device_engine_equals_one_solve_per_cell(rng, ridge):
    F = relu_features(rng, 330, 8, 120)
    Y = np.eye(4)[rng.integers(0, 4, 330)] - 0.25
    D, P = [6, 30, 90, 130, 250], [4, 40, 64, 120]  # dual and primal cells, D = P's neighbours
    F_tr, Y_tr, F_te, Y_te = F[:250], Y[:250], F[250:], Y[250:]
    out = rf_grid_device(F_tr, Y_tr, F_te, Y_te, D, P, ridge=ridge, return_weights=True)
    assert out["factored"].all()
    for i, d in enumerate(D):
        for j, p in enumerate(P):
            assert_cell_matches(out, i, j, F_tr, Y_tr, F_te, Y_te, d, p, ridge)


def test_device_engine_makes_the_features_it_is_given_inputs_for(rng):
    X = rng.standard_normal((220, 6))
    W = rng.standard_normal((6, 50)) * np.sqrt(2.0 / 6)
    Y = np.sin(X[:, :1] * 2)
    F = np.maximum(X @ W, 0)
    D, P = [20, 60, 160], [10, 50]
    out = rf_grid_device(None, Y[:160], None, Y[160:], D, P, ridge=1e-4, return_weights=True,
                         inputs=(X[:160], X[160:], W, True))
    for i, d in enumerate(D):
        for j, p in enumerate(P):
            assert_cell_matches(out, i, j, F[:160], Y[:160], F[160:], Y[160:], d, p, 1e-4)


def test_unfactored_cells_are_flagged_not_reported():
    # exactly repeated features: singular normal equations, a ridge far below rounding
    rng = np.random.default_rng(0)
    F = np.repeat(relu_features(rng, 90, 4, 10), 3, axis=1)
    Y = rng.standard_normal((90, 1))
    out = rf_grid_device(F[:60], Y[:60], F[60:], Y[60:], [20, 60], [3, 30], ridge=1e-300)
    assert not out["factored"].all()
    assert np.isnan(out["test_mse"][~out["factored"]]).all()
    assert np.isfinite(out["test_mse"][out["factored"]]).all()
    assert out["F_train"].shape == (60, 30) and out["F_test"].shape == (30, 30)


def test_device_engine_rejects_a_ridgeless_spec():
    grid = {"D": [20], "P": [16], "seed": [0]}
    with pytest.raises(ValueError, match="ridge 0.0"):
        experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "engine": "device"}, grid=grid)
    with pytest.raises(ValueError, match="ridge 0.0"):
        experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "engine": "device"},
                              grid={**grid, "ridge": [1e-3, 0.0]})
    with pytest.raises(ValueError, match="unknown engine 'gpu'"):
        experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "engine": "gpu"}, grid=grid)
    with pytest.raises(ValueError, match="ridge > 0"):
        rf_grid_device(np.ones((4, 2)), np.ones((4, 1)), np.ones((1, 2)), np.ones((1, 1)), [4], [2], ridge=0.0)


# A task whose features are known to the test: each seed's features from its own generator.
def _known_features(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    rng = np.random.default_rng([int(coords["seed"]), 11])
    n = n_pool + spec.n_test
    F = relu_features(rng, n, 5, n_features)
    if coords["seed"] == 2:  # one seed with zero features and a zero row: no cell can be factored
        F[:, ::2] = 0.0
        F[5] = 0.0
    y = np.eye(3)[rng.integers(0, 3, n)]
    return experiments.UnitData(F[:n_pool], y[:n_pool], F[n_pool:], y[n_pool:])


experiments.register_task(experiments.TaskKind("known_features_test", {}, _known_features, features=True),
                          overwrite=True)


def test_sweep_on_the_device_engine_matches_per_cell_solves_and_least_squares_fallback():
    grid = {"D": [10, 40, 120], "P": [8, 60], "seed": [0, 1, 2]}
    ridge = {0: 1e-3, 1: 1e-3, 2: 1e-300}
    spec = experiments.SweepSpec(task={"kind": "known_features_test"},
                                 model={"kind": "rf_ridge", "engine": "device"},
                                 grid={**grid, "ridge": [1e-3, 1e-300]}, n_test=80)
    assert not spec.model_kind.runs_on_host(spec)
    dev = experiments.run(spec, progress=False)
    host = experiments.run(experiments.SweepSpec(task={"kind": "known_features_test"},
                                                 model={"kind": "rf_ridge", "engine": "host"},
                                                 grid={**grid, "ridge": [1e-3, 1e-300]}, n_test=80), progress=False)
    assert (dev.status == 1).all()
    for s in grid["seed"]:
        r = ridge[s]
        F = _known_features(spec, {"seed": s}, None, 120, n_features=60)
        F_tr, Y_tr, F_te, Y_te = F.x_pool, F.y_pool, F.x_test, F.y_test
        cells = dev.sel(seed=s, ridge=r)
        out = {"test_mse": cells.test_loss.values, "train_mse": cells.train_loss.values,
               "test_accuracy": cells.test_accuracy.values}
        for i, d in enumerate(grid["D"]):
            for j, p in enumerate(grid["P"]):
                if s < 2:
                    theta, _ = reference_cell(F_tr, Y_tr, d, p, r)
                    out["weights"] = {(i, j): theta}  # the metric bounds, weights from the reference
                    assert_cell_matches(out, i, j, F_tr, Y_tr, F_te, Y_te, d, p, r)
    # the singular seed (exactly: zero pivots): every cell by the same least squares as on the
    # host engine, so the weights are the same bits and only the metrics' sums differ
    for var in ("test_loss", "train_loss", "test_accuracy"):
        a = dev[var].sel(seed=2, ridge=1e-300).values
        b = host[var].sel(seed=2, ridge=1e-300).values
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e3 * EPS)


def test_device_engine_units_run_one_per_device_with_the_same_bits(tmp_path):
    script = textwrap.dedent("""
        import json
        import jax, experiments
        assert len(jax.local_devices()) == 2
        # a 9 x 9 grid of 10 outputs: the program shape that once deadlocked XLA's CPU runtime
        grid = {"D": [20, 28, 40, 57, 81, 115, 163, 230, 300], "P": [16, 23, 33, 48, 69, 100, 144, 208, 300],
                "seed": [0, 1, 2]}
        spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": 1e-3,
                                     "engine": "device"}, grid=grid, n_test=100)
        out = []
        for executor in ("local", "devices"):  # the default device, then units spread over both
            ds = experiments.run(spec, progress=False, executor=executor)
            assert int(ds.status.min()) == 1
            out.append(ds.test_loss.values.ravel().tolist())
        print(json.dumps(out))
    """)
    path = tmp_path / "rf_devices.py"
    path.write_text(script)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local, spread = json.loads(proc.stdout.strip().splitlines()[-1])
    assert local == spread  # the same program on every CPU device: the same bits
    assert np.all(np.isfinite(local))


def test_auto_engine_is_the_host_on_cpu():
    spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": 1e-3},
                                 grid={"D": [20], "P": [16], "seed": [0]}, n_test=50)
    assert spec.model_kind.runs_on_host(spec) == (jax.default_backend() == "cpu")


def test_bad_input_to_the_device_engine_is_named(rng):
    F, Y = rng.standard_normal((50, 10)), rng.standard_normal((50, 1))
    with pytest.raises(ValueError, match=r"disagree in rows: train \(50, 10\) vs \(49, 1\)"):
        rf_grid_device(F, Y[:49], F[:5], Y[:5], [10, 50], [5], ridge=1e-3)
    with pytest.raises(ValueError, match="finite ridge > 0, got inf"):
        rf_grid_device(F, Y, F[:5], Y[:5], [10, 50], [5], ridge=np.inf)
    with pytest.raises(ValueError, match=r"increasing positive sizes, got D=\[50, 10\]"):
        rf_grid_device(F, Y, F[:5], Y[:5], [50, 10], [5], ridge=1e-3)
    with pytest.raises(ValueError, match="cannot serve D up to 60"):
        rf_grid_device(F, Y, F[:5], Y[:5], [10, 60], [5], ridge=1e-3)
    # more rows than the grid needs: the first D_max are used, as on the host engine
    out = rf_grid_device(F, Y, F[:5], Y[:5], [10, 40], [5], ridge=1e-3)
    assert np.isfinite(out["test_mse"]).all()


def _nan_targets(spec, coords, key, n_pool, *, n_features=None, n_val=0):
    data = _known_features(spec, {"seed": 0}, key, n_pool, n_features=n_features)
    y = data.y_pool.copy()
    y[3, 0] = np.nan
    return experiments.UnitData(data.x_pool, y, data.x_test, data.y_test)


experiments.register_task(experiments.TaskKind("nan_targets_test", {}, _nan_targets, features=True), overwrite=True)


@pytest.mark.parametrize("engine", ["host", "device"])
def test_non_finite_task_data_fail_the_unit_with_a_message(engine):
    spec = experiments.SweepSpec(task={"kind": "nan_targets_test"}, model={"kind": "rf_ridge", "ridge": 1e-3,
                                                                         "engine": engine},
                                 grid={"D": [10, 40], "P": [8], "seed": [0]}, n_test=20)
    with pytest.warns(experiments.UnitsFailedWarning, match="y_pool holds 1 non-finite values"):
        ds = experiments.run(spec, progress=False)
    assert int(ds.status.max()) != 1 and np.isnan(ds.test_loss).all()
    with pytest.raises(ValueError, match="needs ridge >= 0, got ridge -1.0"):
        experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": -1.0},
                              grid={"D": [10], "P": [8], "seed": [0]})
