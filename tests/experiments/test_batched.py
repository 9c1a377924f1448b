"""Batched sweep programs equal the per-cell computations they replace."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import experiments
import kernels
from experiments._rf import rf_grid

ROOT = Path(__file__).resolve().parents[2]


def relu_features(rng, n, d_in, p):
    X = rng.standard_normal((n, d_in))
    return np.sqrt(2.0) * np.maximum(X @ rng.standard_normal((d_in, p)) / np.sqrt(d_in), 0)


@pytest.mark.parametrize("ridge", [1e-3, 0.0])
def test_rf_grid_equals_one_solve_per_cell(rng, ridge):
    F = relu_features(rng, 260, 8, 96)
    Y = np.eye(3)[rng.integers(0, 3, 260)] - 1 / 3
    D, P = [10, 40, 90, 200], [8, 32, 96]
    out = rf_grid(F[:200], Y[:200], F[200:], Y[200:], D, P, ridge=ridge)
    for i, d in enumerate(D):
        for j, p in enumerate(P):
            Ft = F[:d, :p]
            if ridge == 0:
                theta = np.linalg.pinv(Ft) @ Y[:d]  # the minimum-norm least-squares solution
            elif p <= d:
                theta = np.linalg.solve(Ft.T @ Ft + ridge * p * np.eye(p), Ft.T @ Y[:d])
            else:
                theta = Ft.T @ np.linalg.solve(Ft @ Ft.T / p + ridge * np.eye(d), Y[:d]) / p
            pred = F[200:, :p] @ theta
            test = np.mean(np.sum((pred - Y[200:]) ** 2, axis=1))
            train = np.mean(np.sum((Ft @ theta - Y[:d]) ** 2, axis=1))
            # ridgeless cells near d = p are ill conditioned: compare at their conditioning
            tol = 1e-9 if ridge else 1e-9 * np.linalg.cond(Ft) ** 2
            np.testing.assert_allclose(out["test_mse"][i, j], test, rtol=max(tol, 1e-9))
            np.testing.assert_allclose(out["train_mse"][i, j], train, rtol=max(tol, 1e-9), atol=1e-12)
            acc = np.mean(np.argmax(pred, 1) == np.argmax(Y[200:], 1))
            assert out["test_accuracy"][i, j] == acc


def test_rf_grid_population_risk_equals_kernels_rf_ridge_grid():
    ts = experiments.teacher_student(3000, alpha=0.5)
    f, y, cov = ts.sample_features(jax.random.key(3), 128, 64, return_covariance=True)
    D, P = [8, 16, 64, 128], [4, 16, 64]

    def risk(i, j, p, theta):
        t = theta[:, 0]
        return float(t @ cov[:p, :p] @ t - 2 * t @ cov[:p, -1] + cov[-1, -1])

    for ridge in (1e-4, 0.0):
        ours = rf_grid(f, y[:, None], f[:0], y[:0, None], D, P, ridge=ridge, risk=risk)
        ref = kernels.rf_ridge_grid(f, y, f[:0], y[:0], D, P, ridge=ridge, population_covariance=cov)
        # an independent implementation (kernels), (P, D) there and (D, P) here
        np.testing.assert_allclose(ours["test_mse"], ref["test_mse"].T, rtol=1e-6)
        np.testing.assert_allclose(ours["train_mse"], ref["train_mse"].T, rtol=1e-6, atol=1e-12)


def test_padded_training_equals_training_on_the_real_rows(rng):
    net = experiments.network("mlp", width=16, depth=1, out_dim=1)
    x = rng.standard_normal((1, 30, 4)).astype(np.float32)
    y = np.sin(x[..., :1]).astype(np.float32)
    cfg = experiments.TrainConfig(steps=60, eval_every=20, patience=None, learning_rate=1e-2)
    keys = jax.random.key(5)[None]
    alone = experiments.train(net, x[:, :18], y[:, :18], x[0, :5], y[0, :5], keys=keys, config=cfg)
    junk = np.concatenate([x[:, :18], 100 + x[:, 18:]], axis=1)  # padding rows must never be seen
    padded = experiments.train(net, junk, y, x[0, :5], y[0, :5], keys=keys, config=cfg, n_train=[18])
    np.testing.assert_allclose(padded.train_loss, alone.train_loss, rtol=2e-5)
    np.testing.assert_allclose(padded.history, alone.history, rtol=2e-5)
    for a, b in zip(jax.tree_util.tree_leaves(padded.params), jax.tree_util.tree_leaves(alone.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def python_loop_early_stopping(net, x, y, x_val, y_val, key, cfg):
    """Reference: the previous release's loop, deciding early stopping in Python."""
    opt = cfg.optax_optimizer()
    p = net.init(jax.random.fold_in(key, 0), (1,) + x.shape[1:])
    s = opt.init(p)

    def loss(p, xb, yb):
        return jnp.mean(jnp.sum((net.apply(p, xb) - yb) ** 2, -1))

    @jax.jit
    def chunk(p, s):
        def body(c, _):
            p, s = c
            upd, s = opt.update(jax.grad(loss)(p, x, y), s, p)
            return (optax.apply_updates(p, upd), s), None
        return jax.lax.scan(body, (p, s), None, length=cfg.eval_every)[0]

    best, waited, steps, history = np.inf, 0, 0, []
    for _ in range(cfg.steps // cfg.eval_every):
        p, s = chunk(p, s)
        steps += cfg.eval_every
        v = float(loss(p, x_val, y_val))
        history.append(v)
        if v < best:
            best, waited = v, 0
        else:
            waited += 1
        if waited >= cfg.patience:
            break
    return steps, best, np.array(history)


def test_early_stopping_on_the_device_equals_the_python_loop(rng):
    net = experiments.network("mlp", width=32, depth=1, out_dim=1)
    x = rng.standard_normal((3, 20, 2)).astype(np.float32)
    y = (x[..., :1] * x[..., 1:]).astype(np.float32) + 0.3 * rng.standard_normal((3, 20, 1)).astype(np.float32)
    xv = rng.standard_normal((50, 2)).astype(np.float32)
    yv = (xv[:, :1] * xv[:, 1:]).astype(np.float32)
    cfg = experiments.TrainConfig(steps=3000, eval_every=25, patience=3, learning_rate=3e-2, schedule="constant")
    keys = jax.random.split(jax.random.key(1), 3)
    res = experiments.train(net, x, y, xv, yv, keys=keys, config=cfg)
    assert np.any(res.steps < cfg.steps)  # over-fitting noise: validation stops improving
    for s in range(3):
        steps, best, hist = python_loop_early_stopping(net, x[s], y[s], xv, yv, keys[s], cfg)
        assert res.steps[s] == steps
        np.testing.assert_allclose(res.best_val[s], best, rtol=1e-4)
        np.testing.assert_allclose(res.history[: len(hist), s], hist, rtol=1e-4)


def test_network_unit_batches_widths_D_and_seeds_like_separate_training():
    spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "mlp", "depth": 1},
                                 grid={"D": [40, 70], "width": [8, 16], "seed": [0, 1]}, n_test=100,
                                 train={"steps": 40, "eval_every": 20, "patience": None, "learning_rate": 1e-2})
    assert spec.unit_dims == ("D", "width", "seed") and len(spec.units()) == 1
    out = experiments.run_unit(spec, spec.units()[0])
    cfg = experiments.TrainConfig(**spec.train)

    def data_of(cell):
        return spec.task_kind.data(spec, cell, experiments.unit_key(spec, cell, cell["seed"]), cell["D"])

    first = data_of({"D": 40, "width": 8, "seed": 0})  # the unit's shared (here: trivial) validation set
    x_val, y_val = first.x_pool[:1], first.y_pool[:1].astype(np.float32)
    for i, j, k in ((0, 0, 0), (1, 1, 1), (1, 0, 1)):
        cell = {"D": spec.grid["D"][i], "width": spec.grid["width"][j], "seed": spec.grid["seed"][k]}
        data = data_of(cell)
        net = experiments.network("mlp", width=cell["width"], depth=1, out_dim=10)
        key = jax.random.fold_in(experiments.unit_key(spec, cell, cell["seed"]), 7)
        alone = experiments.train(net, data.x_pool[None], data.y_pool[None].astype(np.float32), x_val, y_val,
                                  keys=key[None], config=cfg)
        np.testing.assert_allclose(out["train_loss"][i, j, k], alone.train_loss[0], rtol=1e-4)
        assert out["width_used"][i, j, k] == cell["width"] and out["steps"][i, j, k] == 40


def test_cells_shard_over_two_devices_with_the_same_results(tmp_path):
    script = textwrap.dedent("""
        import json, sys
        import jax, numpy as np, experiments
        assert len(jax.local_devices()) == int(sys.argv[1])
        spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "mlp", "depth": 1},
                                     grid={"D": [30, 50], "width": [4], "seed": [0, 1, 2]}, n_test=50,
                                     train={"steps": 20, "eval_every": 10, "patience": 1, "learning_rate": 1e-2,
                                            "batch_size": 16})
        ds = experiments.run(spec, progress=False, executor="devices")
        print(json.dumps(ds.train_loss.values.ravel().tolist()))
    """)
    path = tmp_path / "shard.py"
    path.write_text(script)
    outs = []
    for n in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run([sys.executable, str(path), str(n)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(np.array(__import__("json").loads(proc.stdout.strip().splitlines()[-1])))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5)
    assert np.all(np.isfinite(outs[0]))


def test_projected_teacher_student_draw_has_the_law_of_the_covariance_draw():
    # few points, many features: features drawn given the teacher features and the risk
    # completed conditionally must match the exact joint-Gaussian (covariance) path in law
    task = {"kind": "teacher_student", "n_features": 400, "alpha": 0.5, "noise": 0.1}
    grid = {"D": [3, 6], "P": [60, 120], "seed": list(range(300))}
    fast = experiments.SweepSpec(task=task, model={"kind": "rf_ridge", "excess_loss": False}, grid=grid)
    slow = experiments.SweepSpec(task=task, model={"kind": "rf_ridge"}, grid=grid)
    assert "excess_loss" not in fast.variables and "excess_loss" in slow.variables
    a, b = (experiments.run(s, progress=False) for s in (fast, slow))
    for ds in (a, b):
        assert (ds.status == 1).all() and np.all(ds.test_loss > 0.1)  # the label noise is a floor
    ma, mb = a.test_loss.mean("seed"), b.test_loss.mean("seed")
    se = np.sqrt(a.test_loss.var("seed") / 300 + b.test_loss.var("seed") / 300)
    assert np.all(np.abs(ma - mb) < 4 * se), (ma.values, mb.values, se.values)
    # and the spread over seeds (draws of data and projection) agrees too
    np.testing.assert_allclose(a.test_loss.std("seed"), b.test_loss.std("seed"), rtol=0.25)


def test_expected_projection_risk_is_the_average_of_sampled_ones():
    """Rao-Blackwell: the risk averaged over the unseen part of the projection has the same mean
    over seeds as the sampled risk (their difference is the zero-mean cross term) and a smaller
    spread; with theta = 0 both are exactly the null risk w^T Lambda w + noise."""
    from experiments._teacher_student import projected_risk, sample_projected

    task = experiments.teacher_student(400, alpha=0.5, noise=0.01)
    n, P = 4, 64
    sampled, expected = [], []
    for key in range(300):
        f, y = sample_projected(task, key, n, P)
        theta = f.T @ np.linalg.solve(f @ f.T, y)  # min-norm interpolant: a large excess risk
        sampled.append(projected_risk(task, key, n, P, [theta])[0])
        expected.append(projected_risk(task, key, n, P, [theta], expected=True)[0])
        if key == 0:  # the null predictor: the closed form sum_M lambda_M w_M^2 + noise, both ways
            null = float(np.sum(task.eigenvalues * task.weights() ** 2) + task.noise)
            zero = [np.zeros(P)]
            for exp in (False, True):
                assert projected_risk(task, key, n, P, zero, expected=exp)[0] == pytest.approx(null, rel=1e-12)
    diff = np.asarray(sampled) - np.asarray(expected)
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert abs(diff.mean()) < 4 * se, (diff.mean(), se)  # same mean
    # law of total variance: var(sampled) = var(expected) + E[var(cross term | f)] (measured here:
    # sd 0.19 against 0.21; paired draws, so the ordering is stable across the 300 keys)
    assert np.var(expected) < np.var(sampled)


@pytest.mark.parametrize("S, P", [(50, 80), (50, 51), (20, 30), (5, 6)])
def test_students_with_at_least_as_many_features_as_the_teacher_are_drawn(S, P):
    """With P >= S the joint covariance of (f, y) has rank <= S and float32 rounding can make it
    indefinite (Cholesky failed: every such unit FAILED). The draws must have that covariance:
    each entry of the sample covariance of 20000 draws within 5 standard errors of it."""
    ts = experiments.TeacherStudent(S, alpha=0.7, noise=0.1)
    n = 20000
    for key in (0, 1, 2):
        f, y, cov = ts.sample_features(key, n, P, return_covariance=True)
        z = np.column_stack([f, y])
        emp = z.T @ z / n
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        assert np.all(np.abs(emp - cov) <= 5 * se)


def test_a_sweep_with_more_student_than_teacher_features_completes():
    spec = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 50, "alpha": 0.5},
                                 model={"kind": "rf_ridge", "ridge": 1e-3},
                                 grid={"D": [16, 64], "P": [32, 64], "seed": [0, 1, 2]})
    ds = experiments.run(spec, progress=False)
    assert (ds.status.values == 1).all(), experiments.summary(ds)
    assert np.isfinite(ds.test_loss.values).all()


# at 1e-156 the ridgeless dual coefficients (1/K ~ 1e312) overflow: primal cells only there
@pytest.mark.parametrize("scale, D, P", [(1e-100, [1, 5, 10], [1, 3, 20]), (1e-156, [5, 10], [1, 3])])
def test_rf_grid_on_features_near_the_bottom_of_float64(rng, scale, D, P):
    """Tiny features square into tiny (even subnormal) Gram matrices and huge ridgeless dual
    coefficients: the cells must still be the least-squares solution (a review found the
    batched paths gave train MSE 0 * inf = NaN at 1e-100, and wrong weights from an LU
    solve of the subnormal normal equations at 1e-156)."""
    F = rng.standard_normal((14, 20)) * scale
    Y = rng.standard_normal((14, 1))
    out = rf_grid(F[:10], Y[:10], F[10:], Y[10:], D, P, ridge=0.0)
    for i, d in enumerate(D):
        for j, p in enumerate(P):
            theta = np.linalg.lstsq(F[:d, :p], Y[:d], rcond=None)[0]
            train = np.mean((F[:d, :p] @ theta - Y[:d]) ** 2)
            test = np.mean((F[10:, :p] @ theta - Y[10:]) ** 2)
            # these systems have condition numbers below 1e3 at unit scale: agreement to
            # 1e-9 is far looser than their rounding and far tighter than the failures
            np.testing.assert_allclose(out["test_mse"][i, j], test, rtol=1e-9)
            np.testing.assert_allclose(out["train_mse"][i, j], train, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d, p", [(150, 150), (100, 150), (150, 60)])  # primal square, dual, stacked primal
def test_ridgeless_cells_the_diagonal_bound_calls_well_conditioned_are_still_solved_accurately(rng, d, p):
    """A ridgeless cell whose Gram matrix has condition number 1e10 but whose Cholesky
    diagonal suggests far less: only LAPACK's estimate from the factor sends it to least
    squares (a review found such a cell solved by Cholesky, 4e-7 off the least-squares answer)."""
    k = min(d, p)
    s = np.logspace(0, -5, k)  # singular values of the training features: cond(F) = 1e5
    U = np.linalg.qr(rng.standard_normal((d, k)))[0]
    V = np.linalg.qr(rng.standard_normal((p, k)))[0]
    F_tr = (U * s) @ V.T
    gram = F_tr.T @ F_tr if d >= p else F_tr @ F_tr.T
    Lii = np.diag(np.linalg.cholesky(gram))
    assert (Lii.max() / Lii.min()) ** 2 < 1e8 < np.linalg.cond(gram)  # the bound misses it
    F_te = rng.standard_normal((40, p))
    Y = rng.standard_normal((d + 40, 2))
    out = rf_grid(F_tr, Y[:d], F_te, Y[d:], [d], [p], ridge=0.0)
    theta = np.linalg.lstsq(F_tr, Y[:d], rcond=None)[0]  # minimum norm; error ~ cond(F) eps = 2e-11
    test = np.mean(np.sum((F_te @ theta - Y[d:]) ** 2, axis=1))
    # both least squares: each within about cond(F) eps = 2e-11 of the exact weights (measured
    # 0 to 4e-16 apart); a Cholesky solve of the Gram matrix is off by up to cond(F)^2 eps
    # (measured before the fix: 1.6e-8 to 2.3e-7)
    np.testing.assert_allclose(out["test_mse"][0, 0], test, rtol=1e-10)


def test_a_nearly_rank_deficient_cell_gets_the_minimum_norm_solution():
    """Rank 199 plus 5e-12 noise: the smallest singular value (1.5e-13 of the largest) is under
    numpy's cutoff eps max(d, p) = 2.2e-13, yet the Gram matrix may pass the Cholesky check.
    A review found such a cell solved by QR with pivoting, which kept the direction: weights
    2e10 times the minimum-norm ones, test MSE 9e19 instead of 1.2."""
    d, p = 1000, 200
    rng = np.random.default_rng(8)
    F = rng.standard_normal((d, p - 1)) @ rng.standard_normal((p - 1, p)) + 5e-12 * rng.standard_normal((d, p))
    Y = np.random.default_rng(99).standard_normal((d, 1))
    F_te = rng.standard_normal((300, p))
    Y_te = rng.standard_normal((300, 1))
    out = rf_grid(F, Y, F_te, Y_te, [d], [p], ridge=0.0)
    theta = np.linalg.lstsq(F, Y, rcond=None)[0]
    # both SVD with the same cutoff (measured equal); the failure was 20 orders of magnitude off
    np.testing.assert_allclose(out["test_mse"][0, 0], np.mean((F_te @ theta - Y_te) ** 2), rtol=1e-8)
    np.testing.assert_allclose(out["train_mse"][0, 0], np.mean((F @ theta - Y) ** 2), rtol=1e-8)


@pytest.mark.parametrize("D, P", [([10, 40, 100], [120, 200, 400]), ([200], [150])])  # dual, primal
def test_ridgeless_cells_on_features_near_overflow_say_nothing_and_are_scale_free(rng, D, P):
    """At 1e153 the Gram matrices overflow: no warning (they are errors here), and the ridgeless
    predictions are those of the same features at unit scale (a review found the condition
    estimate's norm warning 'overflow' and 'invalid value')."""
    F = rng.standard_normal((300, 400))
    Y = rng.standard_normal((300, 2))
    n = max(D)
    unit = rf_grid(F[:n], Y[:n], F[n:], Y[n:], D, P, ridge=0.0)
    huge = rf_grid(F[:n] * 1e153, Y[:n], F[n:] * 1e153, Y[n:], D, P, ridge=0.0)
    # these Gaussian cells have condition numbers below 1e4: rounding far below 1e-9
    np.testing.assert_allclose(huge["test_mse"], unit["test_mse"], rtol=1e-9)
