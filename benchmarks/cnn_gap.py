"""Benchmark: CNN-GAP NTK (convolutions, then global average pooling), native vs neural-tangents.

Times ``kernel_fn(x, x, "ntk")`` of ``cnn(depth, pool="global")`` on the same random images
with the toolkit's native layers and with neural-tangents 0.6.5 (jax 0.5.3) in its
reference environment (``reference/nt/run.sh`` builds it), each in a fresh subprocess, in
the same run. Reports seconds per kernel entry (warm: compile excluded, median of
``--repeats``), the compile time, and peak memory (max RSS) above the process's baseline
after imports, per kernel entry and in total. Both run in float64.

Run: uv run python benchmarks/cnn_gap.py [--n 64] [--size 8] [--depth 2] [--nt-python PATH]
(``--nt-python`` defaults to the reference environment's python; the neural-tangents row is
skipped with a message when that environment is absent.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_NT_ENV = Path(os.environ.get("NST_NT_ENV", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                     / "nst-nt-reference"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def worker(backend: str, inputs: str, depth: int, repeats: int) -> None:
    """Runs in a subprocess (the toolkit's env for "native", the reference env for "nt")."""
    import numpy as np

    if backend == "nt":
        import types

        bridge = types.ModuleType("neural_tangents.experimental")
        bridge.__path__ = []
        sys.modules[bridge.__name__] = bridge
        import warnings

        warnings.simplefilter("ignore")
        import jax

        jax.config.update("jax_enable_x64", True)
        from neural_tangents import stax

        layers = []
        for _ in range(depth):
            layers += [stax.Conv(128, (3, 3), padding="SAME", W_std=2**0.5, b_std=0.0), stax.Relu()]
        kernel_fn = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, W_std=1.0, b_std=0.0))[2]
        ctx = None
    else:
        import jax

        import kernels
        from scaling import enable_x64

        kernel_fn = kernels.cnn(depth, pool="global")[2]
        ctx = enable_x64()
        ctx.__enter__()
    x = np.load(inputs)
    fn = jax.jit(lambda a, b: kernel_fn(a, b, "ntk"))
    x = jax.numpy.asarray(x)
    base = _current_rss_mb()
    t0 = time.perf_counter()
    K = np.asarray(fn(x, x))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        K = np.asarray(jax.block_until_ready(fn(x, x)))
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"warm_s": times[len(times) // 2], "compile_s": first - times[len(times) // 2],
                      "peak_mb": _rss_mb(), "base_mb": base, "entries": int(K.size),
                      "checksum": float(np.sum(K)), "versions": f"jax {jax.__version__}"}))


def _run(python: str, backend: str, inputs: str, args) -> dict | None:
    cmd = [python, str(Path(__file__).resolve()), "--worker", backend, "--inputs", inputs, "--depth",
           str(args.depth), "--repeats", str(args.repeats)]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode != 0:
        print(f"{backend}: failed:\n{res.stderr[-2000:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="images (the kernel is n x n)")
    ap.add_argument("--size", type=int, default=8, help="image height = width")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nt-python", default=str(DEFAULT_NT_ENV / "bin" / "python"))
    ap.add_argument("--worker", choices=["native", "nt"], help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.inputs, args.depth, args.repeats)
        return
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        inputs = str(Path(tmp) / "x.npy")
        np.save(inputs, np.random.default_rng(0).standard_normal((args.n, args.size, args.size, 3)))
        print(f"CNN-GAP NTK: cnn({args.depth}, pool='global'), {args.n} images {args.size}x{args.size}x3, "
              f"float64, kernel_fn(x, x, 'ntk') under jit")
        native = _run(sys.executable, "native", inputs, args)
        nt = None
        if Path(args.nt_python).exists():
            nt = _run(args.nt_python, "nt", inputs, args)
        else:
            print(f"neural-tangents: skipped (no reference environment at {args.nt_python}; "
                  "build it with: sh reference/nt/run.sh /tmp/ref.npz)")
    rows = [("native", native), ("neural-tangents 0.6.5", nt)]
    for name, r in rows:
        if r is None:
            continue
        per = r["warm_s"] / r["entries"]
        mem = max(r["peak_mb"] - r["base_mb"], 0.0)
        print(f"{name:>22}: {r['warm_s']:.3f} s ({per * 1e6:.2f} us/entry), compile {r['compile_s']:.1f} s, "
              f"peak memory {r['peak_mb']:.0f} MB ({mem:.0f} MB above baseline, {mem * 1e6 / r['entries']:.0f} "
              f"B/entry); {r['versions']}")
    if native and nt:
        print(f"ratio native / neural-tangents: time {native['warm_s'] / nt['warm_s']:.2f}x, "
              f"memory above baseline {max(native['peak_mb'] - native['base_mb'], 1) / max(nt['peak_mb'] - nt['base_mb'], 1):.2f}x; "
              f"kernels agree to {abs(native['checksum'] - nt['checksum']) / abs(nt['checksum']):.1e} (sum of entries)")


if __name__ == "__main__":
    main()
