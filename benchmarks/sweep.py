"""Benchmark: a 12 (P) x 12 (D) x 4 (seed) random-feature ridge sweep, batched vs a per-cell loop.

Task: scikit-learn digits, random ReLU features, ridge 1e-3, D = 20..1000, P = 16..2048,
500 test points. Ours: experiments.run (one unit per seed: features drawn once, Gram
matrices grown incrementally over P, one Cholesky factor per P shared by every D).
Peer: a plain loop over the 576 cells, each drawing the same features and solving its own
ridge problem with scipy (primal or dual, whichever is smaller). Checks the two agree and
prints cells per second and the ratio (target >= 10x).

Run: uv run python benchmarks/sweep.py
"""

import time

import jax
import numpy as np
import scipy.linalg

import experiments
from experiments._teacher_student import numpy_generator
from experiments._units import unit_data, unit_key

D = np.unique(np.geomspace(20, 1000, 12).astype(int)).tolist()
P = np.unique(np.geomspace(16, 2048, 12).astype(int)).tolist()
SEEDS = [0, 1, 2, 3]
RIDGE = 1e-3


def spec():
    return experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "rf_ridge", "ridge": RIDGE, "features": "relu"},
                                 grid={"D": D, "P": P, "seed": SEEDS}, n_test=500, name="rf sweep benchmark")


def per_cell_loop(s):
    out = np.empty((len(D), len(P), len(SEEDS)))
    for k, seed in enumerate(SEEDS):
        for j, p in enumerate(P):
            for i, d in enumerate(D):
                # Everything per cell: data, features, solve (what a naive sweep script does).
                key = unit_key(s, {"seed": seed}, seed)
                k_data, k_feat = jax.random.split(key)
                data = unit_data(s, {"seed": seed}, k_data, D[-1])
                X_tr = data.x_pool.reshape(D[-1], -1)[:d]
                X_te = data.x_test.reshape(data.x_test.shape[0], -1)
                W = numpy_generator(k_feat).standard_normal((X_tr.shape[1], P[-1]))[:, :p] / np.sqrt(X_tr.shape[1])
                F_tr = np.sqrt(2.0) * np.maximum(X_tr @ W, 0)
                F_te = np.sqrt(2.0) * np.maximum(X_te @ W, 0)
                y = data.y_pool[:d]
                if p <= d:  # primal: (F^T F + ridge P I) theta = F^T y
                    theta = scipy.linalg.solve(F_tr.T @ F_tr + RIDGE * p * np.eye(p), F_tr.T @ y, assume_a="pos")
                else:  # dual: (F F^T / P + ridge I) alpha = y
                    alpha = scipy.linalg.solve(F_tr @ F_tr.T / p + RIDGE * np.eye(d), y, assume_a="pos")
                    theta = F_tr.T @ alpha / p
                out[i, j, k] = np.mean(np.sum((F_te @ theta - data.y_test) ** 2, axis=1))
    return out


def main():
    s = spec()
    experiments.run(experiments.SweepSpec(task=s.task, model=s.model, grid={"D": D[:2], "P": P[:2], "seed": [0]},
                                          n_test=500), progress=False)  # warm caches (data set, jit)
    t0 = time.perf_counter()
    ds = experiments.run(s, progress=False)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = per_cell_loop(s)
    t_loop = time.perf_counter() - t0
    rel = np.max(np.abs(ds.test_loss.values / ref - 1))
    n = s.n_cells
    print(f"{len(P)} P x {len(D)} D x {len(SEEDS)} seeds = {n} cells (digits, ReLU random features, ridge {RIDGE})")
    print(f"batched sweep (experiments.run): {t_ours:.2f} s  ({n / t_ours:.1f} cells/s)")
    print(f"per-cell loop:                   {t_loop:.2f} s  ({n / t_loop:.1f} cells/s)")
    print(f"ratio: {t_loop / t_ours:.1f}x   target >= 10x;  max relative difference of test losses {rel:.1e}")


if __name__ == "__main__":
    main()
