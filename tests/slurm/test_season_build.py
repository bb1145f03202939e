"""season_build.sh on the local cluster: a 2-task array builds the season's two stacks (one each) inside
the real season.sif; a resubmission skips both valid stacks; the result equals the venv's build.

Also its command lines in job mode (SLURM_DRY_RUN=1): binds from the profile and the inputs, --part
from the array task.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_golden import ODD, job_env, run_wrapper

ROOT = Path(__file__).resolve().parents[2]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dry_run_command_lines(tmp_path):
    base = tmp_path / ODD
    base.mkdir(parents=True)
    for name in ("fields.gpkg", "mapping.toml", "baseline.parquet", "season.sif"):
        (base / name).touch()
    env = job_env(base, SEASON_IMAGE=str(base / "season.sif"), SEASON_FIELDS=str(base / "fields.gpkg"),
                  SEASON_MAPPING=str(base / "mapping.toml"), SEASON_BASELINE=str(base / "baseline.parquet"),
                  SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_MIN="2", SLURM_ARRAY_TASK_COUNT="4",
                  SLURM_CPUS_PER_TASK="16")
    text = run_wrapper("season_build.sh", env).replace(str(tmp_path), "<tmp>").replace(str(ROOT), "<repo>")
    srun = [line for line in text.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1
    line = srun[0]
    for want in ("srun --nodes=1 --ntasks=1 --cpus-per-task=16",
                 "apptainer run --containall --cleanenv",
                 "--bind <tmp>/my\\ runs/it\\'s\\ \\\"q\\\"/season-scenes:/scenes:ro",
                 "--bind <tmp>/my\\ runs/it\\'s\\ \\\"q\\\"/season:/season:rw",
                 "--bind <tmp>/my\\ runs/it\\'s\\ \\\"q\\\":/in/fields:ro",
                 "build --fields /in/fields/fields.gpkg --mapping /in/mapping.toml --scenes /scenes --out /season "
                 "--baseline /in/baseline.parquet --part 2/4"):
        assert want in line, line


def test_missing_inputs_are_refused_at_once(tmp_path):
    env = {**job_env(tmp_path), "SEASON_IMAGE": str(tmp_path / "nope.sif")}
    got = subprocess.run(["bash", str(ROOT / "slurm" / "season_build.sh")], env=env, capture_output=True, text=True)
    assert got.returncode == 3 and "SEASON_IMAGE" in got.stderr and got.stdout == ""


@pytest.mark.slurm
@pytest.mark.container
def test_array_builds_each_stack_once_and_resubmission_skips_them(tmp_path, season_sif, jobs):
    raw = tmp_path / "raw"
    got = subprocess.run([sys.executable, "-m", "app.season", "raw", "--out", raw, "--fields", "6", "--tile", "256",
                          "--dates", "4"], capture_output=True, text=True, cwd=ROOT)
    assert got.returncode == 0, got.stderr
    out = tmp_path / "season out"
    env = {"SEASON_IMAGE": str(season_sif), "SEASON_FIELDS": str(raw / "fields.shp.zip"),
           "SEASON_MAPPING": str(raw / "mapping.toml"), "BIND_SCENES": str(raw / "scenes"), "BIND_SEASON": str(out)}
    job = jobs.submit("season_build.sh", env, "--array=1-2%2", "--cpus-per-task=2",
                      f"--output={tmp_path}/job-%A_%a.out")
    jobs.wait_for("both array tasks to end", lambda: _ended(job, 2), timeout=240)
    logs = {p.name: p.read_text() for p in tmp_path.glob("job-*.out")}
    assert _states(job) == ["COMPLETED", "COMPLETED"], logs
    built = sorted(line.split()[2].rstrip(":") for text in logs.values() for line in text.splitlines()
                   if " built ndvi_" in line)
    assert built == ["utm32", "utm33"], logs  # each stack by exactly one task
    manifest = json.loads((out / "season.json").read_text())
    assert sorted(manifest["stacks"]) == ["utm32", "utm33"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("ndvi_*.tif")}

    again = jobs.submit("season_build.sh", env, "--cpus-per-task=2", f"--output={tmp_path}/again.out")
    info = jobs.wait_state(again, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"))
    text = (tmp_path / "again.out").read_text()
    assert info["JobState"] == "COMPLETED", text
    assert text.count("valid, skipped") == 2 and " built ndvi_" not in text
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("ndvi_*.tif")} == stamps

    # the image computes what the venv computes
    venv = tmp_path / "venv season"
    got = subprocess.run([sys.executable, "-m", "app.season", "build", "--fields", raw / "fields.shp.zip", "--mapping",
                          raw / "mapping.toml", "--scenes", raw / "scenes", "--out", venv],
                         capture_output=True, text=True, cwd=ROOT)
    assert got.returncode == 0, got.stderr
    for name in ["fields.parquet", *stamps]:
        assert sha(out / name) == sha(venv / name), name


def _states(job) -> list:
    import re

    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return re.findall(r"\bJobState=(\S+)", out)


def _ended(job, n):
    s = _states(job)
    return len(s) == n and all(x not in ("PENDING", "RUNNING", "COMPLETING") for x in s)


def test_baseline_from_past_seasons_is_a_first_step(tmp_path):
    base = tmp_path / ODD
    past = base / "past seasons"
    for year in ("2023", "2024"):
        (past / year).mkdir(parents=True)
        (past / year / "season.json").write_text("{}")
    for name in ("fields.gpkg", "mapping.toml", "season.sif"):
        (base / name).touch()
    env = job_env(base, SEASON_IMAGE=str(base / "season.sif"), SEASON_FIELDS=str(base / "fields.gpkg"),
                  SEASON_MAPPING=str(base / "mapping.toml"), SEASON_PAST=str(past), SLURM_CPUS_PER_TASK="16")
    text = run_wrapper("season_build.sh", env).replace(str(tmp_path), "<tmp>")
    baseline, build = [line for line in text.splitlines() if line.startswith("srun ")]
    assert "--bind <tmp>/my\\ runs/it\\'s\\ \\\"q\\\"/past\\ seasons:/in/past:ro" in baseline
    assert baseline.endswith("baseline --seasons /in/past/2023 /in/past/2024 --out /season/.baseline")
    assert build.endswith("--baseline /season/.baseline/baseline.parquet")
    # made once: a season that already has it skips the step
    (base / "season" / ".baseline").mkdir(parents=True)
    (base / "season" / ".baseline" / "baseline.json").write_text("{}")
    text = run_wrapper("season_build.sh", env)
    assert [line for line in text.splitlines() if line.startswith("srun ")][0].endswith(
        "--baseline /season/.baseline/baseline.parquet")
    assert "baseline --seasons" not in text


def test_one_baseline_source_only(tmp_path):
    (tmp_path / "season.sif").touch()
    (tmp_path / "t.csv").touch()
    env = {**job_env(tmp_path), "SEASON_IMAGE": str(tmp_path / "season.sif"), "SEASON_FIELDS": str(tmp_path / "t.csv"),
           "SEASON_MAPPING": str(tmp_path / "t.csv"), "SEASON_BASELINE": str(tmp_path / "t.csv"),
           "SEASON_BASELINE_TABLE": str(tmp_path / "t.csv"), "SLURM_DRY_RUN": "0"}
    got = subprocess.run(["bash", str(ROOT / "slurm" / "season_build.sh")], env=env, capture_output=True, text=True)
    assert got.returncode == 2 and "give one of SEASON_BASELINE, SEASON_PAST, SEASON_BASELINE_TABLE" in got.stderr
