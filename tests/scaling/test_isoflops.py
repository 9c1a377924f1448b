"""Real language-model IsoFLOP sweeps (shared/data/isoflops_public.csv): internal consistency.

There is no ground truth, so the checks are the ones a careful analyst would make: fits on
random halves of each experiment agree within their bootstrap intervals, and a fit that
never saw the largest compute budget predicts its losses.
"""

import numpy as np
import pandas as pd
import pytest

import scaling


@pytest.fixture(scope="module")
def experiments(isoflops_csv):
    table = pd.read_csv(isoflops_csv).query("outlier == False")
    return {name: g for name, g in table.groupby("experiment")}


def padded(groups, rows):
    """Stack unequal curves into (k, n_max) arrays padded with NaN (skipped by skipna)."""
    n = max(len(r) for r in rows)
    out = {k: np.full((len(rows), n), np.nan) for k in ("N", "D", "loss", "budget")}
    for i, (g, r) in enumerate(zip(groups, rows)):
        out["N"][i, : len(r)] = g.params.to_numpy(float)[r]
        out["D"][i, : len(r)] = g.tokens.to_numpy(float)[r]
        out["loss"][i, : len(r)] = g.loss.to_numpy(float)[r]
        out["budget"][i, : len(r)] = g.budget.to_numpy(float)[r]
    return out


@pytest.mark.slow  # over 20 s on 2 cores: kept out of the default run
@pytest.mark.parametrize("form, exponents", [("chinchilla", ("alpha", "beta")), ("kaplan", ("alpha_N", "alpha_D"))])
def test_random_halves_agree_within_their_bootstrap_intervals(experiments, form, exponents):
    rng = np.random.default_rng(0)
    groups, rows = [], []
    for g in experiments.values():
        idx = rng.permutation(len(g))
        groups += [g, g]
        rows += [idx[: len(g) // 2], idx[len(g) // 2:]]
    d = padded(groups, rows)
    # All experiments x both halves x 100 resamples in one batched call.
    res = scaling.fit(form, {"N": d["N"], "D": d["D"]}, d["loss"], objective="log_huber", skipna=True,
                      bootstrap=100, key=1)
    assert set(np.unique(res.status)) <= {"converged", "grid_edge"}
    ci = res.ci(0.95)
    for p in exponents:
        lo, hi = ci[p]  # curves alternate: first half, second half of each experiment
        overlap = np.maximum(lo[0::2], lo[1::2]) <= np.minimum(hi[0::2], hi[1::2])
        assert overlap.all(), (p, lo, hi)


def test_a_fit_without_the_largest_budget_predicts_it(experiments):
    groups = list(experiments.values())
    d = padded(groups, [np.arange(len(g)) for g in groups])
    top = d["budget"] == np.nanmax(d["budget"], axis=1, keepdims=True)
    train = np.where(top, np.nan, d["loss"])
    res = scaling.fit("chinchilla", {"N": d["N"], "D": d["D"]}, train, objective="log_huber", skipna=True)
    for i, name in enumerate(experiments):
        pred = res.predict({"N": d["N"][i][top[i]], "D": d["D"][i][top[i]]})[i]
        rel = pred / d["loss"][i][top[i]] - 1
        # Measured on this data set: worst point 3.5% (marin dclm), log-RMSE <= 1.5%.
        assert np.max(np.abs(rel)) < 0.05, name
        assert np.sqrt(np.mean(np.log1p(rel) ** 2)) < 0.02, name


def test_compute_optimal_allocation_matches_direct_minimisation_on_real_data(experiments):
    from scipy.optimize import minimize_scalar

    groups = list(experiments.values())
    d = padded(groups, [np.arange(len(g)) for g in groups])
    res = scaling.fit("chinchilla", {"N": d["N"], "D": d["D"]}, d["loss"], objective="log_huber", skipna=True)
    budgets = np.unique(np.concatenate([g.budget.to_numpy(float) for g in groups]))
    opt = scaling.compute_optimal(res, budgets)
    assert opt.N_opt.dims == ("curve_0", "compute")
    np.testing.assert_allclose(opt.a + opt.b, 1.0, rtol=1e-12)
    for i, g in enumerate(groups):
        p = {k: float(np.asarray(v)[i]) for k, v in res.params.items()}
        for j, c in enumerate(budgets[[0, -1]]):
            def loss(log_n, c=c):
                n = np.exp(log_n)
                return p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * (c / (6 * n)) ** -p["beta"]

            r = minimize_scalar(loss, bounds=(np.log(1e5), np.log(1e14)), method="bounded", options={"xatol": 1e-12})
            k = [0, -1][j]
            assert float(opt.N_opt[i, k]) == pytest.approx(np.exp(r.x), rel=1e-5)
            assert float(opt.L_opt[i, k]) == pytest.approx(r.fun, rel=1e-9)
        # delta-method intervals from the sandwich covariance bracket the estimate
        assert np.all(opt.N_opt_lower[i] < opt.N_opt[i]) and np.all(opt.N_opt[i] < opt.N_opt_upper[i])
