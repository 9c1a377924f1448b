"""Benchmark: top-200 eigenvalues of an n = 8,000 NTK, top-k solver vs full float64 eigh.

The NTK of a 3-hidden-layer ReLU network on inputs with the paper's teacher-student
covariance (lambda_i ~ i^-1.5 over 64 dimensions). Peer: scipy.linalg.eigh of the full
matrix (LAPACK dsyevd, eigenvalues only). Ours: kernels.spectrum(K, 200,
method="randomized") at several settings, float64 and float32 products. Prints time, ratio
(target >= 10x) and max relative error of the top 200 (target <= 1e-3) for each.

Run: uv run python benchmarks/spectrum.py [--n 8000] [--input-exponent 1.5]
"""

import argparse
import time

import numpy as np
import scipy.linalg

import kernels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--input-exponent", type=float, default=1.5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    d = 64
    X = rng.standard_normal((args.n, d)) * np.sqrt(np.arange(1, d + 1) ** -args.input_exponent)
    X /= np.sqrt((X**2).sum(1).mean())
    K = kernels.kernel_matrix(kernels.mlp(3), X, kind="ntk", batch_size=1000)

    t0 = time.perf_counter()
    w = scipy.linalg.eigh(K, eigvals_only=True, driver="evd")
    t_eigh = time.perf_counter() - t0
    top = w[::-1][: args.k] / args.n
    alpha = kernels.spectral_exponent(top).alpha
    print(f"n = {args.n}, top {args.k}; NTK spectral exponent over the top {args.k}: alpha_K = {alpha:.3f}")
    print(f"full float64 eigh: {t_eigh:.2f} s")
    for n_iter, dtype in ((4, np.float64), (4, np.float32), (3, np.float32)):
        t0 = time.perf_counter()
        s = kernels.spectrum(K, args.k, method="randomized", n_iter=n_iter, product_dtype=dtype)
        t = time.perf_counter() - t0
        err = np.max(np.abs(s.eigenvalues / top - 1))
        ok = "meets both targets" if (t_eigh / t >= 10 and err <= 1e-3) else "misses a target"
        print(f"randomized n_iter={n_iter} products {np.dtype(dtype).name}: {t:.2f} s  ratio {t_eigh / t:5.1f}x  "
              f"max rel err {err:.1e}  ({ok}; targets >= 10x, <= 1e-3)")


if __name__ == "__main__":
    main()
