"""Reference kernels from neural-tangents 0.6.5 on jax 0.5.3, for every case in cases.py.

Runs ONLY inside the reference environment that ``reference/nt/build_env.sh`` builds
(never in the toolkit's): ``<env>/bin/python reference/nt/compute.py OUT.npz``. Writes
the fixed inputs and, per case, the NNGP and NTK of ``kernel_fn(x1, None)`` and
``kernel_fn(x1, x2)`` in float64, plus the versions used.
"""

from __future__ import annotations

import sys
import time
import types
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _import_neural_tangents():
    # neural-tangents imports its TensorFlow bridge eagerly; the reference environment has
    # no tensorflow, so a stand-in module answers that import (the bridge is never used).
    bridge = types.ModuleType("neural_tangents.experimental")
    bridge.__path__ = []
    sys.modules["neural_tangents.experimental"] = bridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import neural_tangents
    return neural_tangents


def main(out_path: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)  # a throwaway process: global x64 is fine here
    import numpy as np

    nt = _import_neural_tangents()
    sys.path.insert(0, str(HERE))
    import cases as case_defs
    import old_architectures

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"`FanIn` layers assume independent inputs")
    data = case_defs.inputs()
    out = {f"input__{k}": v for k, v in data.items()}
    t0 = time.perf_counter()
    for case in case_defs.cases():
        kernel_fn = case["build"](old_architectures, nt.stax)[2]
        x1, x2 = data[case["inputs"] + "1"], data[case["inputs"] + "2"]
        sym = kernel_fn(x1, None, case_defs.GETS)
        cross = kernel_fn(x1, x2, case_defs.GETS)
        for get in case_defs.GETS:
            out[f"{case['name']}__{get}__sym"] = np.asarray(getattr(sym, get), dtype=np.float64)
            out[f"{case['name']}__{get}__cross"] = np.asarray(getattr(cross, get), dtype=np.float64)
    out["versions"] = np.array(f"neural-tangents {nt.__version__}, jax {jax.__version__}")
    np.savez_compressed(out_path, **out)
    print(f"{len(case_defs.cases())} cases in {time.perf_counter() - t0:.1f} s -> {out_path} "
          f"({Path(out_path).stat().st_size / 1e3:.0f} kB; neural-tangents {nt.__version__}, jax {jax.__version__})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python reference/nt/compute.py OUT.npz (inside the reference environment)")
    main(sys.argv[1])
