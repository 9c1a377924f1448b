"""Benchmark: predicting a 100-point learning curve from a spectrum vs measuring it by KRR.

Teacher-student problem with a power-law spectrum (2,000 Gaussian features,
lambda_i ~ i^-1.5); curve over D = 10 ... 2,000 (100 log-spaced sizes). Measured: kernel
ridge regression with nested training sets (one Cholesky factor per seed), 4 seeds,
500 test points. Theory: kernels.krr_risk on the spectrum. Prints both times, the ratio
and the median relative difference between the two curves.

Run: uv run python benchmarks/theory_vs_measured.py
"""

import time

import numpy as np

import kernels


def main():
    rng = np.random.default_rng(0)
    n_features, n_pool = 2000, 2500
    lam = np.arange(1, n_features + 1) ** -1.5
    lam /= lam.sum()
    X = rng.standard_normal((n_pool, n_features)) * np.sqrt(lam)
    y = X.sum(axis=1)
    Ds = np.unique(np.geomspace(10, 2000, 100).astype(int))
    K = X @ X.T
    t0 = time.perf_counter()
    kernels.krr_risk(lam, np.sqrt(lam), Ds, ridge=1e-4)  # compile once for this shape
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    theory = kernels.krr_risk(lam, np.sqrt(lam), Ds, ridge=1e-4)
    t_theory = time.perf_counter() - t0
    t0 = time.perf_counter()
    measured = kernels.krr_learning_curve(K, y, Ds, n_test=500, ridge=1e-4, seeds=4).test_mse.mean("seed").values
    t_meas = time.perf_counter() - t0
    print(f"{Ds.size}-point learning curve, D = {Ds[0]}..{Ds[-1]}")
    print(f"theory: {t_theory * 1e3:.1f} ms (+{t_compile:.2f} s compile once);  measured KRR (4 seeds): {t_meas:.2f} s")
    print(f"ratio measured / theory: {t_meas / t_theory:.0f}x")
    print(f"median |measured / theory - 1| = {np.median(np.abs(measured / theory - 1)):.3f}")


if __name__ == "__main__":
    main()
