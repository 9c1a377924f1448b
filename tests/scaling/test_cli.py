"""The ``scaling-fit`` CLI: fits, filters, intervals, and one-line errors with exit codes."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from scaling.__main__ import main

D = np.geomspace(1e2, 1e5, 10)


@pytest.fixture
def runs_csv(tmp_path):
    rows = [{"run": r, "D": d, "loss": 0.1 + a * d**-0.5, "keep": r != "c"} for r, a in (("a", 2.0), ("b", 4.0), ("c", 8.0))
            for d in D]
    csv = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_cli_fits_groups_filters_rows_and_writes_netcdf(runs_csv, tmp_path, capsys):
    out = tmp_path / "fits.nc"
    assert main([str(runs_csv), "--form", "offset", "--x", "D", "--by", "run", "--where", "keep=True",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "== a (10 points)" in text and "== c" not in text
    assert "intervals: 95% Wald" in text and "gauss-newton" in text
    ds = xr.load_dataset(out)
    np.testing.assert_allclose(ds.coefficients.sel(param="A"), [2.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(ds.coefficients.sel(param="alpha"), [0.5, 0.5], rtol=1e-6)


def test_cli_where_compares_numbers_without_evaluating_anything(runs_csv, capsys):
    assert main([str(runs_csv), "--x", "D", "--by", "run", "--where", "D>=1e3", "--where", "run!=b"]) == 0
    text = capsys.readouterr().out
    assert "== a (7 points)" in text and "== c (7 points)" in text and "== b" not in text
    # what used to be a pandas query (code execution) is now just an unknown column
    assert main([str(runs_csv), "--x", "D", "--where", "@pd.io.common.os.system('touch pwned')==0"]) == 2
    assert "--where" in capsys.readouterr().err


def test_cli_huber_prints_sandwich_standard_errors(runs_csv, capsys):
    assert main([str(runs_csv), "--x", "D", "--by", "run", "--objective", "log_huber"]) == 0
    text = capsys.readouterr().out
    assert "sandwich covariance" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("alpha"))
    assert np.isfinite(float(row.split()[2]))  # the s.e. column


def _bad_inputs(tmp_path):
    good = "D,loss\n" + "\n".join(f"{d},{0.1 + 2 * d ** -0.5}" for d in D) + "\n"
    files = {
        "empty": b"",
        "malformed": (good + "5,6,7,8\n").encode(),
        "text_in_numbers": good.replace(f"{D[3]},", "abc,").encode(),
        "non_utf8": b"D,loss\n1,\xff\xfe\n",
        "header_only": b"D,loss\n",
    }
    paths = {}
    for k, v in files.items():
        paths[k] = tmp_path / f"{k}.csv"
        paths[k].write_bytes(v)
    return paths


@pytest.mark.parametrize("case, code, needle", [
    ("empty", 1, "is empty"), ("malformed", 1, "not a well-formed CSV"), ("text_in_numbers", 1, "must be numeric"),
    ("non_utf8", 1, "not UTF-8"), ("header_only", 1, "no data rows"),
])
def test_cli_bad_files_give_one_line_and_exit_1(tmp_path, capsys, case, code, needle):
    path = _bad_inputs(tmp_path)[case]
    assert main([str(path), "--x", "D"]) == code
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args, needle", [
    (["missing.csv", "--x", "D"], "no such file"),
    (["{csv}", "--x", "D", "--form", "ofset"], "unknown form 'ofset'"),
    (["{csv}", "--x", "N=D,D=loss,D=run"], "more than once"),
    (["{csv}", "--x", "tokens"], "column 'tokens' not in"),
    (["{csv}", "--x", "D", "--where", "D~3"], "--where takes COLUMN OP VALUE"),
    (["{csv}", "--x", "D", "--bogus"], "unrecognized arguments"),
    (["{csv}", "--x", "D", "--compute-optimal", "1e21"], "needs --form chinchilla or kaplan"),
])
def test_cli_usage_errors_give_one_line_and_exit_2(runs_csv, capsys, args, needle):
    assert main([a.format(csv=runs_csv) for a in args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_debug_shows_the_traceback(tmp_path):
    path = _bad_inputs(tmp_path)["empty"]
    with pytest.raises(Exception, match="is empty"):
        main([str(path), "--x", "D", "--debug"])


def test_cli_help_names_the_command():
    out = subprocess.run([sys.executable, "-m", "scaling", "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: scaling-fit")


def test_cli_shared_fit(tmp_path, capsys):
    rows = [{"run": r, "D": d, "loss": a * d**-0.3 * np.exp(0.01 * np.sin(i + 10 * j))}
            for j, (r, a) in enumerate((("a", 2.0), ("b", 3.0))) for i, d in enumerate(D)]
    csv = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert main([str(csv), "--form", "power", "--x", "D", "--by", "run", "--shared", "alpha"]) == 0
    text = capsys.readouterr().out
    alpha = float(text.split("alpha (shared) = ")[1].split()[0])
    assert alpha == pytest.approx(0.3, abs=0.003) and "likelihood ratio (Gaussian)" in text and "A [b] = " in text


def test_cli_compute_optimal(tmp_path, capsys):
    N, Dt = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6))
    loss = (1.7 + 400 / N**0.34 + 410 / Dt**0.28).ravel()
    csv = tmp_path / "iso.csv"
    pd.DataFrame({"params": N.ravel(), "tokens": Dt.ravel(), "loss": loss}).to_csv(csv, index=False)
    assert main([str(csv), "--form", "chinchilla", "--x", "N=params,D=tokens", "--compute-optimal", "1e21"]) == 0
    text = capsys.readouterr().out
    assert "a = 0.4516" in text and "C = 1e+21: N_opt" in text
