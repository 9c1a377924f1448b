import numpy as np

from experiments._cli import main


def test_sweep_fit_regimes_export(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("""
name = "cli"
[task]
kind = "teacher_student"
n_features = 3000
alpha = 0.5
[model]
kind = "rf_ridge"
ridge = 1e-4
[grid]
D = [8, 16, 32, 64, 128, 256]
P = [8, 16, 32, 64, 128, 256]
seed = [0, 1]
""")
    out = tmp_path / "r.zarr"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress", "--netcdf", str(tmp_path / "r.nc")]) == 0
    text = capsys.readouterr().out
    assert "2/2 units done" in text and "computed 2 units" in text and (tmp_path / "r.nc").exists()
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert "computed 0 units" in capsys.readouterr().out
    assert main(["fit", str(out), "--dim", "D", "--form", "power"]) == 0
    fits = capsys.readouterr().out
    assert "P=256" in fits and "alpha=" in fits
    assert main(["regimes", str(out), "--ratio", "2"]) == 0
    reg = capsys.readouterr().out
    assert "data_at_large_model" in reg and "duality" in reg
    assert main(["export", str(out), str(tmp_path / "x.nc")]) == 0
    assert np.isfinite(__import__("xarray").load_dataset(tmp_path / "x.nc").test_loss).all()
