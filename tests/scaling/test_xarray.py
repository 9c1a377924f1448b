import numpy as np
import pytest
import xarray as xr

import scaling

D = np.geomspace(1e2, 1e5, 12)


@pytest.fixture
def sweep(rng):
    widths = np.array([64, 256, 1024])
    seeds = np.arange(4)
    A = np.array([2.0, 3.0, 4.0])[:, None, None]
    clean = 0.1 + A * D[None, None, :] ** -0.5
    loss = clean * np.exp(0.01 * rng.standard_normal((3, 4, D.size)))
    return xr.DataArray(
        loss, dims=("width", "seed", "D"),
        coords={"width": widths, "seed": seeds, "D": D, "label": ("width", ["s", "m", "l"])},
        name="test_loss", attrs={"units": "nats", "task": "synthetic"},
    )


def test_dataarray_fit_keeps_coords_and_attrs(sweep):
    ds = sweep.scaling.fit("D", form="offset")
    assert ds.coefficients.dims == ("width", "seed", "param")
    np.testing.assert_array_equal(ds.width.values, [64, 256, 1024])
    assert list(ds.label.values) == ["s", "m", "l"]
    assert ds.attrs["task"] == "synthetic" and ds.attrs["fit_dims"] == ["D"]
    np.testing.assert_allclose(ds.coefficients.sel(param="alpha"), 0.5, atol=0.06)
    direct = scaling.fit("offset", D, sweep.values[1, 2])
    assert float(ds.coefficients.sel(width=256, seed=2, param="alpha")) == pytest.approx(direct.params["alpha"], rel=1e-9)


def test_missing_cells_are_skipped(sweep):
    holed = sweep.copy()
    holed[0, 0, 3] = np.nan
    ds = holed.scaling.fit("D", form="offset")
    ref = scaling.fit("offset", np.delete(D, 3), np.delete(sweep.values[0, 0], 3))
    assert float(ds.coefficients.sel(width=64, seed=0, param="A")) == pytest.approx(ref.params["A"], rel=1e-8)


def test_dataset_accessor_and_netcdf_round_trip(sweep, tmp_path):
    ds_in = sweep.to_dataset()
    out = ds_in.scaling.fit("D", form="offset", var="test_loss", bootstrap=20, key=0)
    assert "bootstrap_coefficients" in out
    path = tmp_path / "fit.nc"
    out.to_netcdf(path)
    back = xr.load_dataset(path)
    xr.testing.assert_allclose(back.coefficients, out.coefficients)


def test_two_variable_form_over_two_dims():
    N = np.geomspace(1e7, 1e9, 6)
    Dt = np.geomspace(1e9, 1e11, 7)
    law = 1.7 + 400 * N[:, None] ** -0.34 + 410 * Dt[None, :] ** -0.28
    da = xr.DataArray(law, dims=("N", "D"), coords={"N": N, "D": Dt})
    ds = da.scaling.fit(("N", "D"), form="chinchilla")
    np.testing.assert_allclose(ds.coefficients.sel(param=["alpha", "beta"]), [0.34, 0.28], rtol=1e-5)


def test_dataarray_errors(sweep):
    with pytest.raises(ValueError, match=r"dims \['P'\] not in"):
        sweep.scaling.fit("P", form="offset")
    with pytest.raises(ValueError, match="no data variable 'loss'"):
        sweep.to_dataset().scaling.fit("D", form="offset", var="loss")
