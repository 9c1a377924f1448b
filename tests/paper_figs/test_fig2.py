"""Fig. 2 at quick sizes: measured exponents against the finite-window theory, from the stored data."""

import numpy as np
import pytest
import xarray as xr

import experiments
import kernels
import paper_figs
import scaling
from paper_figs import _common, fig2_duality


@pytest.mark.slow  # over 20 s on 2 cores: kept out of the default run
def test_fig2_duality_teacher_student_exponents(out, seed_bootstrap_alpha, assert_roundtrip):
    rows, report, failures = paper_figs.run(out, only=["fig2_duality"], progress=False, raise_errors=True)
    assert failures == {}
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"fig2_duality.{ext}").stat().st_size > 10_000
    assert report.exists() and "alpha_D" in report.read_text()

    ds = experiments.load(out / "data" / "teacher_student_rf_quick.zarr")
    spec = _common.teacher_student_rf_spec("quick")
    task = experiments.teacher_student(spec.task["n_features"], spec.task["alpha"])
    assert ds.attrs["spec_fingerprint"] and int(ds.status.min()) == 1  # every unit done
    L = ds.test_loss.transpose("seed", "D", "P")
    D, P = ds.D.values.astype(float), ds.P.values.astype(float)
    # resolution-limited windows: 16 <= size <= other/WINDOW at the largest other size (1024)
    win_D = (D >= 16) & (D <= P[-1] / fig2_duality.WINDOW)
    win_P = (P >= 16) & (P <= D[-1] / fig2_duality.WINDOW)
    a_D = seed_bootstrap_alpha(L.values[:, win_D, -1], D[win_D])
    a_P = seed_bootstrap_alpha(L.values[:, -1, win_P], P[win_P], seed=1)
    # The theory for this finite setting: the same power-law fits over the same windows of
    # kernels.rf_theory's exact loss (alpha_K = 0.3 is the asymptote, not the window's value).
    th = kernels.rf_theory(task.eigenvalues, task.coefficients, D, P).test_mse.transpose("D", "P").values
    t_D = float(scaling.fit("power", D[win_D], th[win_D, -1]).params["alpha"])
    t_P = float(scaling.fit("power", P[win_P], th[-1, win_P]).params["alpha"])
    for (a, lo, hi), t in ((a_D, t_D), (a_P, t_P)):
        assert lo <= t <= hi, (a, lo, hi, t)  # measured within its 95% interval of the finite-window theory
        assert hi - lo <= 0.1, (lo, hi)  # and that interval is informative

    # the report states the same numbers as the stored data give
    reported = {r.quantity.split(" ")[0]: r for r in rows if r.figure == "Fig. 2" and r.quantity[7:9] == " ("}
    assert reported["alpha_D"].value == pytest.approx(a_D[0], abs=1e-6)
    assert reported["alpha_P"].value == pytest.approx(a_P[0], abs=1e-6)
    assert reported["alpha_D"].verdict == reported["alpha_P"].verdict == "agrees"
    assert reported["alpha_D"].theory == pytest.approx(t_D, abs=1e-6)
    assert reported["alpha_P"].theory == pytest.approx(t_P, abs=1e-6)

    # the theory drawn over the measurements (kernels.rf_theory) matches them away from D = P,
    # where the measured mean of a divergent quantity is not meaningful
    analysis = xr.load_dataset(out / "data" / "fig2_duality.nc")
    ratio = (analysis.measured_mean / analysis.theory).values
    Dg, Pg = np.meshgrid(analysis.D.values, analysis.P.values, indexing="ij")
    away = (np.maximum(Dg, Pg) >= 2 * np.minimum(Dg, Pg)) & (np.minimum(Dg, Pg) >= 16)
    assert np.nanmedian(np.abs(ratio[away] - 1)) < 0.05

    # figures are data: the stored Dataset redraws the same figure and the same rows
    assert_roundtrip(fig2_duality, analysis)
    assert [(r.quantity, r.value, r.verdict) for r in fig2_duality.rows(analysis)] == \
        [(r.quantity, r.value, r.verdict) for r in rows]
