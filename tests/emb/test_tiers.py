"""The gpu tier cannot pass by skipping: without a CUDA device it fails under --require-tiers."""

import os
import subprocess

from tests.emb.conftest import PY, ROOT


def _gpu_tier(*extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a GPU node
    return subprocess.run([PY, "-m", "pytest", "-m", "gpu", "tests/emb/test_gpu.py", "-p", "no:cacheprovider",
                           "-q", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_gpu_tier_fails_under_require_tiers_without_cuda():
    proc = _gpu_tier("--require-tiers")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "tier prerequisite missing: no CUDA device" in proc.stdout
    assert " skipped" not in proc.stdout.splitlines()[-1] and " passed" not in proc.stdout.splitlines()[-1]


def test_without_require_tiers_it_skips_with_the_reason():
    proc = _gpu_tier("-rs")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "no CUDA device" in proc.stdout and " skipped" in proc.stdout.splitlines()[-1]
