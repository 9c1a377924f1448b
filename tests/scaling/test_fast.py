"""The NumPy engine for power-sum laws against the compiled (JAX) core it mirrors.

Both run the same algorithm (start scoring, ranking, damped Newton with the same damping
and stopping rules); only the arithmetic differs (closed-form derivatives vs automatic
differentiation, NumPy vs XLA rounding). So fits must agree to rounding, amplified at most
by the conditioning of the optimum: parameters to 1e-7 relative on the curves below
(measured: 1e-11..1e-8 on well-determined curves), and identical statuses.
"""

import subprocess
import sys

import numpy as np
import pytest

import scaling
from scaling import _fast, forms
from scaling._objectives import get_objective
from scaling._spec import Spec

D = np.geomspace(1e2, 1e6, 12)


def noisy_offset(m, seed=0, n=12, x=D):
    rng = np.random.default_rng(seed)
    L = rng.uniform(0.05, 1.0, (m, 1))
    A = rng.uniform(1.0, 20.0, (m, 1))
    a = rng.uniform(0.1, 0.9, (m, 1))
    return (L + A * x**-a) * np.exp(0.02 * rng.standard_normal((m, n)))


def both(monkeypatch, *args, **kwargs):
    """The same fit by the NumPy engine and by the compiled core."""
    fast = scaling.fit(*args, **kwargs)
    monkeypatch.setattr(_fast, "ENABLED", False)
    compiled = scaling.fit(*args, **kwargs)
    monkeypatch.setattr(_fast, "ENABLED", True)
    return fast, compiled


def assert_same_fit(fast, compiled, rtol=1e-7):
    np.testing.assert_array_equal(fast.status, compiled.status)
    for k in fast.params:
        np.testing.assert_allclose(fast.params[k], compiled.params[k], rtol=rtol, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(fast.objective, compiled.objective, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("form, objective", [("offset", "log_mse"), ("offset", "mse"), ("power", "log_mse"),
                                             ("variance_limited", "log_mse")])
def test_numpy_engine_matches_the_compiled_core(monkeypatch, form, objective):
    y = noisy_offset(64)
    fast, compiled = both(monkeypatch, form, D, y, objective=objective)
    assert_same_fit(fast, compiled)
    # most curves take exactly the same path (a rounding can tip a stopping test late)
    assert np.mean(fast.n_iter == compiled.n_iter) > 0.9


def test_numpy_engine_matches_with_weights_missing_points_and_per_curve_x(monkeypatch):
    rng = np.random.default_rng(1)
    X = np.stack([np.geomspace(10, 1e4, 12), np.geomspace(1e3, 1e7, 12)] * 8)
    y = noisy_offset(16, seed=2, x=X)
    y[3, 4] = np.nan
    w = rng.uniform(0.5, 2.0, y.shape)
    fast, compiled = both(monkeypatch, "offset", X, y, weights=w, skipna=True)
    assert_same_fit(fast, compiled)


@pytest.mark.slow  # compiling the 5-parameter core takes a while on 2 cores
def test_numpy_engine_matches_for_chinchilla(monkeypatch):
    rng = np.random.default_rng(0)
    N = np.repeat(np.geomspace(1e7, 1e9, 5), 5)
    Dn = np.tile(np.geomspace(1e9, 1e11, 5), 5)
    y = (1.7 + 400 * N**-0.34 + 410 * Dn**-0.28) * np.exp(0.01 * rng.standard_normal((4, 25)))
    fast, compiled = both(monkeypatch, "chinchilla", {"N": N, "D": Dn}, y)
    assert_same_fit(fast, compiled, rtol=1e-6)


def test_numpy_engine_matches_bootstrap_refits(monkeypatch):
    y = noisy_offset(2, seed=4)
    fast, compiled = both(monkeypatch, "offset", D, y, bootstrap=16, key=0)
    for k in fast.params:
        np.testing.assert_allclose(fast.bootstrap_params[k], compiled.bootstrap_params[k], rtol=1e-7, atol=1e-12)


def test_which_fits_the_numpy_engine_serves():
    def spec(form, objective="log_mse", optimizer="lm"):
        return Spec(form=forms.get(form), objective=get_objective(objective), optimizer=optimizer)

    assert _fast.supports(spec("offset")) and _fast.supports(spec("chinchilla", "mse"))
    assert not _fast.supports(spec("offset", "log_huber"))
    assert not _fast.supports(spec("offset", optimizer="lbfgs"))
    assert not _fast.supports(spec("broken"))
    assert not _fast.supports(spec("kaplan"))
    # derived forms: a held exponent is a number, a coefficient held at 0 drops its term
    assert _fast.supports(Spec(form=forms.get("offset").fix(alpha=1.0)))
    assert _fast.supports(Spec(form=forms.get("chinchilla").fix(E=0.0, beta=0.3)))
    assert not _fast.supports(Spec(form=forms.get("offset").fix(L_inf=0.5)))  # a nonzero held coefficient
    assert not _fast.supports(Spec(form=forms.get("offset").fix(A=0.0)))  # would leave alpha unidentified
    assert not _fast.supports(Spec(form=forms.get("broken").fix(L_inf=0.0)))


@pytest.mark.parametrize("form, fixed", [("offset", {"alpha": 1.0}), ("offset", {"L_inf": 0.0}),
                                         ("power", {"alpha": 0.5})])
def test_numpy_engine_matches_for_held_parameters(monkeypatch, form, fixed):
    y = noisy_offset(32, seed=6)
    fast, compiled = both(monkeypatch, form, D, y, fixed=fixed)
    assert_same_fit(fast, compiled)


@pytest.mark.parametrize("form, name", [("offset", "alpha"), ("power", "alpha")])
def test_numpy_engine_matches_for_profile_intervals(monkeypatch, form, name):
    """Profiles hold an exponent per refit, read from the data: the engine must give the
    compiled core's profile objective, hence the same interval."""
    y = noisy_offset(8, seed=7)
    res = scaling.fit(form, D, y)
    fast = res.profile_ci(name)
    monkeypatch.setattr(_fast, "ENABLED", False)
    compiled = res.profile_ci(name)
    np.testing.assert_allclose(fast, compiled, rtol=1e-7)
    assert np.all(np.isfinite(fast))


def test_profiled_power_sum_is_the_form_itself():
    """The derived description of a profiled form computes the profiled law (exponent from data)."""
    from scaling._profile import profiled_form

    pform = profiled_form(forms.get("offset"), "alpha")
    assert _fast.power_sum(pform) is not None
    rng = np.random.default_rng(1)
    params = {"L_inf": rng.uniform(0.1, 1, 4), "A": rng.uniform(1, 5, 4)}
    x = {"x": rng.uniform(2.0, 1e4, (4, 6)), "_profile": np.repeat(rng.uniform(0.1, 2, (4, 1)), 6, axis=1)}
    reference = params["L_inf"][:, None] + params["A"][:, None] * x["x"] ** -x["_profile"]
    np.testing.assert_allclose(_fast.law_values(pform, params, x), reference, rtol=1e-13)


@pytest.mark.parametrize("name", ["power", "offset", "variance_limited", "chinchilla"])
def test_power_sum_table_is_the_form_itself(name):
    """The table's description of a form computes the form's own law."""
    form = forms.get(name)
    rng = np.random.default_rng(0)
    params = {p: rng.uniform(0.1, 2.0, 5) for p in form.params}
    x = {v: rng.uniform(2.0, 1e4, (5, 7)) for v in form.variables}
    ours = _fast.law_values(form, params, x)
    reference = np.array([np.asarray(form.model({p: params[p][i] for p in params},
                                                x["x"][i] if len(x) == 1 else {v: x[v][i] for v in x}))
                          for i in range(5)])
    np.testing.assert_allclose(ours, reference, rtol=1e-13)


def test_blocks_on_threads_give_the_single_thread_fit(monkeypatch):
    y = noisy_offset(40, seed=5)
    whole = scaling.fit("offset", D, y)
    monkeypatch.setattr(_fast, "CURVES_PER_THREAD", 8)
    monkeypatch.setattr(_fast, "_n_threads", lambda m: 3)
    split = scaling.fit("offset", D, y)
    for k in whole.params:  # NumPy's vector loops may round a block's last elements differently
        np.testing.assert_allclose(split.params[k], whole.params[k], rtol=1e-12)
    np.testing.assert_array_equal(split.status, whole.status)


def test_an_exponent_below_the_start_grid_is_flagged_grid_edge():
    """The lowest grid start (alpha = 0.02) comes back from the optimiser's coordinates as
    0.02 + 1e-17; the grid-edge check must still see it (it used to compare bit for bit)."""
    x = np.geomspace(1e2, 1e6, 12)
    res = scaling.fit("power", x, 2.0 * x**-0.01)
    assert res.params["alpha"] == pytest.approx(0.01, rel=1e-6)
    assert res.status == "grid_edge"


def test_power_sum_fits_load_neither_jax_nor_scipy():
    code = ("import sys, numpy as np, scaling; D = np.geomspace(1e2, 1e5, 12); "
            "r = scaling.fit('offset', D, 0.1 + 3.0 * D ** -0.45); r.predict(1e6); "
            "print(round(float(r.params['alpha']), 6), sorted(m for m in ('jax', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0.45 []"


@pytest.mark.parametrize("form, objective", [(forms.get("offset"), "log_mse"), (forms.get("chinchilla"), "mse"),
                                             (forms.get("offset").fix(alpha=1.0), "log_mse"),
                                             (forms.get("power"), "log_huber")])
def test_closed_form_jacobian_matches_automatic_differentiation(form, objective):
    """Covariances of power sums use closed-form derivatives; jax.jacfwd of the form's own model is the reference."""
    import jax.numpy as jnp

    from scaling._engine import compiled
    from scaling._x64 import enable_x64

    rng = np.random.default_rng(2)
    m, n = 5, 9
    params = {p: rng.uniform(0.2, 1.5, m) for p in form.params}
    x = {v: rng.uniform(2.0, 1e4, (m, n)) for v in form.variables}
    y = rng.uniform(0.5, 2.0, (m, n))
    spec = Spec(form=form, objective=get_objective(objective))
    J, r = _fast.residual_jacobian(form, spec.objective, params, x, y)
    with enable_x64():
        J_ad, r_ad = compiled().batch_residual_jacobian(spec, {k: jnp.asarray(v) for k, v in params.items()},
                                                        {v: jnp.asarray(a) for v, a in x.items()}, jnp.asarray(y))
    np.testing.assert_allclose(r, np.asarray(r_ad), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(J, np.asarray(J_ad), rtol=1e-11, atol=1e-14)


def test_power_sum_uncertainty_loads_no_jax():
    """Standard errors (closed-form Jacobian) and profile intervals (profiled power sums on the
    NumPy engine) of a least-squares power-sum fit need no JAX."""
    code = ("import sys, numpy as np, scaling; D = np.geomspace(1e2, 1e5, 12); "
            "y = (0.1 + 3.0 * D ** -0.45) * np.exp(0.01 * np.random.default_rng(0).standard_normal(12)); "
            "r = scaling.fit('offset', D, y); lo, hi = r.profile_ci('alpha'); se = r.stderr['alpha']; "
            "print(bool(lo < r.params['alpha'] < hi), bool(se > 0), 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True True False"


@pytest.mark.parametrize("unit", [1e-6, 1.0, 1e6])
def test_power_sum_fits_do_not_depend_on_the_units_of_x(unit):
    """Both engines fit against x / (smallest used x): rescaling x changes only the coefficient
    of each term by unit^e (here A by unit^alpha), never the fit."""
    y = noisy_offset(40, seed=8)
    base = scaling.fit("offset", D, y)
    scaled = scaling.fit("offset", D * unit, y)
    np.testing.assert_array_equal(scaled.status, base.status)
    np.testing.assert_allclose(scaled.params["alpha"], base.params["alpha"], rtol=1e-12)
    np.testing.assert_allclose(scaled.params["L_inf"], base.params["L_inf"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(scaled.params["A"], base.params["A"] * unit ** base.params["alpha"], rtol=1e-10)
