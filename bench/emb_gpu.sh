#!/usr/bin/env bash
# EMB GPU benchmark, one run of at most 8 minutes on one GPU (see bench/emb_gpu.py for what it measures).
# Needs python3 with torch + torchvision + numpy (no rasterio). Results: $OUT/emb_gpu.json when $OUT is
# set (the device machine), else bench/results/emb_gpu.json. Extra arguments go to emb_gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
out_dir=${OUT:-bench/results}
mkdir -p "$out_dir"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out_dir/emb_gpu_nvidia.csv" 2>&1 || true
# 470 s hard stop: the script rewrites its JSON after every phase, so a stop keeps what was measured.
timeout --signal=TERM 470 "$py" bench/emb_gpu.py --out "$out_dir/emb_gpu.json" --budget-s 330 "$@"
