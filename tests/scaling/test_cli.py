import numpy as np
import pandas as pd
import pytest
import xarray as xr

from scaling.__main__ import main


def test_cli_fits_groups_and_writes_netcdf(tmp_path, capsys):
    D = np.geomspace(1e2, 1e5, 10)
    rows = [{"run": r, "D": d, "loss": 0.1 + a * d**-0.5} for r, a in (("a", 2.0), ("b", 4.0)) for d in D]
    csv = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "fits.nc"
    assert main([str(csv), "--form", "offset", "--x", "D", "--by", "run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "== a (10 points)" in text and "alpha = 0.5" in text
    ds = xr.load_dataset(out)
    np.testing.assert_allclose(ds.coefficients.sel(param="A"), [2.0, 4.0], rtol=1e-6)


def test_cli_reports_a_missing_column(tmp_path):
    csv = tmp_path / "runs.csv"
    pd.DataFrame({"D": [1, 2, 3], "loss": [3, 2, 1]}).to_csv(csv, index=False)
    with pytest.raises(SystemExit, match="column 'tokens' not in"):
        main([str(csv), "--x", "tokens"])
