"""Property tests (hypothesis): invariances every correct fit must have.

- Rescaling the losses by c multiplies the amplitude (and floor) by c and leaves the exponent:
  log-space least squares is invariant under log y -> log y + log c.
- The order of the points does not matter.
- A fit's Dataset survives a zarr round trip unchanged (results are data).

The curves are generated exactly from the form, so the fit must recover the parameters; the
sizes are fixed (12 points) so every example reuses one compiled fit.
"""

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scaling

X = np.geomspace(10.0, 1e5, 12)
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

alphas = st.floats(0.1, 1.5)
amplitudes = st.floats(0.5, 50.0)
floors = st.floats(0.01, 1.0)
scales = st.floats(1e-3, 1e3)


@SETTINGS
@given(alpha=alphas, A=amplitudes, L_inf=floors, c=scales)
def test_rescaling_losses_rescales_amplitude_and_keeps_exponent(alpha, A, L_inf, c):
    y = L_inf + A * X**-alpha
    base = scaling.fit("offset", X, y)
    scaled = scaling.fit("offset", X, c * y)
    assert scaled.params["alpha"] == pytest.approx(base.params["alpha"], rel=1e-5, abs=1e-6)
    assert scaled.params["A"] == pytest.approx(c * base.params["A"], rel=1e-4)
    assert scaled.params["L_inf"] == pytest.approx(c * base.params["L_inf"], rel=1e-4, abs=1e-9 * c)
    assert base.params["alpha"] == pytest.approx(alpha, rel=1e-4)


@SETTINGS
@given(alpha=alphas, A=amplitudes, noise_seed=st.integers(0, 2**31 - 1), perm_seed=st.integers(0, 2**31 - 1))
def test_point_order_does_not_matter(alpha, A, noise_seed, perm_seed):
    y = A * X**-alpha * np.exp(0.02 * np.random.default_rng(noise_seed).standard_normal(X.size))
    order = np.random.default_rng(perm_seed).permutation(X.size)
    a = scaling.fit("power", X, y)
    b = scaling.fit("power", X[order], y[order])
    for name in ("A", "alpha"):
        assert b.params[name] == pytest.approx(a.params[name], rel=1e-6)
    assert b.objective == pytest.approx(a.objective, rel=1e-6, abs=1e-12)


@SETTINGS
@given(alpha=alphas, A=amplitudes, L_inf=floors)
def test_fit_dataset_zarr_round_trip_is_identical(alpha, A, L_inf, tmp_path):
    y = np.stack([L_inf + A * X**-alpha, L_inf + 2 * A * X**-alpha])
    ds = scaling.fit("offset", X, y).to_dataset(dims=("curve",), coords={"curve": ["a", "b"]})
    path = tmp_path / f"fit_{alpha:.6f}_{A:.6f}_{L_inf:.6f}.zarr"
    ds.to_zarr(path, mode="w", zarr_format=2)  # the format experiments stores use (string coords are stable there)
    with xr.open_zarr(path) as back:
        xr.testing.assert_identical(back.load(), ds)
