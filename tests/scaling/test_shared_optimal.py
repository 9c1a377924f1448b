"""Shared parameters across groups, compute-optimal allocation, reports (issue 14)."""

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize_scalar

import scaling
from scaling import forms

D = np.geomspace(1e2, 1e5, 12)


@pytest.fixture(scope="module")
def three_experiments():
    rng = np.random.default_rng(3)
    A = np.array([2.0, 3.0, 4.0])
    x = np.tile(D, 3)
    g = np.repeat(["a", "b", "c"], D.size)
    y = (0.1 + np.repeat(A, D.size) * x**-0.4) * np.exp(0.01 * rng.standard_normal(x.size))
    return x, y, g


def test_shared_exponent_is_one_fit_with_per_group_parameters(three_experiments):
    x, y, g = three_experiments
    res = scaling.fit("offset", x, y, groups=g, shared=["alpha"])
    assert res.groups == ("a", "b", "c") and res.status == "converged"
    assert np.shape(res.params["alpha"]) == () and res.params["A"].shape == (3,)
    assert res.params["alpha"] == pytest.approx(0.4, abs=0.02)
    np.testing.assert_allclose(res.params["A"], [2.0, 3.0, 4.0], rtol=0.1)
    # The same optimum as a brute-force profile over the shared exponent: for fixed alpha
    # the groups decouple into separate fits of L_inf and A (independent implementation).
    def total(alpha):
        fixed = scaling.fit("offset", x.reshape(3, -1), y.reshape(3, -1), fixed={"alpha": alpha})
        return float(np.sum(fixed.objective))

    best = minimize_scalar(total, bounds=(0.3, 0.5), method="bounded", options={"xatol": 1e-7})
    assert res.params["alpha"] == pytest.approx(best.x, abs=1e-5)
    assert float(res.joint.objective) == pytest.approx(best.fun, rel=1e-6)
    lo, hi = res.wald_ci()["alpha"]
    assert lo < res.params["alpha"] < hi and np.all(np.isfinite(res.stderr["A"]))


def test_likelihood_ratio_test_matches_its_definition(three_experiments):
    x, y, g = three_experiments
    res = scaling.fit("offset", x, y, groups=g, shared=["alpha"])
    sep = scaling.fit("offset", x.reshape(3, -1), y.reshape(3, -1))
    rss_sep = float(np.sum(sep.objective))
    stat = x.size * np.log(float(res.joint.objective) / rss_sep)
    test = res.lr_test()
    assert test.df == 2 and test.statistic == pytest.approx(stat, rel=1e-5)
    assert test.p_value == pytest.approx(stats.chi2.sf(stat, 2), rel=1e-4)
    assert test.p_value > 0.01  # the data do share alpha
    # groups with really different exponents are rejected
    y2 = y * np.where(g == "c", x ** -0.2, 1.0)
    assert scaling.fit("offset", x, y2, groups=g, shared=["alpha"]).lr_test().p_value < 1e-6


def test_shared_fit_errors():
    x = np.tile(D, 2)
    g = np.repeat([0, 1], D.size)
    with pytest.raises(ValueError, match="together"):
        scaling.fit("offset", x, 1 / x, groups=g)
    with pytest.raises(ValueError, match="not parameters of form"):
        scaling.fit("offset", x, 1 / x, groups=g, shared=["gamma"])
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        scaling.fit("offset", x, 1 / x, groups=np.zeros(x.size), shared=["alpha"])


def chinchilla_closed_form(p, C, k=6.0):
    """N_opt by direct numerical minimisation of L(N, C/(kN)) (independent of the package)."""
    def loss(log_n):
        n = np.exp(log_n)
        return p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * (C / (k * n)) ** -p["beta"]

    r = minimize_scalar(loss, bounds=(np.log(1e3), np.log(1e16)), method="bounded", options={"xatol": 1e-12})
    return np.exp(r.x), r.fun


def test_compute_optimal_matches_direct_minimisation_and_the_delta_method():
    N, Dt = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e9, 1e11, 6))
    rng = np.random.default_rng(0)
    L = (1.7 + 400 / N**0.34 + 410 / Dt**0.28) * np.exp(0.005 * rng.standard_normal(N.shape))
    res = scaling.fit("chinchilla", {"N": N.ravel(), "D": Dt.ravel()}, L.ravel())
    C = np.array([1e19, 1e21, 1e23])
    opt = scaling.compute_optimal(res, C, flops=6.0)
    p = res.params
    for i, c in enumerate(C):
        n_opt, l_opt = chinchilla_closed_form(p, c)
        assert float(opt.N_opt[i]) == pytest.approx(n_opt, rel=1e-6)
        assert float(opt.L_opt[i]) == pytest.approx(l_opt, rel=1e-9)
    np.testing.assert_allclose(6 * opt.N_opt * opt.D_opt, C, rtol=1e-10)
    assert opt.attrs["a"] == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]), rel=1e-12)
    # delta method by finite differences of the closed form through the covariance
    names = list(res.form.params)
    theta = np.array([p[k] for k in names])

    def log_n(th):
        q = dict(zip(names, th))
        s = q["alpha"] + q["beta"]
        return np.log(q["alpha"] * q["A"] / (q["beta"] * q["B"])) / s + q["beta"] / s * np.log(C[1] / 6)

    h = 1e-6 * np.maximum(np.abs(theta), 1e-3)
    grad = np.array([(log_n(theta + h * e) - log_n(theta - h * e)) / (2 * h[j]) for j, e in enumerate(np.eye(5))])
    se = np.sqrt(grad @ res.covariance @ grad)
    z = stats.norm.ppf(0.975)
    assert float(opt.N_opt_upper[1]) == pytest.approx(float(opt.N_opt[1]) * np.exp(z * se), rel=1e-4)
    # another FLOP model moves the optimum as the closed form says
    opt8 = scaling.compute_optimal(res, C, flops=8.0)
    assert float(opt8.N_opt[1]) == pytest.approx(chinchilla_closed_form(p, C[1], k=8.0)[0], rel=1e-6)


def test_compute_optimal_refuses_other_forms():
    res = scaling.fit("power", D, 2 * D**-0.3)
    with pytest.raises(ValueError, match="'chinchilla' or 'kaplan'"):
        scaling.compute_optimal(res, [1e21])


def test_predict_on_a_scalar_returns_a_scalar_and_summary_is_plain_text():
    res = scaling.fit("power", D, 2 * D**-0.3 * np.exp(0.01 * np.sin(np.arange(D.size))))
    assert isinstance(res.predict(1e6), float)
    text = res.summary()
    assert "\\" not in text and "L = A * x^(-alpha)" in text
    assert "correlation" in text and "AIC" in text and "R^2 (log space)" in text
    batch = scaling.fit("power", D, np.stack([2 * D**-0.3, 3 * D**-0.5]) * (1 + 0.01 * np.sin(D)))
    table = batch.summary().splitlines()
    row = next(line.split() for line in table if line.split()[:1] == ["1"])
    assert float(row[3]) == pytest.approx(0.5, abs=0.01) and row[-1] == "converged"  # curve, A, s.e., alpha, s.e.


def test_one_variable_form_with_a_named_variable_gets_an_array():
    f = forms.Form("d_power", lambda p, x: p["A"] * x ** -p["alpha"], ("A", "alpha"), linear=("A",),
                   bounds={"A": (0, np.inf), "alpha": (0, 4)}, init={"alpha": np.linspace(0.1, 2, 8)},
                   variables=("D",))
    res = scaling.fit(f, D, 2 * D**-0.3)
    assert res.params["alpha"] == pytest.approx(0.3, rel=1e-6)
    assert res.predict({"D": 1e6}) == pytest.approx(2e6**0 * 2 * 1e6**-0.3, rel=1e-6)
    assert np.isfinite(res.stderr["alpha"]) or res.status == "converged"
    lo, hi = res.profile_ci("alpha")
    assert lo <= 0.3 <= hi


def test_unidentifiable_fits_are_refused_or_flagged():
    x = np.repeat([10.0, 100.0], 6)  # two distinct x, three parameters
    y = 0.1 + 2 * x**-0.5
    with pytest.raises(ValueError, match="unidentifiable: 2 distinct x values"):
        scaling.fit("offset", x, y * (1 + 0.01 * np.arange(12)))
    res = scaling.fit("offset", x, np.stack([y, y * 1.1]), errors="ignore")
    assert list(res.status) == ["unidentifiable", "unidentifiable"] and np.all(np.isnan(res.params["alpha"]))
    with pytest.raises(ValueError, match="unidentifiable"):
        scaling.fit("offset", np.full(8, 5.0), np.linspace(1, 2, 8))


def test_absurd_weights_and_bad_options_give_clear_errors():
    y = 2 * D**-0.3
    w = np.ones(D.size)
    w[0] = 1e300
    with pytest.raises(ValueError, match="weights must be <= "):
        scaling.fit("power", D, y, weights=w)
    w[0] = 1e100
    with pytest.raises(ValueError, match="carry weight within a factor"):
        scaling.fit("power", D, y, weights=w)
    with pytest.raises(ValueError, match="every parameter"):
        scaling.fit("power", D, y, fixed={"A": 2.0, "alpha": 0.3})
    with pytest.raises(TypeError, match="delta must be a number"):
        scaling.fit("power", D, y, objective="log_huber", delta="a")


def test_compare_on_an_exact_fit_has_no_nan():
    table = scaling.compare([scaling.fit(f, D, 0.1 + 2 * D**-0.5) for f in ("offset", "power")])
    assert np.all(np.isfinite(table.delta_aic)) and np.all(np.isfinite(table.delta_bic))
    assert str(table.delta_aic.idxmin("form").item()) == "offset"


def test_status_and_intervals_do_not_depend_on_the_units_of_y():
    rng = np.random.default_rng(5)
    y = (0.05 + 2 * D**-0.4) * np.exp(0.02 * rng.standard_normal(D.size))
    for scale in (1e-7, 1e7):
        a, b = scaling.fit("offset", D, y), scaling.fit("offset", D, y * scale)
        assert a.status == b.status
        assert b.params["alpha"] == pytest.approx(a.params["alpha"], rel=1e-6)
        assert b.stderr["alpha"] == pytest.approx(a.stderr["alpha"], rel=1e-5)
        np.testing.assert_allclose(b.profile_ci("alpha"), a.profile_ci("alpha"), rtol=1e-5)


def test_loop_of_single_fits_of_any_length_reuses_a_handful_of_programs():
    from scaling import _optimize

    rng = np.random.default_rng(1)
    # log_huber runs on the compiled core (power sums with least squares use the NumPy engine)
    scaling.fit("offset", D, 0.1 + 2 * D**-0.4, objective="log_huber")
    before = _optimize.fit_batch._cache_size()
    for n in range(5, 65, 3):
        x = np.geomspace(1e2, 1e5, n)
        scaling.fit("offset", x, (0.1 + 2 * x**-0.4) * np.exp(0.01 * rng.standard_normal(n)), objective="log_huber")
    assert _optimize.fit_batch._cache_size() - before <= 4  # 16, 32, 64 points (+ a slow-curve pass)


def test_plot_fit_draws_batches_and_isoflop_curves_with_one_legend_entry_each():
    import matplotlib.pyplot as plt

    batch = scaling.fit("power", D, np.stack([2 * D**-0.3, 3 * D**-0.5, 4 * D**-0.4]) * (1 + 0.01 * np.sin(D)))
    ax = scaling.plot_fit(batch, labels=["a", "b", "c"], extrapolate_to=1e7)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    assert all("$" not in t.get_text() for t in ax.get_xticklabels())
    N, Dt = np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e11, 5))
    budgets = np.array([1e18, 1e19, 1e20])
    n_iso = np.concatenate([np.geomspace(1e7, 1e9, 6)] * 3)
    c_iso = np.repeat(budgets, 6)
    d_iso = c_iso / (6 * n_iso)
    loss = 1.7 + 400 / n_iso**0.34 + 410 / d_iso**0.28
    res = scaling.fit("chinchilla", {"N": n_iso, "D": d_iso}, loss * (1 + 0.001 * np.sin(n_iso)))
    ax = scaling.plot_fit(res, kind="isoflop")
    assert len(ax.get_legend().get_texts()) == 3
    plt.close("all")


def test_kaplan_allocation_closed_form_matches_direct_minimisation():
    from scaling import _optimal, enable_x64

    p = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
    law, _ = _optimal.LAWS["kaplan"]
    for c in (1e19, 1e23):
        with enable_x64():
            a, b, log_g, log_n, log_d, loss = (float(v) for v in law(p, np.log(c / 6.0)))

        def kaplan(log_n, c=c):
            n = np.exp(log_n)
            d = c / (6 * n)
            return ((p["N_c"] / n) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / d) ** p["alpha_D"]

        r = minimize_scalar(kaplan, bounds=(np.log(1e3), np.log(1e18)), method="bounded", options={"xatol": 1e-12})
        assert np.exp(log_n) == pytest.approx(np.exp(r.x), rel=1e-5)
        assert loss == pytest.approx(r.fun, rel=1e-10)
        assert a + b == pytest.approx(1.0) and np.exp(log_n + log_d) == pytest.approx(c / 6, rel=1e-10)
