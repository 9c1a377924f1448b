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


# ------------------------------------------------------------------ errors: one line, exit 2 usage / 1 data

import json  # noqa: E402

import pytest  # noqa: E402

import experiments  # noqa: E402
from experiments import _store  # noqa: E402

DIGITS = ('name = "digits"\nn_test = 100\n[task]\nkind = "digits"\n[model]\nkind = "krr"\n'
          '[grid]\nD = [50, 100, 200]\nseed = [0, 1]\n')


@pytest.fixture
def digits_spec(tmp_path):
    path = tmp_path / "runs" / "alpha=0.5" / "spec.toml"  # a path with '=' (issue 13)
    path.parent.mkdir(parents=True)
    path.write_text(DIGITS)
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def one_line(err):
    assert err.startswith("nst: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("content, code, message", [
    (None, 2, "spec file .* does not exist"),
    (b"", 1, "is empty"),
    (b"   \n\n", 1, "is empty"),
    (b"\xff\xfe[task]\n", 1, r"is not UTF-8 text \(byte 0xff at offset 0\)"),
    (b"[task\nkind = 1", 1, r"is not valid TOML: .*line 1"),
    (b'[task]\nkind = "teacher"\n[model]\nkind = "krr"\n[grid]\nD = [8]\nseed = [0]\n', 1,
     "unknown task kind 'teacher'; expected one of"),
    (b'[task]\nkind = "digits"\n[model]\nkind = "krr"\n[grid]\nD = [-8]\nseed = [0]\n', 1, r"grid\['D'\]"),
    (b'[task]\nkind = "digits"\n[model]\nkind = "krr"\n', 1, r"\[grid\]"),
    (b'[task]\nkind = "digits"\n[model]\nkind = "krr", ridge = -1\n', 1, "not valid TOML"),
])
def test_bad_spec_files_give_one_line_and_the_right_exit_code(tmp_path, capsys, content, code, message):
    spec = tmp_path / "spec.toml"
    if content is not None:
        spec.write_bytes(content)
    got, out, err = run_cli(capsys, "sweep", spec, "--out", tmp_path / "r.zarr", "--no-progress")
    assert got == code and out == ""
    assert pytest.importorskip("re").search(message, one_line(err)), err
    assert not (tmp_path / "r.zarr").exists()


@pytest.mark.parametrize("argv, message", [
    ([], "required: command"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["sweep"], "required: spec, --out"),
    (["sweep", "{spec}", "--out", "{out}", "--bogus"], "unrecognized arguments: --bogus"),
    (["sweep", "{spec}", "--out", "{out}", "--executor", "slurm"], "invalid choice: 'slurm'"),
    (["sweep", "{spec}", "--out", "{out}", "--workers", "zero"], "invalid int value: 'zero'"),
    (["sweep", "{spec}", "--out", "{out}", "--workers", "0"], "--workers must be >= 1"),
    (["fit", "{tmp}/missing.zarr"], "results .*missing.zarr does not exist"),
    (["export", "{tmp}/missing.zarr", "{tmp}/x.nc"], "does not exist"),
])
def test_usage_errors_exit_2_in_one_line(tmp_path, capsys, digits_spec, argv, message):
    import re

    argv = [a.format(spec=digits_spec, out=tmp_path / "r.zarr", tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and re.search(message, one_line(err)), err


def test_a_path_with_equals_signs_runs_and_analysis_errors_are_one_line(tmp_path, capsys, digits_spec):
    out_store = tmp_path / "r.zarr"
    code, out, err = run_cli(capsys, "sweep", digits_spec, "--out", out_store, "--no-progress")
    assert code == 0, err
    assert "2/2 units done" in out and "computed 2 units this run" in out
    for argv, code_, message in [
        (["fit", out_store, "--form", "ofset"], 2, "unknown --form 'ofset'; expected one of: .*offset"),
        (["fit", out_store, "--dim", "width"], 2, "--dim 'width' is not a dim"),
        (["fit", out_store, "--var", "nope"], 2, "--var 'nope' is not in the results"),
        (["regimes", out_store, "--ratio", "nan"], 2, "--ratio must be a finite number > 1"),
        (["fit", digits_spec], 1, "not a readable sweep store"),
        (["export", out_store, tmp_path / "no" / "dir" / "x.nc"], 2, "directory .* does not exist"),
    ]:
        import re

        got, o, e = run_cli(capsys, *argv)
        assert got == code_ and re.search(message, one_line(e)), (argv, e)


def test_the_python_api_reads_spec_paths_with_equals_signs(digits_spec):
    # a one-line string with '=' is a path when such a file exists, TOML text otherwise
    assert experiments.SweepSpec.from_toml(str(digits_spec)).grid == {"D": [50, 100, 200], "seed": [0, 1]}
    with pytest.raises(ValueError, match="unknown top-level keys"):
        experiments.SweepSpec.from_toml("a = 1")


def test_debug_shows_the_traceback(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_bytes(b"[task\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        main(["sweep", str(spec), "--out", str(tmp_path / "r.zarr"), "--debug"])


def test_store_problems_are_data_errors_in_one_line(tmp_path, capsys, digits_spec, monkeypatch):
    out_store = tmp_path / "r.zarr"
    assert run_cli(capsys, "sweep", digits_spec, "--out", out_store, "--no-progress")[0] == 0
    # a damaged chunk is recomputed, and the run says so
    (out_store / "test_loss" / "0.0").unlink()
    code, out, err = run_cli(capsys, "sweep", digits_spec, "--out", out_store, "--no-progress")
    assert code == 0 and "computed 1 units this run (1 recomputed: 1 corrupt (1 missing chunk))" in out, out
    # a changed spec
    changed = tmp_path / "changed.toml"
    changed.write_text(DIGITS.replace("[0, 1]", "[0, 1, 2]"))
    code, out, err = run_cli(capsys, "sweep", changed, "--out", out_store, "--no-progress")
    assert code == 1 and "holds a different sweep" in one_line(err)
    # another run holds the store
    spec = experiments.SweepSpec.from_toml(digits_spec.read_text())
    with _store.ZarrStore(out_store, spec, spec.variables):
        code, out, err = run_cli(capsys, "sweep", digits_spec, "--out", out_store, "--no-progress")
    assert code == 1 and "in use by another run" in one_line(err)
    # other code, with a unit left to compute: refused unless --allow-version-change
    import zarr

    zarr.open_group(str(out_store), mode="r+", zarr_format=2, use_consolidated=False)["status"][1:2] = [0]
    this_code = _store.code_version()
    monkeypatch.setattr(_store, "code_version", lambda: "0.0.0+src.other")
    code, out, err = run_cli(capsys, "sweep", digits_spec, "--out", out_store, "--no-progress")
    assert code == 1 and "--allow-version-change" in one_line(err)
    code, out, err = run_cli(capsys, "sweep", digits_spec, "--out", out_store, "--no-progress",
                             "--allow-version-change")
    assert code == 0 and "computed 1 units" in out
    versions = json.loads(experiments.load(out_store).attrs["code_versions"])
    assert versions == {"0.0.0+src.other": 1, this_code: 1}
