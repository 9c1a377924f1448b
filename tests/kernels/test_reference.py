"""Native kernels equal neural-tangents 0.6.5's (the toolkit's previous backend) to 1e-7.

The fixtures come from ``reference/nt/compute.py`` run in the isolated reference
environment (neural-tangents 0.6.5, jax 0.5.3) with the builders of commit 5cc619b, for
every case in ``reference/nt/cases.py``. ``.ci/run`` recomputes them live and points
``NST_NT_REFERENCE`` at the fresh file (these tests then carry the ``reference`` mark's
meaning: the fixture cannot go stale).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import stax
from scaling import enable_x64

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = Path(__file__).parent / "data" / "nt_reference.npz"
LIVE = os.environ.get("NST_NT_REFERENCE")  # set by .ci/run to kernels recomputed just now
FIXTURE = Path(LIVE) if LIVE else COMMITTED
RTOL = 1e-7


def _load_cases():
    spec = importlib.util.spec_from_file_location("nt_reference_cases", ROOT / "reference" / "nt" / "cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _load_cases()


@pytest.fixture(scope="module")
def reference():
    if not FIXTURE.exists():
        pytest.skip(f"reference kernels not found at {FIXTURE}")
    with np.load(FIXTURE) as data:
        return dict(data)


def _relative_error(mine, ref):
    # elementwise relative error; entries that cancel to ~0 are measured against the
    # kernel's scale (1e-12 of its largest entry) instead of themselves
    scale = np.abs(ref).max()
    return float(np.max(np.abs(mine - ref) / np.maximum(np.abs(ref), 1e-12 * scale)))


SLOW = ("myrtle7", "myrtle10", "wrn16")  # deepest networks: compiling them takes most of the time


def _param(case):
    marks = [pytest.mark.slow] if case["name"].startswith(SLOW) else []
    return pytest.param(case, id=case["name"], marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES.cases()])
def test_native_kernels_equal_neural_tangents(case, reference):
    x1 = reference[f"input__{case['inputs']}1"]
    x2 = reference[f"input__{case['inputs']}2"]
    n1 = x1.shape[0]
    kernel_fn = case["build"](kernels, stax)[2]
    with enable_x64():
        if case["inputs"] == "vec":  # cheap: both call forms, kernel_fn(x1, None) and kernel_fn(x1, x2)
            sym = kernel_fn(x1, None, CASES.GETS)
            cross = kernel_fn(x1, x2, CASES.GETS)
            parts = {g: {"sym": getattr(sym, g), "cross": getattr(cross, g)} for g in CASES.GETS}
        else:  # one compiled program per CNN: the joint Gram matrix of x1 and x2, sliced
            both = kernel_fn(np.concatenate([x1, x2]), None, CASES.GETS)
            parts = {g: {"sym": getattr(both, g)[:n1, :n1], "cross": getattr(both, g)[:n1, n1:]} for g in CASES.GETS}
    for get in CASES.GETS:
        for which in ("sym", "cross"):
            ref = reference[f"{case['name']}__{get}__{which}"]
            mine = np.asarray(parts[get][which])
            assert mine.dtype == np.float64 and mine.shape == ref.shape
            err = _relative_error(mine, ref)
            assert err < RTOL, f"{case['name']} {get} ({which}): relative error {err:.2e}"


@pytest.mark.skipif(not LIVE, reason="no live reference kernels (.ci/run computes them and sets NST_NT_REFERENCE)")
def test_the_committed_fixture_is_not_stale(reference):
    with np.load(COMMITTED) as committed:
        assert sorted(committed.files) == sorted(reference), "cases changed: rerun reference/nt/run.sh into the fixture"
        for key in committed.files:
            if key != "versions":
                np.testing.assert_allclose(committed[key], reference[key], rtol=1e-12, atol=0, err_msg=key)


def test_importing_the_toolkit_never_imports_neural_tangents():
    code = ("import sys, scaling, regimes, experiments, kernels; "
            "assert 'neural_tangents' not in sys.modules, sorted(m for m in sys.modules if 'neural' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
