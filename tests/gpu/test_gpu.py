"""GPU checks (``-m gpu``; skipped without a GPU): accelerator results equal the CPU's.

Run on a GPU machine with the ``gpu`` extra: ``uv run --extra gpu --extra test pytest -m gpu``.
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
    arch = kernels.mlp(3)
    on_gpu = kernels.kernel_matrix(arch, x, kind="ntk", batch_size=256, devices=gpus)
    on_cpu = kernels.kernel_matrix(arch, x, kind="ntk", batch_size=256, devices=jax.devices("cpu"))
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-8, atol=1e-10)  # float64 on both


def test_device_executor_equals_local(gpus, tmp_path):
    spec = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 4000, "alpha": 0.5},
                                 model={"kind": "rf_ridge"},
                                 grid={"D": [16, 64, 256], "P": [32, 128], "seed": [0, 1, 2, 3]})
    local = experiments.run(spec, store=tmp_path / "local.zarr", progress=False)
    devices = experiments.run(spec, store=tmp_path / "devices.zarr", executor="devices", progress=False)
    np.testing.assert_allclose(devices.test_loss.values, local.test_loss.values, rtol=1e-6)
