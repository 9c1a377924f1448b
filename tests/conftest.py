"""Shared test configuration.

Warnings are errors (pyproject ``filterwarnings``). The toolkit computes fits and spectra
in float64 internally (``enable_x64``), so tests never flip JAX's global
x64 flag; the ``tolerance`` fixture gives dtype-dependent tolerances where a test runs float32 code.

Hypothesis (tests/fuzz) runs derandomized by default, so the test command gives the same
verdict on every run and machine; ``NST_HYPOTHESIS=random`` draws fresh examples each run (run it
repeatedly to fuzz deeper; a failure prints its ``@reproduce_failure`` line).
"""

import os

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import settings

matplotlib.use("Agg")

settings.register_profile("derandomized", derandomize=True, database=None)
settings.register_profile("random", derandomize=False)
settings.load_profile("random" if os.environ.get("NST_HYPOTHESIS") == "random" else "derandomized")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def tolerance():
    """``tolerance(dtype)``: relative tolerance for results computed in ``dtype``
    (float32 ~5e-3, float64 ~1e-5)."""
    return lambda dtype: 5e-3 if np.dtype(dtype) == np.float32 else 1e-5


@pytest.fixture
def rng():
    return np.random.default_rng(20210205)  # arXiv:2102.06701 submission date


@pytest.fixture(scope="session")
def isoflops_csv():
    path = SHARED_DATA / "isoflops_public.csv"
    if not path.exists():
        pytest.skip(f"real IsoFLOP data not found at {path} (it lives in the team's shared/ folder)")
    return path
