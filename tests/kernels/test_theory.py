"""Theory learning curves against measured ones, and their limits."""

import numpy as np
import pytest

import kernels


def power_law_teacher(rng, n_pool=1800, n_features=2000, alpha=0.5):
    """Gaussian features with covariance spectrum lambda_i ~ i^-(1+alpha) and a linear
    teacher with unit weights in the feature basis, so the target power is v_i^2 = lambda_i
    exactly: the average of the paper's teacher-student model (weights ~ N(0, 1)). With the
    linear kernel k(x, x') = x . x' the operator eigenvalues are exactly lambda_i."""
    lam = np.arange(1, n_features + 1) ** -(1.0 + alpha)
    lam /= lam.sum()
    X = rng.standard_normal((n_pool, n_features)) * np.sqrt(lam)
    return lam, np.sqrt(lam), X, X.sum(axis=1)


def test_krr_theory_matches_measured_krr(rng):
    lam, v, X, y = power_law_teacher(rng)
    Ds = np.array([50, 100, 200, 400, 800])
    measured = kernels.krr_learning_curve(X @ X.T, y, Ds, n_test=600, ridge=1e-4, seeds=16).test_mse.mean("seed")
    theory = kernels.krr_risk(lam, v, Ds, ridge=1e-4)
    np.testing.assert_allclose(measured.values, theory, rtol=0.05)


def test_random_feature_theory_matches_measured_regression_over_the_grid(rng):
    lam, v, X, y = power_law_teacher(rng)
    Ds = np.array([50, 100, 200, 400, 800])
    Ps = np.array([50, 100, 200, 400, 800])
    measured = kernels.rf_learning_curve(lambda k: kernels.random_projection_features(X, 800, key=k), y, Ds, Ps,
                                         n_test=600, ridge=1e-3, seeds=16)
    theory = kernels.rf_theory(lam, v, Ds, Ps, ridge=1e-3).test_mse.transpose("P", "D")
    np.testing.assert_allclose(measured.test_mse.mean("seed").values, theory.values, rtol=0.10)


@pytest.mark.slow  # over 20 s on 2 cores: kept out of the default run
def test_theory_on_a_real_kernel_predicts_held_out_digits():
    from sklearn.datasets import load_digits

    X, labels = load_digits(return_X_y=True)
    X = X / 16.0 - (X / 16.0).mean(0)
    X /= np.sqrt((X**2).sum(1).mean())
    Y = np.eye(10)[labels] - 0.1
    K = kernels.kernel_matrix(kernels.mlp(2), X, kind="ntk")
    s = kernels.spectrum(K, y=Y)  # the empirical eigendecomposition over all 1797 digits
    Ds = np.array([50, 100, 200, 400, 800])
    measured = kernels.krr_learning_curve(K, Y, Ds, n_test=500, ridge=1e-2, seeds=10).test_mse.mean("seed")
    theory = kernels.krr_theory(s.eigenvalues, s.coefficients, Ds, ridge=1e-2, population_size=K.shape[0])
    np.testing.assert_allclose(measured.values, theory.heldout_mse.values, rtol=0.15)


def test_infinite_features_recover_kernel_ridge_regression():
    lam = np.arange(1, 3001) ** -1.4
    v = np.sqrt(lam)
    n = np.array([30, 300, 1000])
    np.testing.assert_allclose(kernels.rf_risk(lam, v, n, 1e9, ridge=1e-3), kernels.krr_risk(lam, v, n, ridge=1e-3),
                               rtol=1e-5)


def test_duality_data_and_model_exponents_equal_the_spectral_exponent():
    alpha = 0.4
    lam = np.arange(1, 1_000_001) ** -(1 + alpha)
    v = np.sqrt(lam)
    # Sizes far below the truncation N = 1e6: the missing tail would steepen the curves by
    # a relative (n/N)^alpha.
    sizes = np.geomspace(20, 600, 8)
    L_D = kernels.rf_risk(lam, v, sizes, 1e9, ridge=1e-8)  # data scaling, model effectively infinite
    L_P = kernels.rf_risk(lam, v, 1e9, sizes, ridge=1e-8)  # model scaling, data effectively infinite
    slope_D = -np.polyfit(np.log(sizes), np.log(L_D), 1)[0]
    slope_P = -np.polyfit(np.log(sizes), np.log(L_P), 1)[0]
    assert slope_D == pytest.approx(alpha, abs=0.02)
    assert slope_P == pytest.approx(alpha, abs=0.02)
    # With v_i^2 = lambda_i the ridgeless duality is exact: L(D) at P = inf equals L(P) at D = inf.
    np.testing.assert_allclose(L_D, L_P, rtol=1e-6)


def test_ridgeless_random_features_peak_at_the_interpolation_threshold():
    lam = np.arange(1, 5001) ** -1.5
    v = np.sqrt(lam)
    n = np.array([100, 180, 199, 200, 201, 220, 400])
    risk = kernels.rf_risk(lam, v, n, 200)
    assert np.isinf(risk[3])
    assert risk[2] > risk[1] > risk[0] and risk[4] > risk[5] > risk[6]


def test_noise_sets_the_floor_and_ridge_sets_train_error():
    lam = np.arange(1, 2001) ** -1.5
    v = np.sqrt(lam)
    big = kernels.krr_theory(lam, v, [1e6], ridge=1e-2, noise=0.05)
    assert float(big.test_mse[0]) == pytest.approx(0.05, rel=0.02)
    ridgeless = kernels.krr_theory(lam, v, [100], noise=0.05)
    assert float(ridgeless.train_mse[0]) == 0.0


def test_kare_tracks_the_measured_test_error_and_picks_the_ridge(rng):
    lam, v, X, y = power_law_teacher(rng, n_pool=900)
    y = y + np.sqrt(0.2 * y.var()) * rng.standard_normal(y.size)  # noisy labels: an optimal ridge exists
    tr, te = slice(0, 400), slice(400, 900)
    K = X @ X.T
    ridges = np.geomspace(1e-5, 10, 7)
    est = kernels.kare(K[tr, tr], y[tr], ridges)
    measured = []
    for r in ridges:
        coef = np.linalg.solve(K[tr, tr] + r * np.eye(400), y[tr])
        measured.append(np.mean((K[te, tr] @ coef - y[te]) ** 2))
    np.testing.assert_allclose(est, measured, rtol=0.2)  # measured: within 15% at seed 20210205
    assert np.argmin(est) == np.argmin(measured) == 4


def test_theory_input_errors():
    lam = np.arange(1, 11) ** -1.0
    with pytest.raises(ValueError, match=r"eigenvalues must be finite and >= 0; got eigenvalues\[0\] = -1"):
        kernels.krr_risk(-lam, lam, 5)
    with pytest.raises(ValueError, match="first axis must match"):
        kernels.krr_risk(lam, lam[:5], 5)
    with pytest.raises(ValueError, match="n must be finite and > 0"):
        kernels.krr_risk(lam, lam, [0, 5])
    with pytest.raises(ValueError, match="ridge must be finite and >= 0"):
        kernels.rf_risk(lam, lam, 5, 5, ridge=-1.0)
    with pytest.raises(ValueError, match="population_size"):
        kernels.krr_theory(lam, lam, [5, 20], population_size=10)


def test_rf_ridge_grid_floor_is_the_best_linear_risk(rng):
    # jointly Gaussian (features, target) with a known covariance: the floor for the first p
    # features is s_yy - s_fy^T S_ff^-1 s_fy (solved here per p, independently of the
    # nested-Cholesky prefix sums), and no fitted predictor's exact risk goes below it
    n_feat = 40
    A = rng.standard_normal((n_feat + 1, n_feat + 1))
    cov = A @ A.T / (n_feat + 1) + 0.1 * np.eye(n_feat + 1)
    Z = rng.multivariate_normal(np.zeros(n_feat + 1), cov, size=600)
    F, y = Z[:, :n_feat], Z[:, -1]
    P, D = [5, 20, 40], [60, 200, 500]
    out = kernels.rf_ridge_grid(F[:500], y[:500], F[500:], y[500:], D, P, population_covariance=cov)
    reference = [cov[-1, -1] - cov[:p, -1] @ np.linalg.solve(cov[:p, :p], cov[:p, -1]) for p in P]
    np.testing.assert_allclose(out["floor_mse"], reference, rtol=1e-10)
    assert np.all(np.diff(out["floor_mse"]) <= 0)  # more features, a lower floor
    assert np.all(out["test_mse"] >= out["floor_mse"][:, None] * (1 - 1e-12))


def test_ridgeless_noiseless_krr_with_as_many_samples_as_modes_has_zero_risk():
    lam = np.arange(1, 41) ** -1.5
    v = np.arange(1, 41) ** -1.0
    # n >= number of modes, ridge 0, no noise: every mode is learned exactly (not NaN)
    np.testing.assert_array_equal(kernels.krr_risk(lam, v, [40, 60]), [0.0, 0.0])
    # with noise the variance diverges at n = modes (interpolation), and is finite beyond
    risk = kernels.krr_risk(lam, v, [40, 80], noise=0.1)
    assert risk[0] == np.inf and np.isfinite(risk[1]) and risk[1] > 0
    # rf theory: as many features and samples as modes, nothing to learn -> 0
    assert kernels.rf_risk(lam, v, 50, 60) == 0.0


@pytest.mark.parametrize("bad", [-1e-3, np.nan, np.inf, "0.1", [0.1, 0.2]])
def test_every_function_taking_a_ridge_rejects_bad_ridges(bad, rng):
    lam, v = np.arange(1, 21) ** -1.5, np.ones(20) / 5
    F = rng.standard_normal((30, 8))
    K = F @ F.T / 8
    calls = [
        lambda: kernels.krr_risk(lam, v, 10, ridge=bad),
        lambda: kernels.krr_theory(lam, v, 10, ridge=bad),
        lambda: kernels.rf_risk(lam, v, 10, 5, ridge=bad),
        lambda: kernels.rf_theory(lam, v, 10, 5, ridge=bad),
        lambda: kernels.rf_ridge_grid(F[:20], F[:20, 0], F[20:], F[20:, 0], [10], [4], ridge=bad),
        lambda: kernels.kernel_ridge_nested(K[:20, :20], K[20:, :20], F[:20, 0], F[20:, 0], [10], ridge=bad),
        lambda: kernels.krr_learning_curve(K, F[:, 0], [5, 10], n_test=10, ridge=bad, seeds=1),
        lambda: kernels.rf_learning_curve(F, F[:, 0], [5, 10], [4], n_test=10, ridge=bad, seeds=1),
    ]
    if not isinstance(bad, list):  # kare takes an array of ridges
        calls.append(lambda: kernels.kare(K, F[:, 0], bad))
    for call in calls:
        with pytest.raises(ValueError, match="ridge must be finite and >= 0"):
            call()
