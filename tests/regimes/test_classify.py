"""Regime classification on synthetic curves with known truth; the confusion matrix."""

import numpy as np
import pytest

import kernels
import regimes

X = np.geomspace(1e2, 1e5, 15)


def synthetic(rng, kind, m):
    L = rng.uniform(0.0, 1.0, (m, 1))
    A = rng.uniform(1, 20, (m, 1))
    noise = rng.uniform(0.005, 0.03, (m, 1))
    alpha = rng.uniform(0.1, 0.7, (m, 1))
    if kind == "variance":
        clean = L + 100 * A / X
    elif kind == "resolution":
        clean = 0.1 * L + A * X**-alpha
    else:  # flat
        clean = 0.5 + L + 0 * X
    return clean * np.exp(noise * rng.standard_normal(clean.shape)), alpha.ravel()


@pytest.fixture(scope="module")
def confusion():
    """Confusion matrix over 300 random curves (rows: truth, columns: label)."""
    rng = np.random.default_rng(1)
    rows = {}
    alpha_in_ci = None
    for kind, m in (("variance", 100), ("resolution", 100), ("flat", 60)):
        y, alpha = synthetic(rng, kind, m)
        c = regimes.classify(X, y)
        rows[kind] = {lab: int(np.sum(c.label == lab)) for lab in regimes.LABELS}
        if kind == "resolution":
            alpha_in_ci = float(np.mean((c.alpha_ci[0] <= alpha) & (alpha <= c.alpha_ci[1])))
    y, _ = synthetic(rng, "resolution", 40)
    short = regimes.classify(X[:4], y[:, :4])
    rows["too_short"] = {lab: int(np.sum(short.label == lab)) for lab in regimes.LABELS}
    return rows, alpha_in_ci


def test_confusion_matrix(confusion):
    rows, alpha_in_ci = confusion
    # Measured (seed 1): variance 95/0/5, resolution 0/100/0, flat and short all undetermined.
    assert rows["variance"]["variance-limited"] >= 90
    assert rows["variance"]["resolution-limited"] == 0
    assert rows["resolution"]["resolution-limited"] >= 95
    assert rows["resolution"]["variance-limited"] == 0
    assert rows["flat"]["undetermined"] == 60
    assert rows["too_short"]["undetermined"] == 40
    assert alpha_in_ci >= 0.85  # nominal 95% profile intervals (measured 0.91)


def test_a_known_asymptote_pins_the_exponent(rng):
    y = (0.4 + 3.0 * X**-0.3) * np.exp(0.01 * rng.standard_normal(X.size))
    free = regimes.classify(X, y)
    known = regimes.classify(X, y, l_inf=0.4)
    assert known.label == "resolution-limited" and known.L_inf == 0.4
    assert known.alpha_ci[1] - known.alpha_ci[0] < free.alpha_ci[1] - free.alpha_ci[0]
    assert known.alpha_ci[0] < 0.3 < known.alpha_ci[1]


def test_evidence_explains_the_label(rng):
    c = regimes.classify(X, 0.3 + 20.0 / X * np.exp(0.005 * rng.standard_normal(X.size)))
    assert c.label == "variance-limited"
    assert "consistent with 1" in c.evidence["reason"] and c.evidence["p_alpha_is_1"] > 0.05
    ds = regimes.classify(X, np.stack([0.3 + 20 / X, 2 * X**-0.4])).to_dataset(("width",))
    assert list(ds.label.values) == ["variance-limited", "resolution-limited"]


def test_double_descent_curves_are_flagged_not_fitted():
    lam = np.arange(1, 5001) ** -1.5
    D = np.geomspace(20, 5000, 30)
    y = kernels.rf_risk(lam, np.sqrt(lam), D, 300.0)  # ridgeless: a peak at D = P = 300
    y = np.where(np.isfinite(y), y, np.nan)
    flagged = regimes.classify(D, y)
    assert flagged.label == "undetermined" and "non-monotonic" in flagged.evidence["reason"]


def test_the_monotone_part_is_fitted_when_asked(rng):
    D = np.geomspace(10, 1e5, 40)
    bump = 3 * np.exp(-np.log(D / 100) ** 2 / 0.01)  # a peak that decays within a grid step or two
    y = (2 * D**-0.4 + bump) * np.exp(0.005 * rng.standard_normal(D.size))
    after = regimes.classify(D, y, monotone="after")
    assert after.label == "resolution-limited"
    assert abs(after.alpha - 0.4) < 0.01  # the bump leaves a 0.5% residual on the first point after it
    assert after.evidence["n_points"] < 30


def test_classify_errors():
    with pytest.raises(ValueError, match="level must be in"):
        regimes.classify(X, 1 / X, level=1.5)
    with pytest.raises(ValueError, match="must be 1-D and match"):
        regimes.classify(X, np.ones(5))
    with pytest.raises(ValueError, match="unknown monotone 'left'"):
        regimes.classify(X, 1 / X, monotone="left")
