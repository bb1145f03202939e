#!/usr/bin/env bash
# The whole test suite, every tier, on a fresh Debian 12/13 machine as root:
# set-up, Apptainer, the local Slurm cluster, image builds, then pytest with tiers required.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "test: gpu tier NOT RUN here (no GPU on this machine); run bench/emb_gpu.sh on a GPU node" >&2
set +e
.venv/bin/python -m pytest --require-tiers -m "not gpu" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: FAILED: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
