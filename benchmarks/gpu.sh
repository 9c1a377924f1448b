#!/usr/bin/env bash
# Every benchmark in one call, sized to finish inside one 10-minute call on one H100/H200
# (each step has a timeout; they sum to 9 minutes, the most important first: GPU tests, the
# sweeps, the quick preset's wall time) or, with SIZE=cpu, on a laptop.
# Prints every ratio against its peer. Runs the GPU tests (GPU results equal CPU results) first.
#   bash benchmarks/gpu.sh                     # uv, CUDA 12 wheels (the 'gpu' extra), offline
#   GPU_EXTRA=gpu-cuda13 bash benchmarks/gpu.sh  # CUDA 13 wheels
#   RUN=python bash benchmarks/gpu.sh          # an existing environment (e.g. a GPU image with jax):
#                                              # uv is never called when RUN is given
#   SIZE=cpu bash benchmarks/gpu.sh            # smaller, on CPU
# With RUN unset, uv runs --offline: the wheels must already be in uv's cache (run
# `uv sync --extra gpu --extra test` once with network), so the machine needs no network.
set -u
cd "$(dirname "$0")/.."
GPU_EXTRA=${GPU_EXTRA:-gpu}
SIZE=${SIZE:-gpu}
if [ -z "${RUN:-}" ]; then
  if [ "$SIZE" = "cpu" ]; then
    RUN="uv run --offline --extra test python"
  else
    RUN="uv run --offline --extra $GPU_EXTRA --extra test python"
  fi
fi
if [ "$SIZE" = "cpu" ]; then
  N_KERNEL=4000; N_SPEC=4000; CURVES=2000; SCIPY=300; N_CNN=32
else
  N_KERNEL=16000; N_SPEC=16000; CURVES=100000; SCIPY=1000; N_CNN=128
fi
export PYTHONUNBUFFERED=1
echo "== device"; timeout 30 $RUN -c "import jax; print(jax.__version__, jax.devices())"
echo "== GPU tests (GPU results equal CPU results)"; timeout 80 $RUN -m pytest -q -p no:cacheprovider -m gpu tests/gpu
echo "== sweep (RF cells/s and MLP network-steps/s vs the per-cell loops)"; timeout 55 $RUN benchmarks/sweep.py
echo "== quick paper preset on this machine's devices (wall time; target 60 s on one H200)"
out=$(mktemp -d)
t0=$(date +%s)
timeout 120 $RUN -m paper_figs --preset quick --out "$out" --no-progress 2>&1 | tail -n 14
echo "quick preset wall time: $(( $(date +%s) - t0 )) s (environment start included)"
rm -rf "$out"
echo "== fit_batch (scaling.fit vs scipy curve_fit loop)"; timeout 40 $RUN benchmarks/fit_batch.py --curves $CURVES --scipy-curves $SCIPY
echo "== kernel throughput (NTK vs X @ X.T)"; timeout 50 $RUN benchmarks/kernel_throughput.py --n $N_KERNEL --dtype float32
echo "== spectrum (top-k vs eigh)"; timeout 50 $RUN benchmarks/spectrum.py --n $N_SPEC
echo "== fit_grid (Chinchilla recipe vs scipy minimize loop)"; timeout 35 $RUN benchmarks/fit_grid.py --scipy-starts $SCIPY
echo "== CNN-GAP NTK (native vs neural-tangents when its reference env exists)"; timeout 30 $RUN benchmarks/cnn_gap.py --n $N_CNN
echo "== theory vs measured"; timeout 25 $RUN benchmarks/theory_vs_measured.py
echo "== intrinsic dimension (ours vs scikit-dimension)"; timeout 25 $RUN benchmarks/intrinsic_dimension.py
