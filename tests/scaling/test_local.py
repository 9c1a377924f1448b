import numpy as np
import pytest
import xarray as xr

import scaling

D = np.geomspace(1e1, 1e6, 30)


def test_local_exponent_of_an_exact_power_law_is_constant():
    np.testing.assert_allclose(scaling.local_exponent(D, 0.3 + 2 * D**-0.6, l_inf=0.3), 0.6, rtol=1e-9)


def test_local_exponent_tracks_a_crossover():
    # Broken power law: slope 0.2 well below the break at 1e3, 0.8 well above.
    y = D**-0.2 * (1 + D / 1e3) ** -0.6
    le = scaling.local_exponent(D, y)
    assert le[0] == pytest.approx(0.2, abs=0.02)
    assert le[-1] == pytest.approx(0.8, abs=0.02)
    assert np.all(np.diff(le) > -1e-9)


def test_local_exponent_is_robust_to_noise(rng):
    y = 2 * D**-0.5 * np.exp(0.02 * rng.standard_normal((200, D.size)))
    le = scaling.local_exponent(D, y)
    naive = -np.diff(np.log(y), axis=-1) / np.diff(np.log(D))
    assert np.std(le[:, 10:20]) < 0.5 * np.std(naive[:, 10:20])
    assert np.mean(le[:, 10:20]) == pytest.approx(0.5, abs=0.01)


def test_local_exponent_errors():
    with pytest.raises(ValueError, match=r"y - l_inf must be finite and > 0.*is l_inf above the curve"):
        scaling.local_exponent(D, 0.3 + D**-0.5, l_inf=0.5)
    with pytest.raises(ValueError, match=r"x must be finite and > 0; got x\[0\]"):
        scaling.local_exponent(np.r_[0.0, D[1:]], D**-0.5)
    with pytest.raises(ValueError, match="at least 3 distinct"):
        scaling.local_exponent([1.0, 2.0], [1.0, 0.5])


def test_local_exponent_accessor_keeps_coords():
    da = xr.DataArray(np.stack([D**-0.3, D**-0.7]), dims=("width", "D"), coords={"width": [1, 2], "D": D})
    le = da.scaling.local_exponent("D")
    assert le.dims == ("width", "D")
    np.testing.assert_allclose(le.sel(width=2).values, 0.7, rtol=1e-9)
