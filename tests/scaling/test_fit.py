import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scaling
from scaling import _optimize, forms
from scaling import enable_x64

D = np.geomspace(1e2, 1e6, 14)


def noisy(clean, rng, sigma=0.01):
    return clean * np.exp(sigma * rng.standard_normal(np.shape(clean)))


# ------------------------------------------------------------------ recovery


@pytest.mark.parametrize(
    "form, truth",
    [
        ("power", {"A": 3.0, "alpha": 0.35}),
        ("offset", {"L_inf": 0.2, "A": 6.0, "alpha": 0.55}),
        ("variance_limited", {"L_inf": 0.3, "A": 40.0}),
    ],
)
def test_exact_data_recovers_planted_parameters(form, truth):
    f = forms.get(form)
    y = np.asarray(f.model(truth, D))
    res = scaling.fit(form, D, y)
    for k, v in truth.items():
        assert res.params[k] == pytest.approx(v, rel=1e-6)
    assert res.status == "converged" and res.converged


@pytest.mark.parametrize(
    "form, truth, tol",
    [
        ("power", {"A": 3.0, "alpha": 0.35}, {"alpha": 0.01}),
        ("offset", {"L_inf": 0.2, "A": 6.0, "alpha": 0.55}, {"alpha": 0.05, "L_inf": 0.01}),
        ("variance_limited", {"L_inf": 0.3, "A": 40.0}, {"L_inf": 0.005, "A": 4.0}),
    ],
)
def test_noisy_data_recovers_planted_parameters(form, truth, tol, rng):
    f = forms.get(form)
    x = np.geomspace(1e2, 1e6, 40)
    y = noisy(np.asarray(f.model(truth, x)), rng)
    res = scaling.fit(form, x, y)
    for k, t in tol.items():
        assert abs(res.params[k] - truth[k]) < t, (k, res.params[k])


def test_broken_power_law_recovers_its_break(rng):
    x = np.geomspace(1, 1e5, 40)
    truth = {"L_inf": 0.05, "A": 2.0, "alpha_0": 0.2, "dalpha_1": 0.6, "x_1": 300.0, "f_1": 0.3}
    y = noisy(np.asarray(forms.broken_power.model(truth, x)), rng, 0.005)
    res = scaling.fit("broken", x, y)
    assert res.params["alpha_0"] == pytest.approx(0.2, abs=0.05)
    assert res.params["alpha_0"] + res.params["dalpha_1"] == pytest.approx(0.8, abs=0.1)
    assert res.params["x_1"] == pytest.approx(300.0, rel=0.5)


def chinchilla_data(rng, n=250, sigma=0.01):
    N = 10 ** rng.uniform(7, 10, n)
    Dt = 10 ** rng.uniform(9, 12, n)
    truth = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    y = noisy(np.asarray(forms.chinchilla.model(truth, {"N": N, "D": Dt})), rng, sigma)
    return {"N": N, "D": Dt}, y, truth


def test_chinchilla_recovers_exponents_with_huber(rng):
    x, y, truth = chinchilla_data(rng)
    res = scaling.fit("chinchilla", x, y, objective="log_huber", delta=1e-3)
    assert res.params["alpha"] == pytest.approx(truth["alpha"], abs=0.03)
    assert res.params["beta"] == pytest.approx(truth["beta"], abs=0.03)
    assert res.params["E"] == pytest.approx(truth["E"], rel=0.05)


def test_kaplan_recovers_exact_parameters(rng):
    N = np.geomspace(1e7, 1e10, 60)
    Dt = rng.permutation(np.geomspace(1e9, 1e12, 60))
    truth = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
    y = np.asarray(forms.kaplan.model(truth, {"N": N, "D": Dt}))
    res = scaling.fit("kaplan", {"N": N, "D": Dt}, y)
    for k, v in truth.items():
        assert res.params[k] == pytest.approx(v, rel=1e-4)


def test_lbfgs_optimizer_reaches_the_same_optimum(rng):
    x, y, _ = chinchilla_data(rng, n=120)
    a = scaling.fit("chinchilla", x, y)
    b = scaling.fit("chinchilla", x, y, optimizer="lbfgs")
    assert b.objective == pytest.approx(a.objective, rel=1e-8)
    assert b.params["alpha"] == pytest.approx(a.params["alpha"], rel=1e-5)


# ------------------------------------------------------------------ objectives and weights


def test_huber_resists_an_outlier_that_pulls_least_squares(rng):
    y = noisy(0.1 + 5.0 * D**-0.5, rng, 0.003)
    y[7] *= 1.6
    ls = scaling.fit("offset", D, y)
    hub = scaling.fit("offset", D, y, objective="log_huber", delta=1e-3)
    assert abs(hub.params["alpha"] - 0.5) < abs(ls.params["alpha"] - 0.5)
    assert hub.params["alpha"] == pytest.approx(0.5, abs=0.02)


def test_asymmetric_objective_follows_the_lower_envelope(rng):
    y = (0.1 + 5.0 * D**-0.5) * np.exp(np.abs(0.05 * rng.standard_normal(D.size)))  # all above the law
    sym = scaling.fit("offset", D, y)
    low = scaling.fit("offset", D, y, objective="asymmetric", asymmetry=50.0)
    assert np.mean(low.predict(D) > y) < np.mean(sym.predict(D) > y)
    assert np.all(low.predict(D) < y * 1.02)


def test_mse_objective_allows_fitting_in_linear_space():
    y = 0.1 + 5.0 * D**-0.5
    res = scaling.fit("offset", D, y, objective="mse")
    assert res.params["alpha"] == pytest.approx(0.5, rel=1e-6)


def test_zero_weight_equals_dropping_the_point_and_integer_weights_equal_repeats(rng):
    y = noisy(0.1 + 5.0 * D**-0.5, rng, 0.02)
    w = np.ones(D.size)
    w[3] = 0.0
    a = scaling.fit("offset", D, y, weights=w)
    b = scaling.fit("offset", np.delete(D, 3), np.delete(y, 3))
    assert a.params["alpha"] == pytest.approx(b.params["alpha"], rel=1e-7)
    w = np.ones(D.size)
    w[5] = 3.0
    c = scaling.fit("offset", D, y, weights=w)
    d = scaling.fit("offset", np.r_[D, D[5], D[5]], np.r_[y, y[5], y[5]])
    assert c.params["alpha"] == pytest.approx(d.params["alpha"], rel=1e-7)


def test_fixed_parameter(rng):
    y = noisy(0.3 + 40 / D, rng)
    res = scaling.fit("offset", D, y, fixed={"alpha": 1.0})
    ref = scaling.fit("variance_limited", D, y)
    assert res.params["L_inf"] == pytest.approx(ref.params["L_inf"], rel=1e-8)
    assert "alpha" not in res.params


# ------------------------------------------------------------------ batching


def test_batched_fit_equals_fitting_each_curve_alone(rng):
    alphas = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.3])
    Y = noisy(0.05 + 3.0 * D[None] ** -alphas[:, None], rng, 0.02).reshape(2, 3, -1)
    batched = scaling.fit("offset", D, Y)
    assert batched.params["alpha"].shape == (2, 3)
    for i in range(2):
        for j in range(3):
            single = scaling.fit("offset", D, Y[i, j])
            for k in single.params:
                assert batched.params[k][i, j] == pytest.approx(single.params[k], rel=1e-8, abs=1e-12)


def test_per_curve_x(rng):
    X = np.stack([np.geomspace(10, 1e4, 12), np.geomspace(1e3, 1e7, 12)])
    Y = 2.0 * X ** -np.array([[0.3], [0.7]])
    res = scaling.fit("power", X, Y)
    np.testing.assert_allclose(res.params["alpha"], [0.3, 0.7], rtol=1e-7)


def test_second_call_with_same_shapes_does_not_recompile(rng):
    # log_huber runs on the compiled core (power sums with least squares use the NumPy engine)
    y = noisy(0.1 + 5.0 * D**-0.5, rng)
    scaling.fit("offset", D, y, objective="log_huber")
    before = _optimize.fit_batch._cache_size()
    scaling.fit("offset", D, y * 1.1, objective="log_huber")
    assert _optimize.fit_batch._cache_size() == before


def test_spd_solve_jit_equals_eager_and_vmap_equals_loop(rng):
    M = rng.standard_normal((5, 3, 3))
    G = M @ np.swapaxes(M, 1, 2) + 3 * np.eye(3)
    h = rng.standard_normal((5, 3))
    with enable_x64():
        Gj, hj = jnp.asarray(G), jnp.asarray(h)
        eager = np.asarray(_optimize.spd_solve(Gj, hj))
        jitted = np.asarray(jax.jit(_optimize.spd_solve)(Gj, hj))
        mapped = np.asarray(jax.vmap(_optimize.spd_solve)(Gj, hj))
    np.testing.assert_allclose(eager, np.linalg.solve(G, h[..., None])[..., 0], rtol=1e-10)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    np.testing.assert_allclose(mapped, eager, rtol=1e-12)


def test_small_nnls_matches_scipy(rng):
    from scipy.optimize import nnls

    for _ in range(20):
        B = np.abs(rng.standard_normal((12, 3)))
        t = rng.standard_normal(12)
        with enable_x64():
            c = np.asarray(_optimize.small_nnls(jnp.asarray(B), jnp.ones(12), jnp.asarray(t), (True, True, True)))
        ref, _ = nnls(B, t)
        np.testing.assert_allclose(c, ref, atol=1e-9)


# ------------------------------------------------------------------ statuses


def test_status_reports_parameters_on_bounds():
    res = scaling.fit("offset", D, 3.0 * D**-0.4)  # a pure power law: L_inf -> 0
    assert res.status == "at_bound" and res.bound_params == "L_inf"
    assert res.params["L_inf"] < 1e-9
    assert res.params["alpha"] == pytest.approx(0.4, rel=1e-6)


def test_status_reports_an_optimum_beyond_the_start_grid():
    res = scaling.fit("power", D, 3.0 * D**-1.5, starts={"alpha": [0.1, 0.2, 0.3]})
    assert res.params["alpha"] == pytest.approx(1.5, rel=1e-6)
    assert res.status == "grid_edge"


def test_status_reports_the_iteration_limit(rng):
    x, y, _ = chinchilla_data(rng, n=60, sigma=0.05)
    res = scaling.fit("chinchilla", x, y, max_iter=1)
    assert res.status == "max_iter" and not res.converged


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (D, np.where(np.arange(D.size) == 4, np.nan, 1 / D), {}, r"y contains nan at point 4"),
        (D, np.where(np.arange(D.size) == 4, np.inf, 1 / D), {}, r"y contains inf at point 4"),
        (np.where(np.arange(D.size) == 2, -1.0, D), 1 / D, {}, r"x must be > 0 .* x\[2\] = -1"),
        (D, np.where(np.arange(D.size) == 3, 0.0, 1 / D), {}, r"y must be > 0 for a log-space objective; got y\[3\] = 0"),
        (D[:3], 1 / D[:3], {}, r"3 points cannot determine the 3 parameters"),
        (D, np.full(D.size, 0.5), {}, r"y is constant \(every value = 0.5\)"),
        (D, 1 / D[:5], {}, r"last axes \(points\) must match"),
        (D, 1 / D, {"objective": "l2"}, r"unknown objective 'l2'; expected one of: log_mse"),
        (D, 1 / D, {"errors": "warn"}, r"unknown errors 'warn'"),
        (D, 1 / D, {"bootstrap": 10}, r"explicit key"),
        (D, 1 / D, {"weights": -np.ones(D.size)}, r"weights must be finite and >= 0"),
        (D, 1 / D, {"delta": 0.0}, r"delta must be finite and > 0"),
        (D, 1 / D, {"starts": {"A": [1.0]}}, r"not nonlinear parameters"),
    ],
)
def test_bad_input_raises_a_clear_error(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        scaling.fit("offset", x, y, **kwargs)


def test_bad_types_and_shapes():
    with pytest.raises(TypeError, match="pass x as a mapping"):
        scaling.fit("chinchilla", D, 1 / D)
    with pytest.raises(ValueError, match="missing \\['D'\\]"):
        scaling.fit("chinchilla", {"N": D}, 1 / D)
    with pytest.raises(TypeError, match="y must be numeric"):
        scaling.fit("offset", D, ["a"] * D.size)


def test_errors_ignore_masks_bad_curves_and_says_why():
    Y = np.stack([1.0 + 1 / D, np.full(D.size, 2.0), 1.0 + 2 / D])
    res = scaling.fit("offset", D, Y, errors="ignore")
    assert res.status[1] == "invalid" and res.status[0] != "invalid" and res.status[2] != "invalid"
    assert np.isnan(res.params["alpha"][1]) and np.isfinite(res.params["alpha"][0])
    assert "constant" in res.messages[1]


def test_skipna_drops_missing_points():
    y = 0.1 + 5.0 * D**-0.5
    y_nan = y.copy()
    y_nan[[2, 9]] = np.nan
    res = scaling.fit("offset", D, y_nan, skipna=True)
    assert res.params["alpha"] == pytest.approx(0.5, rel=1e-6)
    assert res.n_points == D.size - 2


def test_result_exports_to_a_curvefit_style_dataset(rng):
    Y = noisy(0.05 + 3.0 * D[None] ** -np.array([[0.3], [0.6]]), rng)
    ds = scaling.fit("offset", D, Y).to_dataset(dims=("width",), coords={"width": [64, 128]})
    assert ds.coefficients.dims == ("width", "param")
    assert list(ds.param.values) == ["L_inf", "A", "alpha"]
    assert ds.covariance.dims == ("width", "cov_i", "cov_j")
    assert ds.attrs["form"] == "offset"
