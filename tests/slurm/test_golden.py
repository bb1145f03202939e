"""Golden files of the command lines each wrapper runs inside a job, with awkward paths.

Like submitit's sbatch-file tests: the wrapper runs in job mode with SLURM_DRY_RUN=1 and a fixed job
environment, prints its srun/apptainer lines (shell-quoted, one per command), and the output must
equal tests/slurm/golden/NAME.txt once the temp dir and the checkout are replaced by <tmp>/<repo>.
Regenerate after an intended change with UPDATE_GOLDEN=1 (those tests then fail on purpose: an update
is never a passing comparison), review the diff, and rerun.
"""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
ODD = "my runs/it's \"q\""  # a space, a single and a double quote in one directory name


def job_env(base: Path, **extra) -> dict:
    return {
        "PATH": os.environ["PATH"],
        "USER": "alice",
        "CLUSTER_PROFILE": "local",
        "SLURM_DRY_RUN": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_SUBMIT_DIR": str(base),
        "SLURM_WRAPPERS_DIR": str(ROOT / "slurm"),
        **extra,
    }


def run_wrapper(name, env, *args):
    got = subprocess.run(["bash", str(ROOT / "slurm" / name), *args], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    return got.stdout


def compare(name, text, tmp_path):
    text = text.replace(str(tmp_path), "<tmp>").replace(str(ROOT), "<repo>")
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":  # never a pass: an update is reviewed, then compared
        path.write_text(text)
        pytest.fail(f"{path.name} rewritten (UPDATE_GOLDEN=1): review the diff, then rerun without it")
    assert text == path.read_text()


@pytest.fixture
def odd_dir(tmp_path):
    d = tmp_path / ODD
    d.mkdir(parents=True)
    return d


def test_train_accel_two_nodes(tmp_path, odd_dir):
    (odd_dir / "train.sif").touch()
    (odd_dir / "smoke run.toml").touch()
    env = job_env(
        odd_dir,
        SLURM_JOB_NAME="emb-train",
        SLURM_JOB_NODELIST="a[1-2]",
        SLURM_NNODES="2",
        SLURM_JOB_NUM_NODES="2",
        SLURM_GPUS_ON_NODE="4",
        SLURM_CPUS_PER_TASK="64",
        SLURM_RESTART_COUNT="1",
        TRAIN_IMAGE=str(odd_dir / "train.sif"),
        EMB_CONFIG=str(odd_dir / "smoke run.toml"),
        EMB_RUN="field-2026",
    )
    out = run_wrapper("train_accel.sh", env, "train.steps=3", "run.note=it's a test")
    compare("train_accel", out, tmp_path)
    argv = shlex.split(out)
    # the awkward paths survive as single arguments
    assert f"{odd_dir}/smoke run.toml:/config/run.toml:ro" in argv
    assert "run.note=it's a test" in argv
    # rendezvous on the first node; requeue count and thread caps cross --cleanenv
    assert {"MASTER_ADDR=a1", "SLURM_RESTART_COUNT=1", "OMP_NUM_THREADS=16"} <= set(argv)
    assert "--nproc-per-node=4" in argv and "--nnodes=2" in argv
    # srun does not inherit --cpus-per-task (Slurm 22.05/23.02): the step names it
    assert argv[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=64"]


def test_assess_normal_four_nodes(tmp_path, odd_dir):
    (odd_dir / "sure2.sif").touch()
    (odd_dir / "fields 'north'.txt").write_text("F0001\n")
    env = job_env(
        odd_dir,
        SLURM_JOB_NUM_NODES="4",
        SLURM_NNODES="4",
        SLURM_JOB_CPUS_PER_NODE="256(x4)",
        SLURM_CPUS_ON_NODE="256",
        SLURM_JOB_PARTITION="normal",
        SURE2_IMAGE=str(odd_dir / "sure2.sif"),
        ASSESS_FIELDS=str(odd_dir / "fields 'north'.txt"),
        BIND_OUT=str(odd_dir / "out put"),
    )
    out = run_wrapper("assess_normal.sh", env)
    compare("assess_normal", out, tmp_path)
    plan, step, report = (shlex.split(line) for line in out.splitlines())
    assert plan[plan.index("python"):][:4] == ["python", "-m", "app.batch", "plan"]
    # a step asks for exactly what a node gives: all its CPUs as Slurm counts them, all the job's memory there
    assert step[:6] == ["srun", "--exclusive", "--nodes=1", "--ntasks=1", "--cpus-per-task=256", "--mem=0"]
    assert f"{odd_dir}/out put:/out:rw" in step and step[-1] == "--no-report"  # the steps skip theirs ...
    assert report[report.index("python"):][:4] == ["python", "-m", "app.batch", "report"]  # ... one for all


def test_assess_preproc(tmp_path, odd_dir):
    (odd_dir / "sure2.sif").touch()
    env = job_env(
        odd_dir,
        SLURM_CPUS_PER_TASK="16",
        SLURM_JOB_PARTITION="preproc",
        SURE2_IMAGE=str(odd_dir / "sure2.sif"),
    )
    out = run_wrapper("assess_preproc.sh", env)
    compare("assess_preproc", out, tmp_path)
    argv = shlex.split(out)
    assert argv[:4] == ["srun", "--nodes=1", "--ntasks=1", "--cpus-per-task=16"]
    assert f"{odd_dir}/sure2-out:/out:rw" in argv  # the local profile's default: under the submit dir


@pytest.mark.parametrize(
    "wrapper, unset, message",
    [
        ("train_accel.sh", "TRAIN_IMAGE", "set TRAIN_IMAGE"),
        ("assess_normal.sh", "SURE2_IMAGE", "set SURE2_IMAGE"),
    ],
)
def test_missing_image_is_one_line_bad_input(tmp_path, wrapper, unset, message):
    env = job_env(tmp_path, SLURM_GPUS_ON_NODE="4", EMB_CONFIG="/nonexistent")
    got = subprocess.run(["bash", str(ROOT / "slurm" / wrapper)], env=env, capture_output=True, text=True)
    assert got.returncode == 2 and message in got.stderr and got.stderr.count("\n") == 1


def test_bind_source_with_a_colon_is_refused(tmp_path):
    (tmp_path / "sure2.sif").touch()
    env = job_env(tmp_path, SURE2_IMAGE=str(tmp_path / "sure2.sif"), BIND_OUT=str(tmp_path / "a:b"),
                  SLURM_JOB_NUM_NODES="4", SLURM_JOB_CPUS_PER_NODE="128(x4)")
    got = subprocess.run(["bash", str(ROOT / "slurm" / "assess_normal.sh")], env=env, capture_output=True, text=True)
    assert got.returncode == 2 and "contains ':' or ','" in got.stderr and got.stdout == ""
    assert not (tmp_path / "a:b").exists()


def test_train_accel_takes_nccl_settings_from_the_profile(tmp_path, odd_dir):
    (odd_dir / "train.sif").touch()
    (odd_dir / "run.toml").touch()
    env = job_env(odd_dir, CLUSTER_PROFILE="betzy", SLURM_JOB_NAME="emb-train", SLURM_JOB_NODELIST="a[1-2]",
                  SLURM_NNODES="2", SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="64",
                  TRAIN_IMAGE=str(odd_dir / "train.sif"), EMB_CONFIG=str(odd_dir / "run.toml"),
                  BIND_SHARDS=str(odd_dir), BIND_RUNS=str(odd_dir))
    argv = shlex.split(run_wrapper("train_accel.sh", env))
    assert {"NCCL_IB_HCA=mlx5", "NCCL_SOCKET_IFNAME=ib0"} <= set(argv)
    assert ("/dev/infiniband" in argv) == os.path.isdir("/dev/infiniband")  # bound where the node has it
