"""GPU checks (``-m gpu``; skipped without a GPU): accelerator results equal the CPU's.

Run on a GPU machine with the ``gpu`` (CUDA 12) or ``gpu-cuda13`` extra:
``uv run --extra gpu --extra test pytest -m gpu``; ``benchmarks/gpu.sh`` runs them first.
The analytic kernels compute the arc-cosine terms exactly at correlation 1 (the diagonal
and repeated points), so float64 kernels agree to 1e-10 relative, not just to the ~1e-8
that last-bit differences there would otherwise allow.
"""

import jax
import numpy as np
import pytest

import experiments
import kernels

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpus():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        pytest.skip("no GPU visible to jax (install the 'gpu' extra on a GPU machine)")


def test_kernel_matrix_on_gpus_equals_cpu(gpus, rng):
    x = rng.standard_normal((700, 24))
    x[5] = x[3]  # a repeated point: correlation 1 off the diagonal
    arch = kernels.mlp(3)
    on_gpu = kernels.kernel_matrix(arch, x, kind="ntk", batch_size=256, devices=gpus)
    on_cpu = kernels.kernel_matrix(arch, x, kind="ntk", batch_size=256, devices=jax.devices("cpu"))
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-10, atol=0)  # float64 on both


@pytest.mark.parametrize("arch, shape", [
    (kernels.mlp(3, activation="erf", parameterization="standard", b_std=0.2), (12, 30)),
    (kernels.mlp(2, activation="gelu"), (12, 30)),
    (kernels.cnn(2, pool="global"), (12, 8, 8, 3)),
    (kernels.myrtle(5, channels=8), (12, 8, 8, 3)),
    (kernels.wide_resnet(10, width_multiplier=1, base_channels=4), (12, 8, 8, 3)),
])
def test_every_layer_on_gpus_equals_cpu(gpus, arch, shape, rng):
    x = rng.standard_normal(shape)
    on_gpu = kernels.kernel_matrix(arch, x, kind="ntk", batch_size=6, devices=gpus)
    on_cpu = kernels.kernel_matrix(arch, x, kind="ntk", batch_size=6, devices=jax.devices("cpu"))
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-10, atol=0)


def test_device_executor_equals_local(gpus, tmp_path):
    spec = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 4000, "alpha": 0.5},
                                 model={"kind": "rf_ridge"},
                                 grid={"D": [16, 64, 256], "P": [32, 128], "seed": [0, 1, 2, 3]})
    local = experiments.run(spec, store=tmp_path / "local.zarr", progress=False)
    devices = experiments.run(spec, store=tmp_path / "devices.zarr", executor="devices", progress=False)
    np.testing.assert_allclose(devices.test_loss.values, local.test_loss.values, rtol=1e-6)


def test_rf_sweep_on_the_device_engine_equals_the_host_engine(gpus):
    # on a GPU backend "auto" is the device engine: one program per unit, batched Cholesky per P
    grid = {"D": [20, 57, 163, 460, 1000], "P": [16, 64, 256, 1000], "seed": [0, 1]}
    auto = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": 1e-3}, grid=grid,
                                 n_test=300)
    assert not auto.model_kind.runs_on_host(auto)
    host = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": 1e-3,
                                                                 "engine": "host"}, grid=grid, n_test=300)
    a, b = experiments.run(auto, progress=False), experiments.run(host, progress=False)
    # both float64; the largest condition number on this grid is the D = P = 1000 corner's,
    # 1.7e5 (measured on CPU), so the solves agree to n kappa eps = 1000 * 2e5 * 2.2e-16 < 5e-8
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=5e-8)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=5e-8)
