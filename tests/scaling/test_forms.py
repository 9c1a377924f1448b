import numpy as np
import pytest

import scaling
from scaling import forms


def test_builtin_forms_are_registered_by_name():
    for name in ("power", "offset", "variance_limited", "broken", "chinchilla", "kaplan"):
        assert forms.get(name).name == name
    assert forms.get(forms.offset) is forms.offset


def test_unknown_form_lists_the_alternatives():
    with pytest.raises(ValueError, match=r"unknown form 'ofset'; expected one of: .*offset"):
        scaling.fit("ofset", [1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(TypeError, match="form must be a name"):
        forms.get(3)


def test_parameter_names_follow_the_public_contract():
    assert forms.offset.params == ("L_inf", "A", "alpha")
    assert forms.variance_limited.params == ("L_inf", "A")
    assert forms.chinchilla.params == ("E", "A", "B", "alpha", "beta")
    assert forms.chinchilla.variables == ("N", "D")


def test_register_custom_form_and_fit_it(rng):
    shifted = forms.Form(
        name="test_shifted_power",
        model=lambda p, x: p["c"] + p["A"] * x ** -p["alpha"],
        params=("c", "A", "alpha"),
        linear=("c", "A"),
        bounds={"c": (-np.inf, np.inf), "A": (0, np.inf), "alpha": (0, 4)},
        init={"alpha": np.linspace(0.1, 2, 8)},
    )
    forms.register(shifted, overwrite=True)
    x = np.geomspace(1, 1e3, 15)
    y = -0.5 + 3.0 * x**-0.4 + 4.0  # a positive curve with a negative-looking offset term
    res = scaling.fit("test_shifted_power", x, y, objective="mse")
    assert res.params["c"] == pytest.approx(3.5, rel=1e-6)
    assert res.params["alpha"] == pytest.approx(0.4, rel=1e-6)


def test_register_rejects_a_false_linearity_claim():
    bad = forms.Form("test_bad", lambda p, x: p["A"] ** 2 * x ** -p["alpha"], ("A", "alpha"), linear=("A",),
                     bounds={"A": (0, np.inf), "alpha": (0, 4)}, init={"alpha": [0.5]})
    with pytest.raises(ValueError, match="not linear"):
        forms.register(bad)


def test_form_definition_errors():
    with pytest.raises(ValueError, match="no start grid"):
        forms.Form("x", lambda p, x: p["a"] * x, ("a", "b"), linear=("a",), bounds={"a": (0, np.inf)})
    with pytest.raises(ValueError, match="linear parameter 'a' must be bounded"):
        forms.Form("x", lambda p, x: p["a"] * x, ("a",), linear=("a",), bounds={"a": (1, 2)})
    with pytest.raises(ValueError, match="already registered"):
        forms.register(forms.Form("offset", forms.offset.model, forms.offset.params, forms.offset.linear,
                                  forms.offset.bounds, forms.offset.init))


def test_fix_removes_the_parameter_and_is_cached():
    f = forms.offset.fix(alpha=1.0)
    assert f.params == ("L_inf", "A") and f.linear == ("L_inf", "A")
    assert forms.offset.fix(alpha=1.0) is f
    with pytest.raises(ValueError, match="outside the bounds"):
        forms.offset.fix(alpha=-1.0)
    with pytest.raises(ValueError, match="cannot fix"):
        forms.offset.fix(beta=1.0)


def test_broken_power_law_has_n_breaks():
    assert forms.broken(1) is forms.broken_power
    assert len(forms.broken(3).params) == 3 + 3 * 3
    with pytest.raises(ValueError, match="positive integer"):
        forms.broken(0)
