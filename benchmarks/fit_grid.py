"""Benchmark: the Chinchilla fitting recipe, scaling.fit against a scipy.optimize loop.

Recipe (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024): Huber loss with
delta = 1e-3 on log residuals, summed over points, L-BFGS from a grid of several thousand
starts, best optimum kept. Data: 250 synthetic (N, D, loss) points from
L = 1.69 + 406.4 N^-0.34 + 410.7 D^-0.28 with 2% multiplicative noise and 5% outliers.

scipy peer: scipy.optimize.minimize(method="L-BFGS-B") with an analytic gradient on the
log-sum-exp parametrisation log L = LSE(e, a - alpha log N, b - beta log D), from every
point of the 4,500-start grid of Hoffmann et al.
ours: scaling.fit(..., objective="log_huber"); the linear parameters E, A, B are solved
by variable projection, so a grid over (alpha, beta) alone of the same size is scored
and the best starts refined (default: damped Newton; --optimizer lbfgs: optax L-BFGS).

Prints both best objectives, their relative difference (target <= 1e-6) and the speed
ratio (target >= 30x). Run: uv run python benchmarks/fit_grid.py [--scipy-starts 4500]
"""

import argparse
import itertools
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

import scaling

DELTA = 1e-3


def make_data(seed=0, n=250):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7, 10, n)
    D = 10 ** rng.uniform(9, 12, n)
    L = 1.69 + 406.4 * N**-0.34 + 410.7 * D**-0.28
    L = L * np.exp(0.02 * rng.standard_normal(n))
    out = rng.random(n) < 0.05
    L[out] *= np.exp(rng.uniform(0.05, 0.2, out.sum()))
    return N, D, L


def huber(r):
    a = np.abs(r)
    return np.where(a <= DELTA, 0.5 * r**2, DELTA * (a - 0.5 * DELTA))


def scipy_recipe(N, D, L, n_starts):
    lN, lD, lL = np.log(N), np.log(D), np.log(L)

    def f(p):
        e, a, b, al, be = p
        terms = np.stack([np.full_like(lN, e), a - al * lN, b - be * lD])
        r = logsumexp(terms, axis=0) - lL
        w = softmax(terms, axis=0)
        dr = np.clip(r, -DELTA, DELTA)  # huber'(r)
        grad = np.array([np.sum(dr * w[0]), np.sum(dr * w[1]), np.sum(dr * w[2]),
                         np.sum(dr * w[1] * -lN), np.sum(dr * w[2] * -lD)])
        return np.sum(huber(r)), grad

    grid = list(itertools.product(np.arange(-1, 1.6, 0.5), np.arange(0, 30, 5), np.arange(0, 30, 5),
                                  np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5)))
    if n_starts < len(grid):
        idx = np.random.default_rng(1).choice(len(grid), n_starts, replace=False)
        grid = [grid[i] for i in idx]
    best = (np.inf, None)
    for p0 in grid:
        res = minimize(f, np.array(p0, float), jac=True, method="L-BFGS-B")
        if res.fun < best[0]:
            best = (res.fun, res.x)
    return best, len(grid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scipy-starts", type=int, default=4500, help="scipy starts (a random subset of the grid)")
    ap.add_argument("--grid", type=int, default=64, help="ours: grid points per exponent (grid**2 starts)")
    ap.add_argument("--optimizer", default="lm", choices=["lm", "lbfgs"])
    args = ap.parse_args()
    N, D, L = make_data()
    g = np.linspace(0.02, 2.0, args.grid)
    kw = dict(objective="log_huber", delta=DELTA, starts={"alpha": g, "beta": g}, optimizer=args.optimizer)

    t0 = time.perf_counter()
    ours = scaling.fit("chinchilla", {"N": N, "D": D}, L, **kw)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = scaling.fit("chinchilla", {"N": N, "D": D}, L, **kw)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    (best_sp, x_sp), n_sp = scipy_recipe(N, D, L, args.scipy_starts)
    t_sp = time.perf_counter() - t0
    t_sp_full = t_sp * 4500 / n_sp

    rel = (float(ours.objective) - best_sp) / best_sp
    print(f"data: 250 points; ours {args.grid**2} starts over (alpha, beta), optimizer={args.optimizer}; "
          f"scipy {n_sp} of the 4500-start Hoffmann grid")
    print(f"best objective: ours {float(ours.objective):.12e}  scipy {best_sp:.12e}  relative diff {rel:+.2e} "
          f"(target |diff| <= 1e-6 or ours lower)")
    print(f"ours:  alpha={float(ours.params['alpha']):.6f} beta={float(ours.params['beta']):.6f} "
          f"E={float(ours.params['E']):.6f} status={ours.status}")
    print(f"scipy: alpha={x_sp[3]:.6f} beta={x_sp[4]:.6f} E={np.exp(x_sp[0]):.6f}")
    print(f"time: ours {t_ours:.3f} s warm, {t_first:.3f} s with compile; scipy {t_sp:.2f} s"
          + ("" if n_sp == 4500 else f" ({t_sp_full:.1f} s scaled to 4500 starts)"))
    print(f"ratio (excluding compile): {t_sp_full / t_ours:6.1f}x   target >= 30x")
    print(f"ratio (including compile): {t_sp_full / t_first:6.1f}x")


if __name__ == "__main__":
    main()
