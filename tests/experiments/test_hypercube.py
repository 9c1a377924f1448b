"""d-cube teachers: genuinely d-dimensional (biases, a smooth GP draw), checked against closed
forms and an independent implementation (the stax network they are drawn as)."""

import math

import jax
import numpy as np
import pytest

import experiments
import kernels
from scaling import enable_x64


@pytest.mark.parametrize("kind", ["relu_network", "erf_network"])
def test_network_teacher_is_the_stax_network_with_its_parameters(kind):
    t = experiments.hypercube_teacher(3, kind, width=48, depth=2, b_std=0.7, seed=3)
    x, y = t.sample(0, 64)
    _, apply_fn, _ = kernels.mlp(2, activation=kind.split("_")[0], width=48, b_std=0.7, W_std=math.sqrt(2.0),
                                 W_std_out=1.0, parameterization="standard")
    with enable_x64():
        ref = np.asarray(apply_fn(jax.tree_util.tree_map(np.asarray, t.parameters), x))[:, 0]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert np.all((x >= -1) & (x <= 1)) and x.shape == (64, 3)


def test_biases_make_the_teacher_d_dimensional():
    x = experiments.hypercube_teacher(4, width=32).sample(1, 200)[0]
    # zero biases: positively 1-homogeneous, f(c x) = c f(x), fixed by its values on the sphere
    flat = experiments.hypercube_teacher(4, width=32, b_std=0.0)
    np.testing.assert_allclose(flat(0.5 * x), 0.5 * flat(x), rtol=1e-10, atol=1e-12)
    # biases: the first layer's kinks w.x + b = 0 miss the origin (distance |b| / |w|), inside the cube
    t = experiments.hypercube_teacher(4, width=32, b_std=1.0)
    W, b = t.parameters[0]
    dist = np.abs(b[0]) / np.linalg.norm(W, axis=0)
    assert np.median(dist) > 0.2 and np.mean(dist < 2.0) > 0.5, dist  # off the origin, and cutting the cube
    y = t(x)
    assert np.max(np.abs(t(0.5 * x) - 0.5 * y)) > 0.2 * y.std()


def test_gaussian_process_teacher_has_the_squared_exponential_covariance():
    """E[f(x) f(x')] = exp(-nu^2 |x - x'|^2 / (2 d)): given the frequencies and phases, the
    amplitudes' average is (2/M) sum_m cos(w.x + p) cos(w.x' + p) exactly; averaged over
    20 teachers x 2048 modes its standard error is <= sqrt(0.5 / 40960) = 0.0035."""
    d, nu = 3, 2.5
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (6, d))
    x2 = x + rng.standard_normal((6, d)) * np.array([0.05, 0.3, 0.6, 0.9, 1.2, 2.0])[:, None]
    acc, amp2 = np.zeros(6), []
    for seed in range(20):
        omega, phase, amp = experiments.hypercube_teacher(d, "gaussian_process", frequency=nu, seed=seed).parameters
        acc += np.mean(2 * np.cos(x @ omega.T + phase) * np.cos(x2 @ omega.T + phase), axis=1) / 20
        amp2.append(amp**2 * omega.shape[0] / 2)
    exact = np.exp(-nu**2 * np.sum((x - x2) ** 2, axis=1) / (2 * d))
    np.testing.assert_allclose(acc, exact, atol=5 * math.sqrt(0.5 / 40960))
    amp2 = np.concatenate(amp2)  # E[a^2] M / 2 = 1, standard error sqrt(2 / 40960)
    assert abs(amp2.mean() - 1) < 5 * math.sqrt(2 / amp2.size)
    # and the function is what its parameters say
    t = experiments.hypercube_teacher(d, "gaussian_process", frequency=nu, seed=4)
    omega, phase, amp = t.parameters
    np.testing.assert_allclose(t(x), np.cos(x @ omega.T + phase) @ amp, rtol=1e-12)


def test_hypercube_task_runs_nested_ntk_regression_with_biases():
    spec = experiments.SweepSpec(task={"kind": "hypercube_teacher", "input_dim": 2, "teacher": "gaussian_process"},
                                 model={"kind": "krr", "kernel": "ntk", "depth": 2, "ridge": 1e-4, "b_std": 1.0},
                                 grid={"D": [16, 64, 256], "seed": [0, 1]}, n_test=200)
    ds = experiments.run(spec, progress=False)
    loss = ds.test_loss.mean("seed").values
    assert np.all(np.diff(loss) < 0) and loss[-1] < 0.1 * loss[0], loss
    # the cell's data are the teacher at uniform draws: recompute one cell's test loss independently
    key = experiments.unit_key(spec, {"seed": 0}, 0)
    data = experiments.TASKS["hypercube_teacher"].data(spec, {"seed": 0}, key, 256)
    teacher = experiments.hypercube_teacher(2, "gaussian_process")
    np.testing.assert_allclose(data.y_pool, teacher(data.x_pool), rtol=1e-12)
    K = kernels.kernel_matrix(kernels.mlp(2, b_std=1.0), np.concatenate([data.x_pool, data.x_test]))
    coef = np.linalg.solve(K[:256, :256] + 1e-4 * np.eye(256), data.y_pool)
    mse = np.mean((K[256:, :256] @ coef - data.y_test) ** 2)
    assert ds.test_loss.sel(seed=0, D=256).item() == pytest.approx(mse, rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_dim": 0}, "input_dim"), ({"input_dim": 2, "kind": "relu"}, "relu_network"),
    ({"input_dim": 2, "b_std": -1.0}, "b_std"), ({"input_dim": 2, "frequency": 0.0}, "frequency"),
    ({"input_dim": 2, "width": 2.5}, "width")])
def test_bad_teacher_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        experiments.hypercube_teacher(**kwargs)
    with pytest.raises(ValueError, match="shape"):
        experiments.hypercube_teacher(2)(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="teacher"):
        experiments.SweepSpec(task={"kind": "hypercube_teacher", "teacher": "laplace"}, model={"kind": "krr"},
                              grid={"D": [8], "seed": [0]})
