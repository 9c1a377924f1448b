"""Figures are data: ``--replot`` redraws every figure and the report from ``DIR/data`` with the
sweep runner patched to raise, and gives the same figure data and the same rows as the run.

The default-run test uses a small figure module built here on the shared machinery (a real,
tiny sweep through ``ctx.sweep``, a seed-bootstrap fit stored with ``fit_to_dataset``); the
slow test does the same with the quick preset's Figs. 2 and 4.
"""

import sys
import types

import numpy as np
import pytest
import xarray as xr

import experiments
import paper_figs
from paper_figs import _common
from paper_figs.__main__ import main

FAKE = "fig0_replot_check"


def _fake_figure_module():
    """A figure of the shared shape: one tiny teacher-student sweep, a fit, a theory line."""
    m = types.ModuleType(f"paper_figs.{FAKE}")
    m.NAME = FAKE
    spec = experiments.SweepSpec(task={"kind": "teacher_student", "n_features": 2000, "alpha": 0.3},
                                 model={"kind": "rf_ridge", "ridge": 0.0},
                                 grid={"D": [8, 16, 32, 64], "P": [512], "seed": [0, 1, 2]}, name=f"{FAKE}_sweep")

    def compute(ctx):
        grid = ctx.sweep(spec)
        curves = grid.test_loss.isel(P=0).transpose("seed", "D").values
        D = grid.D.values.astype(float)
        fit = _common.seed_bootstrap_exponent(curves, D, n_boot=50)
        ds = _common.fit_to_dataset("data", fit, yerr=curves.std(0) / np.sqrt(curves.shape[0]))
        ds["floor"] = ("D", curves.min(0))
        return ds.assign_coords(D=D).assign_attrs(title="a tiny teacher-student sweep", n_seeds=3)

    def plot(ds):
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2)
        _common.plot_curve_from(ds, "data", a, label="measured")
        a.plot(ds.D.values, ds.floor.values, "k:", label="best seed")
        _common.finish(a, xlabel="D", ylabel="test MSE", title=ds.attrs["title"])
        b.pcolormesh(np.outer(ds.data_y.values, ds.data_y.values))
        return fig

    def rows(ds):
        a, lo, hi = _common.exponent_from(ds, "data")
        return [_common.Row("Fig. 0", "alpha_D", a, lo, hi, 0.3, "alpha_K"),
                _common.Row("Fig. 0", "alpha_D (wide theory interval)", a, lo, hi, 0.5, "heuristic", "",
                            (0.0, 1.0))]

    m.compute, m.plot, m.rows = compute, plot, rows
    m.run = lambda ctx: _common.run_figure(m, ctx)
    return m


@pytest.fixture
def fake_figure(monkeypatch):
    module = _fake_figure_module()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(paper_figs, "FIGURES", (FAKE, "fig6_aspect_ratio"))
    return module


def _forbid_sweeps(monkeypatch):
    def no_sweep(*args, **kwargs):
        raise AssertionError("a sweep ran during --replot")

    monkeypatch.setattr(experiments, "run", no_sweep)
    monkeypatch.setattr(_common.Context, "sweep", no_sweep)


def _capture_figures(monkeypatch, figure_data):
    """Record every Figure saved (before it is closed): name -> figure data."""
    saved = {}
    original = _common.Context.save_figure

    def save_figure(self, fig, name):
        saved[name] = figure_data(fig)
        return original(self, fig, name)

    monkeypatch.setattr(_common.Context, "save_figure", save_figure)
    return saved


def test_replot_redraws_figures_and_report_without_any_sweep(tmp_path, monkeypatch, fake_figure, same_rows,
                                                              figure_data_of, same_figure_data, capsys):
    import matplotlib

    matplotlib.use("Agg")
    with monkeypatch.context() as m:
        made = _capture_figures(m, figure_data_of)
        rows, report, failures = paper_figs.run(tmp_path, only=[FAKE], progress=False, raise_errors=True)
    assert failures == {} and len(rows) == 2 and [r.verdict for r in rows] == ["agrees", "agrees"]
    stored = tmp_path / "data" / f"{FAKE}.nc"
    assert xr.load_dataset(stored).attrs["figure"] == FAKE
    png = tmp_path / "figures" / f"{FAKE}.png"
    csv_before = (tmp_path / "report.csv").read_text()
    png.unlink()
    (tmp_path / "report.md").unlink()

    _forbid_sweeps(monkeypatch)
    redrawn = _capture_figures(monkeypatch, figure_data_of)
    # the command: one figure from data, one whose data is missing (a failure naming the file)
    assert main(["--replot", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert png.stat().st_size > 5_000 and (tmp_path / "report.md").exists()
    assert "fig6_aspect_ratio.nc does not exist" in printed and "Traceback" not in printed
    same_figure_data(made[FAKE], redrawn[FAKE])  # the PNG-producing data are identical
    assert (tmp_path / "report.csv").read_text() == csv_before  # same rows, values and verdicts

    # the library call: failures as data, rows identical field by field
    again, report, failures = paper_figs.replot(tmp_path)
    same_rows(rows, again)
    assert list(failures) == ["fig6_aspect_ratio"]
    assert failures["fig6_aspect_ratio"].startswith("FileNotFoundError: no stored data for fig6_aspect_ratio")
    assert "--replot" in report.read_text() and "## Failures" in report.read_text()


def test_replot_errors_are_one_line(tmp_path, capsys):
    assert main(["--replot", str(tmp_path / "never-made")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "never-made/data does not exist" in err
    with pytest.raises(FileNotFoundError):
        main(["--replot", str(tmp_path / "never-made"), "--debug"])
    with pytest.raises(ValueError, match="fig9"):
        paper_figs.replot(tmp_path, only=["fig9"])


def test_stored_datasets_are_checked_before_writing(tmp_path):
    ctx = _common.Context(tmp_path)
    for bad, why in (({"flag": True}, "bool"), ({"none": None}, "None"), ({"cfg": {"a": 1}}, "dict")):
        with pytest.raises(TypeError, match=why):
            ctx.save_dataset(xr.Dataset(attrs=bad), "fig9")
    with pytest.raises(TypeError, match="'v'.*object"):
        ctx.save_dataset(xr.Dataset({"v": ("i", np.array([None, 1], dtype=object))}), "fig9")
    assert not (tmp_path / "data" / "fig9.nc").exists()


def test_fit_to_dataset_draws_what_plot_curve_draws(same_figure):
    """plot_curve_from(stored fit) draws exactly what plot_curve(fit) draws, band included."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    D = np.geomspace(10, 1000, 7)
    curves = 3 * D ** -0.4 * np.exp(0.05 * rng.standard_normal((5, D.size)))
    fit = _common.seed_bootstrap_exponent(curves, D, n_boot=60)
    yerr = curves.std(0)
    fig_a, ax_a = plt.subplots()
    _common.plot_curve(ax_a, D, curves.mean(0), label="m", fit=fit, yerr=yerr)
    fig_b, ax_b = plt.subplots()
    _common.plot_curve_from(_common.fit_to_dataset("m", fit, yerr=yerr), "m", ax_b, label="m")
    try:
        same_figure(fig_a, fig_b)
    finally:
        plt.close(fig_a)
        plt.close(fig_b)
    # the stored interval is the fit's, and the band brackets the line
    ds = _common.fit_to_dataset("m", fit)
    assert _common.exponent_from(ds, "m") == (fit.alpha, fit.lo, fit.hi)
    assert np.all(ds.m_band_lo.values <= ds.m_line.values) and np.all(ds.m_line.values <= ds.m_band_hi.values)
    with pytest.raises(ValueError, match="1-d of one length"):
        _common.fit_to_dataset("m", fit, yerr=yerr[:3])


@pytest.mark.slow  # the quick Figs. 2 and 4 (about a minute on 2 idle cores)
def test_replot_of_the_quick_figures_is_identical(tmp_path, monkeypatch, same_rows, figure_data_of,
                                                 same_figure_data):
    import matplotlib

    matplotlib.use("Agg")
    names = ["fig2_duality", "fig4_spectra"]
    with monkeypatch.context() as m:
        made = _capture_figures(m, figure_data_of)
        rows, _, failures = paper_figs.run(tmp_path, only=names, progress=False, raise_errors=True)
    assert failures == {}
    _forbid_sweeps(monkeypatch)
    monkeypatch.setattr("kernels.kernel_matrix", lambda *a, **k: pytest.fail("a kernel was computed"))
    redrawn = _capture_figures(monkeypatch, figure_data_of)
    again, _, failures = paper_figs.replot(tmp_path, only=names)
    assert failures == {}
    same_rows(rows, again)
    for name in names:
        same_figure_data(made[name], redrawn[name])
