#!/usr/bin/env bash
# Every benchmark in one call, sized for a GPU session (<8 minutes on one H100/H200) or,
# with SIZE=cpu, small enough for a laptop. Prints every ratio against its peer.
#   bash benchmarks/gpu.sh            # GPU sizes (needs the 'gpu' extra: jax[cuda12])
#   SIZE=cpu bash benchmarks/gpu.sh   # smaller, on CPU
set -u
cd "$(dirname "$0")/.."
RUN=${RUN:-"uv run --extra gpu --extra test python"}
SIZE=${SIZE:-gpu}
if [ "$SIZE" = "cpu" ]; then
  RUN=${RUN/--extra gpu /}
  N_KERNEL=4000; N_SPEC=4000; CURVES=2000; SCIPY=300
else
  N_KERNEL=16000; N_SPEC=16000; CURVES=100000; SCIPY=1000
fi
export PYTHONUNBUFFERED=1
echo "== device"; $RUN -c "import jax; print(jax.devices())"
echo "== GPU tests (GPU results equal CPU results)"; timeout 120 $RUN -m pytest -q -p no:cacheprovider -m gpu tests/gpu
echo "== kernel throughput (NTK vs X @ X.T)"; timeout 180 $RUN benchmarks/kernel_throughput.py --n $N_KERNEL --dtype float32
echo "== spectrum (top-k vs eigh)"; timeout 180 $RUN benchmarks/spectrum.py --n $N_SPEC
echo "== fit_batch (scaling.fit vs scipy curve_fit loop)"; timeout 120 $RUN benchmarks/fit_batch.py --curves $CURVES --scipy-curves $SCIPY
echo "== fit_grid (Chinchilla recipe vs scipy minimize loop)"; timeout 120 $RUN benchmarks/fit_grid.py --scipy-starts $SCIPY
echo "== sweep (batched vs per-cell loop)"; timeout 120 $RUN benchmarks/sweep.py
echo "== theory vs measured"; timeout 60 $RUN benchmarks/theory_vs_measured.py
echo "== intrinsic dimension (ours vs scikit-dimension)"; timeout 120 $RUN benchmarks/intrinsic_dimension.py
