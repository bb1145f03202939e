"""The doctor on the real venv: a clean environment passes; each real misconfiguration fails its line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import doctor

ROOT = Path(__file__).resolve().parents[1]

PYPROJ_DATA = Path(__import__("pyproj").__file__).parent / "proj_dir" / "share" / "proj"
RASTERIO_DATA = Path(__import__("rasterio").__file__).parent / "proj_data"


def run_doctor(env_overrides, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB", "PYTHONPATH")}
    env.update(env_overrides)
    proc = subprocess.run([sys.executable, "-m", "app", "doctor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = {line.split(":")[0].split()[-1]: line for line in proc.stdout.splitlines()}
    return proc.returncode, lines


def test_clean_environment_passes_every_check():
    rc, lines = run_doctor({"PROJ_DATA": str(RASTERIO_DATA)})
    assert rc == 0, lines
    assert set(lines) == {"imports", "proj-data", "rasterio-crs", "pyproj-crs", "pythonpath",
                          "threads", "temp-dir", "gpus"}
    assert all(line.startswith("ok") for line in lines.values())
    assert "(500000.00, 6651411.19)" in lines["rasterio-crs"]


def test_poisoned_environment_fails_exactly_the_poisoned_checks(tmp_path):
    # The PROJ trap (pyproj's older proj.db), oversubscribed threads, a dead PYTHONPATH entry,
    # a temp dir that does not exist: each must be named, and the healthy checks stay ok.
    rc, lines = run_doctor({
        "PROJ_DATA": str(PYPROJ_DATA),
        "OMP_NUM_THREADS": "4096",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path / 'gone'}",
        "APP_TMPDIR": str(tmp_path / "no-such-dir"),
    })
    assert rc == 3
    failed = {name for name, line in lines.items() if line.startswith("FAIL")}
    assert failed == {"proj-data", "rasterio-crs", "pythonpath", "threads", "temp-dir"}
    assert "layout 1.4" in lines["proj-data"]
    assert "DATABASE.LAYOUT.VERSION.MINOR = 4" in lines["rasterio-crs"]
    assert lines["pyproj-crs"].startswith("ok")  # pyproj prefers its own copy: only rasterio breaks


def test_proj_data_without_proj_db_fails(tmp_path):
    with pytest.raises(doctor.CheckFailed, match="holds no proj.db"):
        doctor.check_proj_data({"PROJ_DATA": str(tmp_path)})


def test_proj_data_pointing_at_rasterio_copy_passes():
    assert "layout 1.6" in doctor.check_proj_data({"PROJ_DATA": str(RASTERIO_DATA)})


def test_thread_caps_within_physical_cores_pass_and_junk_fails():
    assert "OMP_NUM_THREADS=1" in doctor.check_threads({"OMP_NUM_THREADS": "1"})
    for junk in ("0", "-1", "two"):
        with pytest.raises(doctor.CheckFailed, match="OMP_NUM_THREADS"):
            doctor.check_threads({"OMP_NUM_THREADS": junk})


def test_slurm_allocation_caps_the_core_count():
    # 2 CPUs allocated: a cap of 2 is fine, 3 is oversubscription even if the node has more cores.
    assert "OMP_NUM_THREADS=1" in doctor.check_threads({"SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "1"})
    with pytest.raises(doctor.CheckFailed):
        doctor.check_threads({"SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "2"})


def test_temp_dir_below_minimum_free_space_fails(tmp_path):
    with pytest.raises(doctor.CheckFailed, match="MiB free, below"):
        doctor.check_temp_dir(min_free_mib=2**40, environ={"APP_TMPDIR": str(tmp_path)})


def test_required_gpus_missing_fails(machine_without_gpus):
    assert doctor.check_gpus(0, {}).startswith("none (image CUDA ")
    with pytest.raises(doctor.CheckFailed, match="1 required, 0 usable"):
        doctor.check_gpus(1, {})


def test_allocated_gpus_torch_cannot_use_fail_with_the_fix(machine_without_gpus):
    # the venv's torch is a CUDA build and this machine has no driver: a GPU job here would train on CPU
    with pytest.raises(doctor.CheckFailed, match=r"2 allocated, 0 usable \(image CUDA \d+\.\d+, driver none found\).*"
                       r"--torch-variant cu128"):
        doctor.check_gpus(0, {"CUDA_VISIBLE_DEVICES": "0,1"})


def test_bad_usage_exits_2():
    proc = subprocess.run([sys.executable, "-m", "app", "doctor", "--gpus", "x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
