#!/usr/bin/env bash
# The whole test suite, every tier, on a fresh Debian 12/13 machine as root: set-up (venv, Cython),
# Apptainer, the local Slurm test cluster, the images, then pytest with every tier required
# (a tier whose prerequisites are missing FAILS instead of being skipped).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not container and not slurm"` for the fast tier.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "test: $* ($(date +%T))"; }
step "set-up";             bash scripts/setup.sh
step "apptainer";          bash scripts/install-apptainer.sh
step "local slurm";        bash scripts/slurm-local.sh start
step "images";             .venv/bin/python build.py all

step "pytest (gpu tier NOT RUN: no GPU here; it runs as bench/emb_gpu.sh on a GPU node)"
set +e
.venv/bin/python -m pytest --require-tiers -m "not gpu" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: FAILED: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
