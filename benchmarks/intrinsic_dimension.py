"""Benchmark: TwoNN intrinsic dimension of 20,000 points in 784 dimensions, ours vs scikit-dimension.

Points on a curved 12-dimensional manifold (a random smooth embedding of a 12-d Gaussian
cloud) in 784 dimensions, MNIST-sized. Ours: regimes.intrinsic_dimension (batched exact
nearest neighbours in JAX, float32 candidate search + float64 distances, one scale).
Peer: skdim.id.TwoNN().fit (scikit-learn's chunked pairwise distances). Both are
matmul-bound on a CPU; the real win is on a GPU. Prints both times, the ratio (target
>= 2x) and both estimates (target: equal within 1%).

Run: uv run python benchmarks/intrinsic_dimension.py [--n 20000] [--dim 784]
"""

import argparse
import time
import warnings

import numpy as np

import regimes


def manifold(n, dim, d=12, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    W1 = rng.standard_normal((d, 64)) / np.sqrt(d)
    W2 = rng.standard_normal((64, dim)) / 8.0
    return np.tanh(z @ W1) @ W2 + 0.1 * (z @ rng.standard_normal((d, dim)) / np.sqrt(d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=784)
    args = ap.parse_args()
    X = manifold(args.n, args.dim).astype(np.float32)
    regimes.intrinsic_dimension(X[:2048], scales=[1.0])  # compile the nearest-neighbour kernel
    t0 = time.perf_counter()
    ours = regimes.intrinsic_dimension(X, scales=[1.0])
    t_ours = time.perf_counter() - t0
    import skdim

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = skdim.id.TwoNN().fit(X).dimension_
    t_ref = time.perf_counter() - t0
    print(f"{args.n} points in {args.dim} dimensions (a curved 12-d manifold)")
    print(f"ours (regimes.intrinsic_dimension, twonn): {float(ours):.4f} in {t_ours:.2f} s")
    print(f"scikit-dimension TwoNN:                      {ref:.4f} in {t_ref:.2f} s")
    print(f"ratio: {t_ref / t_ours:.1f}x faster   target >= 2x")
    print(f"relative difference of the estimates: {abs(float(ours) / ref - 1):.2e}   target <= 1e-2")


if __name__ == "__main__":
    main()
