#!/usr/bin/env bash
# EMB on one GPU in one run of at most 8 minutes (room for a rerun within a device budget):
#   1. the gpu test tier: pytest -m gpu tests/emb/test_gpu.py --require-tiers (at most 150 s; a missing
#      CUDA device fails it); log in $OUT/emb_gpu_tests.log. EMB_GPU_TESTS=0 skips it.
#   2. bench/emb_gpu.py (what it measures: see there) with the time left; results in $OUT/emb_gpu.json,
#      rewritten after every phase, so a stop keeps what was measured.
# $OUT defaults to bench/results. Needs python3 with torch, torchvision, numpy (+ pytest for step 1;
# no rasterio, matplotlib optional). Extra arguments go to emb_gpu.py, e.g. `--toy` on a CPU:
#   EMB_GPU_TESTS=0 bash bench/emb_gpu.sh --toy
set -uo pipefail
cd "$(dirname "$0")/.."
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
out_dir=${OUT:-bench/results}
mkdir -p "$out_dir"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out_dir/emb_gpu_nvidia.csv" 2>&1 || true
start=$SECONDS
tests_rc=skipped
if [ "${EMB_GPU_TESTS:-1}" = 1 ]; then
  timeout --signal=TERM 150 "$py" -m pytest -m gpu tests/emb/test_gpu.py --require-tiers -q -p no:cacheprovider \
    >"$out_dir/emb_gpu_tests.log" 2>&1
  tests_rc=$?
  tail -3 "$out_dir/emb_gpu_tests.log"
fi
# 460 s hard stop for the whole script; the benchmark stops starting phases 140 s before its end
# (a torch.compile phase needs about that much).
left=$((460 - (SECONDS - start)))
timeout --signal=TERM "$left" "$py" bench/emb_gpu.py --out "$out_dir/emb_gpu.json" --budget-s $((left - 140)) "$@"
bench_rc=$?
echo "emb_gpu: gpu tests exit $tests_rc ($out_dir/emb_gpu_tests.log), benchmark exit $bench_rc ($out_dir/emb_gpu.json)"
[ "$bench_rc" = 0 ] && { [ "$tests_rc" = 0 ] || [ "$tests_rc" = skipped ]; }
