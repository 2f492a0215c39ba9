#!/usr/bin/env bash
# The whole GPU table in one command (benchmarks/gpu_table.py): ViT-B-16 @224, ViT-B-16-plus-240 @240,
# ViT-L-14-336 @336 at fp32 and half precision, batch 1/8/32: p50/p99 per frame, frames/s, peak memory.
#   bash benchmarks/gpu.sh                         # on a GPU machine -> benchmarks/results/gpu.{md,json}
#   bash benchmarks/gpu.sh --dry --out-dir DIR     # CPU, tiny model: what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ " $* " != *" --dry "* ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
    echo "gpu.sh: no NVIDIA GPU here (nvidia-smi failed); use --dry to check the script on the CPU" >&2; exit 2; }
fi
exec "$PY" benchmarks/gpu_table.py "$@"
