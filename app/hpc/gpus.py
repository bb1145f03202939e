"""GPUs Slurm gave the job against GPUs torch can use: a GPU job never trains on the CPU by accident.

A torch wheel is built for one CUDA version, and the node's NVIDIA driver must be new enough for it
(CUDA 13: R580 or newer; CUDA 12.x: R525+, 12.8's new features R570+). With an older driver
`torch.cuda.is_available()` is simply False: training would fall back to gloo on the CPU inside a GPU
allocation and exit 0. So: GPUs allocated (CUDA_VISIBLE_DEVICES / Slurm's GPU variables) but none
usable → EnvironmentFailure (exit 3) with one line naming the image's CUDA, the driver found and the
fix; the CPU only with an explicit opt-in (EMB_ALLOW_CPU=1).

`python -m app.hpc.gpus` runs the check and prints the banner (the training wrapper runs it inside the
container before torchrun, so a refusal is one line and exit 3, not four ranks' tracebacks).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from app.errors import EnvironmentFailure, guarded

ALLOW_CPU_ENV = "EMB_ALLOW_CPU"
# CUDA major version of the torch build -> oldest driver major that runs it
MIN_DRIVER = {"13": 580, "12": 525}
FIX = "rebuild the image for the node's driver: python build.py train --torch-variant cu128 (CUDA 12.8)"
_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def allocated_gpus(environ=os.environ) -> list[str]:
    """The GPUs this process was given: CUDA_VISIBLE_DEVICES, else Slurm's GPU variables."""
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible not in ("-1", "NoDevFiles"):
        return [d for d in visible.split(",") if d]
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        if environ.get(name):
            return [d for d in environ[name].split(",") if d]
    count = environ.get("SLURM_GPUS_ON_NODE", "")
    return [str(i) for i in range(int(count))] if count.isdigit() else []


def driver_version(version_file: Path = _DRIVER_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version ("550.54.15"), or None where there is none."""
    try:
        m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", version_file.read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    return None


def driver_too_old(cuda: str | None, driver: str | None) -> str | None:
    """Why `driver` cannot run a torch built for `cuda`, or None (fine, or unknown)."""
    if not cuda or not driver:
        return None
    need = MIN_DRIVER.get(cuda.split(".")[0])
    have = int(driver.split(".")[0])
    if need and have < need:
        return f"torch is built for CUDA {cuda}, which needs an NVIDIA driver R{need}+; this node has {driver}"
    return None


def choose_device(torch, environ=os.environ) -> str:
    """"cuda" when torch can use the GPUs; "cpu" when none were allocated or the CPU is opted in;
    otherwise EnvironmentFailure with the image's CUDA, the driver and the fix."""
    if torch.cuda.is_available():
        return "cuda"
    gpus = allocated_gpus(environ)
    if not gpus or environ.get(ALLOW_CPU_ENV) == "1":
        return "cpu"
    cuda = torch.version.cuda or "none (a CPU-only torch)"
    driver = driver_version() or "none found"
    raise EnvironmentFailure(
        f"{len(gpus)} GPU(s) allocated (CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES', '')}) but torch "
        f"cannot use them: image torch {torch.__version__} built for CUDA {cuda}, NVIDIA driver {driver}; "
        f"{FIX}, or set {ALLOW_CPU_ENV}=1 to train on the CPU")


def banner(torch, device: str, environ=os.environ) -> str:
    """One line: torch, its CUDA, the driver, the GPUs torch sees, NCCL, the device chosen."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device == "cuda" else []
    nccl = ".".join(map(str, torch.cuda.nccl.version())) if device == "cuda" else "unused"
    cpu_note = f" (CPU opted in with {ALLOW_CPU_ENV}=1)" if device == "cpu" and allocated_gpus(environ) else ""
    return (f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, driver {driver_version() or 'none'}, "
            f"GPUs {len(gpus)}{': ' + ', '.join(gpus) if gpus else ''}, NCCL {nccl}, device {device}{cpu_note}")


def _main() -> int:
    import torch

    device = choose_device(torch)
    print(f"gpus: {banner(torch, device)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(guarded("gpus", _main))
