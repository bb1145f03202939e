"""GPUs allocated but unusable are refused (exit 3, one line with the fix); the CPU only by opt-in.
With the venv's real torch (a CUDA 13 build on a machine without an NVIDIA driver): exactly the
situation of an R550 node running an image built for CUDA 13."""

import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import EnvironmentFailure
from app.hpc import gpus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env, want", [
    ({}, []),
    ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, ["0", "1", "2", "3"]),
    ({"SLURM_JOB_GPUS": "2,3"}, ["2", "3"]),
    ({"SLURM_GPUS_ON_NODE": "2"}, ["0", "1"]),
])
def test_allocated_gpus_from_cuda_or_slurm_variables(env, want):
    assert gpus.allocated_gpus(env) == want


def test_driver_version_from_the_kernel_module_file(tmp_path):
    f = tmp_path / "version"
    f.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
                 "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    assert gpus.driver_version(f) == "550.54.15"
    f.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n")
    assert gpus.driver_version(f) == "580.65.06"


@pytest.mark.parametrize("cuda, driver, too_old", [
    ("13.0", "550.54.15", True), ("13.0", "580.65.06", False), ("12.8", "550.54.15", False),
    ("12.8", "470.82", True), (None, "550.54", False), ("13.0", None, False),
])
def test_driver_against_the_torch_build(cuda, driver, too_old):
    assert bool(gpus.driver_too_old(cuda, driver)) is too_old


def test_allocated_gpus_torch_cannot_use_are_refused_with_the_fix():
    import torch
    assert not torch.cuda.is_available(), "this test needs a machine whose GPUs torch cannot use"
    with pytest.raises(EnvironmentFailure) as exc:
        gpus.choose_device(torch, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    line = str(exc.value)
    assert "\n" not in line and "4 GPU(s) allocated" in line
    assert f"built for CUDA {torch.version.cuda}" in line and "driver none found" in line
    assert "--torch-variant cu128" in line and "EMB_ALLOW_CPU=1" in line
    assert gpus.choose_device(torch, {"CUDA_VISIBLE_DEVICES": "0,1", "EMB_ALLOW_CPU": "1"}) == "cpu"
    assert gpus.choose_device(torch, {}) == "cpu"  # no GPUs asked for: the CPU is what was given


def test_the_check_as_a_command_exits_3_with_one_line():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "0"}
    got = subprocess.run([sys.executable, "-m", "app.hpc.gpus"], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 3 and got.stderr.count("\n") == 1 and "cu128" in got.stderr, got.stderr
    got = subprocess.run([sys.executable, "-m", "app.hpc.gpus"], env={**env, "EMB_ALLOW_CPU": "1"},
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0 and "device cpu (CPU opted in with EMB_ALLOW_CPU=1)" in got.stderr, got.stderr
