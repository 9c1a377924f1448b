"""Benchmark: analytic NTK of a 3-hidden-layer ReLU network vs the bare matmul X @ X.T.

n = 8,000 inputs of dimension 3,072 (CIFAR-sized). The first layer of the NTK recursion is
this very matmul, so ``X @ X.T`` (numpy/BLAS, same dtype) is the floor. Prints both times,
their ratio (target <= 2x; neural-tangents 0.6.5 measured 1.99x) and the peak memory of the process.

Run: uv run python benchmarks/kernel_throughput.py [--n 8000] [--dtype float32]
"""

import argparse
import resource
import time

import numpy as np

import kernels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--d", type=int, default=3072)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = ap.parse_args()
    dtype = np.dtype(args.dtype)
    X = (np.random.default_rng(0).standard_normal((args.n, args.d)) / np.sqrt(args.d)).astype(dtype)
    arch = kernels.mlp(3)
    t0 = time.perf_counter()
    G = X @ X.T
    t_mm = time.perf_counter() - t0
    del G
    t0 = time.perf_counter()
    kernels.kernel_matrix(arch, X[: args.batch_size], kind="ntk", batch_size=args.batch_size, dtype=dtype)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    K = kernels.kernel_matrix(arch, X, kind="ntk", batch_size=args.batch_size, dtype=dtype)
    t_ntk = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"n = {args.n}, d = {args.d}, {args.dtype}, tiles of {args.batch_size}")
    print(f"X @ X.T: {t_mm:.2f} s;  analytic NTK (3 hidden ReLU layers): {t_ntk:.2f} s "
          f"(+{t_compile:.2f} s first call on one tile)")
    print(f"ratio NTK / matmul: {t_ntk / t_mm:.2f}x   target <= 2x (neural-tangents 0.6.5: 1.99x)")
    print(f"peak memory (max RSS): {peak:.2f} GB; the matrix itself: {K.nbytes / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
