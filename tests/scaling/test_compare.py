import numpy as np
import pytest

import scaling

D = np.geomspace(10, 1e5, 20)


def test_information_criteria_prefer_the_true_form(rng):
    y_var = (0.5 + 30 / D) * np.exp(0.01 * rng.standard_normal(D.size))
    y_res = (0.05 + 3 * D**-0.4) * np.exp(0.01 * rng.standard_normal(D.size))
    for y, best in ((y_var, "variance_limited"), (y_res, "offset")):
        table = scaling.compare([scaling.fit(f, D, y) for f in ("variance_limited", "offset", "power")])
        assert str(table.delta_bic.idxmin("form").item()) == best
        assert float(table.akaike_weight.sum()) == pytest.approx(1.0)


def test_compare_refuses_fits_of_different_data():
    a = scaling.fit("power", D, 2 * D**-0.3)
    b = scaling.fit("power", D, 3 * D**-0.3)
    with pytest.raises(ValueError, match="different data"):
        scaling.compare({"a": a, "b": b})


def test_holdout_reports_extrapolation_error(rng):
    x = np.geomspace(1e2, 1e6, 20)
    y = (0.2 + 5 * x**-0.5) * np.exp(0.01 * rng.standard_normal(x.size))
    good = scaling.holdout("offset", x, y, n_test=5)
    bad = scaling.holdout("power", x, y, n_test=5)  # misses the floor: extrapolates too low
    assert good.test.sum() == 5 and good.test[-5:].all()
    assert good.log_rmse < 0.03
    assert bad.log_rmse > 3 * good.log_rmse
    with pytest.raises(ValueError, match="exactly one of"):
        scaling.holdout("offset", x, y)
    with pytest.raises(ValueError, match="n_test must be"):
        scaling.holdout("offset", x, y, n_test=20)
