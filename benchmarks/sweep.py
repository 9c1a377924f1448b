"""Benchmark: sweeps through experiments.run against the per-cell loops they replace, same run.

1. Random-feature ridge on digits (ReLU features, ridge 1e-3), a P x D x seed grid.
   Ours: ``experiments.run`` (per seed one feature draw; Grams accumulated once over
   features and once over rows; one Cholesky factor per P serves every smaller D; units one
   per core on threads, BLAS/LAPACK called without the GIL).
   Peer: a naive per-cell numpy loop that prepares the data and keys once (it does not
   rebuild them per cell), then for every cell draws that cell's features and makes one
   ``np.linalg.solve`` (primal or dual, whichever is smaller). Both are timed cold and
   warm; the test losses must agree (same features, same ridge convention). Two bounds on
   the ratio follow: the grid's largest cell of each seed timed alone on both sides, and
   the arithmetic floor of our plan (its multiply-adds at this machine's measured
   single-core BLAS rates, nothing else, every core busy).
2. A trained-MLP width x D x seed sweep on digits. Ours: ``experiments.run`` (one device
   program for the whole grid: widths padded to the widest and masked, D padded with masks,
   seeds, D and widths vmapped, the training loop and early stopping on the device). Peer: the old per-cell code (the training loop
   of the previous release: one program per (D, width) cell, vmapped over seeds, checked
   from Python every ``eval_every`` steps), copied below. Reports steps per second.

Run: uv run python benchmarks/sweep.py [--rf-only | --mlp-only] [--dmax 1000 --pmax 1000]
"""

import argparse
import os
import time

# No persistent compilation cache: both sides compile every program in this run, so the MLP
# numbers include compilation (and do not depend on what earlier runs left in the cache).
os.environ.setdefault("NST_JAX_CACHE", "0")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scaling
import scipy.linalg
import threadpoolctl

import experiments


def rf_spec(D, P, seeds, engine="auto"):
    return experiments.SweepSpec(task={"kind": "digits"},
                                 model={"kind": "rf_ridge", "ridge": 1e-3, "features": "relu", "engine": engine},
                                 grid={"D": D, "P": P, "seed": seeds}, n_test=500, name="rf sweep benchmark")


def naive_rf_loop(spec):
    """The peer: data and keys prepared once per seed, then per cell a fresh feature draw
    and one np.linalg.solve."""
    D, P, seeds = spec.grid["D"], spec.grid["P"], spec.grid["seed"]
    ridge = spec.model["ridge"]
    prepared = []
    for s in seeds:  # not rebuilt per cell
        key = experiments.unit_key(spec, {"seed": s}, s)
        k_data, k_feat = jax.random.split(key)
        data = spec.task_kind.data(spec, {"seed": s}, k_data, D[-1])
        X_tr = data.x_pool.reshape(D[-1], -1).astype(np.float64)
        X_te = data.x_test.reshape(data.x_test.shape[0], -1).astype(np.float64)
        bits = np.asarray(jax.random.bits(k_feat, (4,), dtype=jnp.uint32), dtype=np.uint64)
        prepared.append((X_tr, X_te, data.y_pool, data.y_test, [int(b) for b in bits]))
    out = np.empty((len(D), len(P), len(seeds)))
    for k, (X_tr, X_te, y_tr, y_te, seed_bits) in enumerate(prepared):
        for j, p in enumerate(P):
            for i, d in enumerate(D):
                # this cell's features: the first p columns of the seed's Gaussian draw
                W = np.random.default_rng(seed_bits).standard_normal((X_tr.shape[1], P[-1]))[:, :p]
                W /= np.sqrt(X_tr.shape[1])
                F = np.sqrt(2.0) * np.maximum(X_tr[:d] @ W, 0)
                F_te = np.sqrt(2.0) * np.maximum(X_te @ W, 0)
                if p <= d:
                    theta = np.linalg.solve(F.T @ F + ridge * p * np.eye(p), F.T @ y_tr[:d])
                else:
                    theta = F.T @ np.linalg.solve(F @ F.T / p + ridge * np.eye(d), y_tr[:d]) / p
                out[i, j, k] = np.mean(np.sum((F_te @ theta - y_te) ** 2, axis=1))
    return out


def bench_rf(dmax, pmax):
    D = np.unique(np.geomspace(20, dmax, 9).astype(int)).tolist()
    P = np.unique(np.geomspace(16, pmax, 9).astype(int)).tolist()
    spec = rf_spec(D, P, [0, 1, 2])
    t0 = time.perf_counter()
    ds = experiments.run(spec, progress=False)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = experiments.run(spec, progress=False)
    t_ours = time.perf_counter() - t0
    # the peer's first call is slower too (BLAS threads starting, fresh memory): time it twice
    t0 = time.perf_counter()
    ref = naive_rf_loop(spec)
    t_loop_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = naive_rf_loop(spec)
    t_loop = time.perf_counter() - t0
    rel = float(np.max(np.abs(ds.test_loss.values / ref - 1)))
    # The ceiling this grid puts on the ratio: its largest cell (D_max, P_max) of every seed,
    # alone. No method that solves those cells no faster than we do can beat the loop by more
    # than t_loop / (our time on them): the rest of the grid is not free.
    corner = rf_spec([D[-1]], [P[-1]], [0, 1, 2])
    experiments.run(corner, progress=False)
    t_corner_ours = min(_timed(lambda: experiments.run(corner, progress=False)) for _ in range(3))
    t_corner_loop = min(_timed(lambda: naive_rf_loop(corner)) for _ in range(3))
    floor, rates = arithmetic_floor(D, P, n_seeds=3, n_in=64, n_test=500, c=10, cores=scaling.usable_cpus())
    n = spec.n_cells
    engine = experiments.rf_engine("auto", 1e-3)
    print(f"RF ridge, digits: {len(D)} D (20..{dmax}) x {len(P)} P (16..{pmax}) x 3 seeds = {n} cells; "
          f"engine {engine!r} (jax backend {jax.default_backend()!r})")
    print(f"  experiments.run        {t_ours:.3f} s warm ({n / t_ours:.0f} cells/s), {t_cold:.3f} s first call")
    print(f"  naive per-cell loop    {t_loop:.3f} s warm ({n / t_loop:.0f} cells/s), {t_loop_cold:.3f} s first call")
    print(f"  ratio {t_loop / t_ours:.1f}x warm vs warm, {t_loop_cold / t_cold:.1f}x first call vs first call "
          f"(target >= 10x); max relative difference of test losses {rel:.1e}")
    print(f"  the largest cell (D={D[-1]}, P={P[-1]}) of each seed alone: naive loop {t_corner_loop:.3f} s "
          f"({100 * t_corner_loop / t_loop:.0f}% of its whole grid), experiments.run {t_corner_ours:.3f} s: "
          f"ceiling on the ratio for this grid {t_loop / t_corner_ours:.1f}x")
    if engine == "device":  # on an accelerator: the host engine on this machine's cores too
        host = rf_spec(D, P, [0, 1, 2], engine="host")
        experiments.run(host, progress=False)
        t_host = min(_timed(lambda: experiments.run(host, progress=False)) for _ in range(2))
        print(f"  host engine (engine='host', {scaling.usable_cpus()} cores) {t_host:.3f} s warm: "
              f"{t_loop / t_host:.1f}x the loop; the device engine is {t_host / t_ours:.1f}x the host engine")
    print(f"  arithmetic floor of experiments.run's plan: {1e3 * floor:.0f} ms (its multiply-adds at this machine's "
          f"single-core BLAS rates, {rates}, no other cost, every core busy): ratio at most {t_loop / floor:.1f}x")
    return t_loop / t_ours


def arithmetic_floor(D, P, *, n_seeds, n_in, n_test, c, cores) -> tuple[float, str]:
    """The least time ``experiments.run``'s random-feature plan could take: its multiply-adds
    (features; the dual kernel grown over features and the primal Gram over rows; one factor
    of the largest d < p per p; one factor per cell d >= p; the triangular solves; the dual
    cells' weights; the test predictions) at this machine's measured single-core BLAS rates
    for matrices the size of the plan's largest (faster than on its smaller ones, so the floor
    is low), with no Python, copies or memory traffic, and the seeds spread perfectly over the
    cores."""
    D, P = np.asarray(D), np.asarray(P)
    m = np.array([D[D < p].max() if np.any(D < p) else 0 for p in P], dtype=float)
    q = float(P[P <= D[-1]].max()) if np.any(P <= D[-1]) else 0.0
    primal = [(d, p) for d in D for p in P if d >= p]
    macs = {  # kind of call -> multiply-adds of one seed
        "gemm": (D[-1] + n_test) * n_in * P[-1] + sum(d * p * c for d in D for p in P if d < p)
        + sum(n_test * p * len(D) * c for p in P),
        "syrk": m.max() ** 2 * P[-1] / 2 + D[-1] * q ** 2 / 2,
        "potrf": float(np.sum(m ** 3) / 6) + sum(p ** 3 / 6 for _, p in primal),
        "trsm": sum(x * x * c * (1 + np.sum(D < p)) / 2 for x, p in zip(m, P)) + sum(p * p * c for _, p in primal),
    }
    n = max(1, int(max(m.max(), q)))  # the plan's largest Gram, kernel or factor
    rng = np.random.default_rng(0)
    A = np.asfortranarray(rng.standard_normal((n, n)))
    S = np.asfortranarray(A.T @ A + n * np.eye(n))
    L = np.asfortranarray(np.linalg.cholesky(S))
    R = np.asfortranarray(rng.standard_normal((n, 90)))
    calls = {"gemm": (lambda: A @ A, n ** 3),
             "syrk": (lambda: scipy.linalg.blas.dsyrk(1.0, A, trans=1, lower=1), n ** 3 / 2),
             "potrf": (lambda: scipy.linalg.lapack.dpotrf(S, lower=1), n ** 3 / 6),
             "trsm": (lambda: scipy.linalg.blas.dtrsm(1.0, L, R, lower=1), n * n * 90 / 2)}
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        rate = {k: work / min(_timed(fn) for _ in range(5)) for k, (fn, work) in calls.items()}
    seconds = sum(macs[k] / rate[k] for k in macs) * n_seeds / min(cores, n_seeds)
    return seconds, ", ".join(f"{k} {rate[k] / 1e9:.0f}" for k in calls) + " GMAC/s"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- the old per-cell training code


def old_train(net, x, y, x_val, y_val, *, keys, config):
    """The previous release's ``experiments.train``: a jitted chunk of ``eval_every`` steps
    per call, early stopping decided in Python after every chunk."""
    S, D = x.shape[0], x.shape[1]
    opt = config.optax_optimizer()
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    params = jax.vmap(lambda k: net.init(k, (1,) + x.shape[2:]))(init_keys)
    opt_state = jax.vmap(opt.init)(params)
    bs = D if config.batch_size is None or config.batch_size >= D else int(config.batch_size)

    def loss_fn(p, xb, yb):
        return jnp.mean(jnp.sum((net.apply(p, xb) - yb) ** 2, axis=-1))

    def one_seed_chunk(p, s, k, xs, ys):
        def body(carry, _):
            p, s, k = carry
            k, sub = jax.random.split(k)
            idx = jax.random.choice(sub, D, (bs,), replace=False) if bs < D else jnp.arange(D)
            g = jax.grad(loss_fn)(p, xs[idx], ys[idx])
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s, k), None

        (p, s, k), _ = jax.lax.scan(body, (p, s, k), None, length=config.eval_every)
        return p, s, k

    chunk = jax.jit(jax.vmap(one_seed_chunk))
    evaluate = jax.jit(jax.vmap(loss_fn, in_axes=(0, None, None)))
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    best, best_val = params, np.full(S, np.inf)
    waited, steps, active = np.zeros(S, int), np.zeros(S, int), np.ones(S, bool)
    for _ in range(max(1, config.steps // config.eval_every)):
        params, opt_state, data_keys = chunk(params, opt_state, data_keys, x, y)
        steps[active] += config.eval_every
        val = np.asarray(evaluate(params, x_val, y_val))
        improved = active & (val < best_val)
        best = jax.tree_util.tree_map(lambda b, p: jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b),
                                      best, params)
        best_val = np.where(improved, val, best_val)
        waited = np.where(improved, 0, waited + active)
        if config.patience is not None:
            active &= waited < config.patience
            if not active.any():
                break
    return best, steps


def bench_mlp():
    D, widths, seeds = [32, 64, 128], [16, 32, 64], [0, 1, 2]
    train = {"steps": 400, "eval_every": 50, "patience": 3, "learning_rate": 3e-3, "batch_size": 32}
    spec = experiments.SweepSpec(task={"kind": "digits"}, model={"kind": "mlp", "depth": 2},
                                 grid={"D": D, "width": widths, "seed": seeds}, n_test=300, train=train,
                                 name="mlp sweep benchmark")
    cfg = experiments.TrainConfig(**train)
    t0 = time.perf_counter()
    ds = experiments.run(spec, progress=False)
    t_ours = time.perf_counter() - t0
    steps_ours = float(ds.steps.sum())
    # the old code: one program per (D, width) cell, seeds vmapped, same data
    t0 = time.perf_counter()
    steps_old = 0
    for d in D:
        for w in widths:
            net = experiments.network("mlp", width=w, depth=2, out_dim=10)
            cells = [{"D": d, "width": w, "seed": s} for s in seeds]
            datas = [spec.task_kind.data(spec, c, experiments.unit_key(spec, c, c["seed"]), d, n_val=200)
                     for c in cells]
            x = np.stack([np.asarray(t.x_pool, np.float32) for t in datas])
            y = np.stack([np.asarray(t.y_pool, np.float32) for t in datas])
            keys = jnp.stack([jax.random.fold_in(experiments.unit_key(spec, c, c["seed"]), 7) for c in cells])
            _, steps = old_train(net, x, y, np.asarray(datas[0].x_val, np.float32),
                                 np.asarray(datas[0].y_val, np.float32), keys=keys, config=cfg)
            steps_old += int(steps.sum())
    t_old = time.perf_counter() - t0
    n = spec.n_cells
    print(f"MLP sweep, digits: {len(D)} D x {len(widths)} widths x {len(seeds)} seeds = {n} networks, "
          f"<= {cfg.steps} steps, batch {cfg.batch_size}, early stopping (patience {cfg.patience})")
    print(f"  experiments.run        {t_ours:.2f} s ({n / t_ours:.2f} cells/s), {steps_ours / t_ours:.0f} network-steps/s "
          f"(test loss {float(ds.test_loss.mean()):.3f}, all finite: {bool(np.isfinite(ds.test_loss).all())})")
    print(f"  old per-cell code      {t_old:.2f} s ({n / t_old:.2f} cells/s), {steps_old / t_old:.0f} network-steps/s")
    print(f"  ratio {t_old / t_ours:.1f}x in wall time, {(steps_ours / t_ours) / (steps_old / t_old):.1f}x in steps/s "
          "(both include compilation)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rf-only", action="store_true")
    ap.add_argument("--mlp-only", action="store_true")
    ap.add_argument("--dmax", type=int, default=1000)
    ap.add_argument("--pmax", type=int, default=1000)
    args = ap.parse_args()
    print(f"devices: {jax.devices()}")
    if not args.mlp_only:
        bench_rf(args.dmax, args.pmax)
    if not args.rf_only:
        bench_mlp()


if __name__ == "__main__":
    main()
