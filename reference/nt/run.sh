#!/bin/sh
# Build the isolated neural-tangents reference environment (uv, no tensorflow) and compute
# the reference kernels of every case in cases.py into OUT (an .npz).
#   sh reference/nt/run.sh OUT.npz
# The environment lives in $NST_NT_ENV (default ~/.cache/nst-nt-reference) and is reused.
# Exit status 0 with a "skipped:" line when the package index cannot be reached, so CI
# without network passes; 1 on any other failure.
set -eu
OUT=${1:?usage: sh reference/nt/run.sh OUT.npz}
HERE=$(cd "$(dirname "$0")" && pwd)
ENV=${NST_NT_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nst-nt-reference}
UV="python3 -m uv"
$UV --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
if [ ! -x "$ENV/bin/python" ]; then
  $UV venv --quiet --python 3.11 "$ENV" || { echo "skipped: no Python 3.11 for the reference environment (uv could not provide one)"; exit 0; }
fi
if ! $UV pip install --quiet --python "$ENV/bin/python" --override "$HERE/overrides.txt" -r "$HERE/requirements.txt" 2>"$ENV.log"; then
  if grep -qiE "connect|network|dns|resolve|timed out|offline|Failed to fetch" "$ENV.log"; then
    echo "skipped: the package index is unreachable, reference kernels not recomputed ($(head -c 200 "$ENV.log" | tr '\n' ' '))"
    exit 0
  fi
  cat "$ENV.log" >&2
  exit 1
fi
exec "$ENV/bin/python" "$HERE/compute.py" "$OUT"
