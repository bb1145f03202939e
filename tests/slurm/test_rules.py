"""The partition-rule check, run from bash as the wrappers run it: before sbatch, with what to change.

Plain unit tests: no Slurm needed. SLURM_DRY_RUN=1 makes a submission print its sbatch line instead of
running it, so "caught before sbatch" shows as: exit 2, reasons on stderr, no sbatch line on stdout.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "slurm"


def check(wrapper, *opts, profile="betzy", account="nn1234k"):
    env = {"PATH": os.environ["PATH"], "CLUSTER_PROFILE": profile, "SBATCH_ACCOUNT": account}
    return subprocess.run(
        ["bash", str(SLURM / "common.sh"), "check", str(SLURM / wrapper), *opts], env=env, capture_output=True, text=True
    )


def submit(wrapper, *args, profile="betzy", env=None):
    env = {"PATH": os.environ["PATH"], "CLUSTER_PROFILE": profile, "SLURM_DRY_RUN": "1", "SBATCH_ACCOUNT": "nn1234k",
           **(env or {})}
    return subprocess.run(["bash", str(SLURM / wrapper), *args], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("wrapper", ["assess_normal.sh", "assess_preproc.sh", "train_accel.sh"])
@pytest.mark.parametrize("profile", ["betzy", "local"])
def test_each_wrapper_as_written_passes_its_profile(wrapper, profile):
    got = check(wrapper, profile=profile)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "rule check: ok"


@pytest.mark.parametrize(
    "wrapper, opts, advice",
    [
        ("assess_normal.sh", ["-N2"], "use --nodes=4 or more"),
        ("assess_normal.sh", ["--nodes", "2"], "use --nodes=4 or more"),
        ("assess_normal.sh", ["--nodes=600"], "use --nodes=512 or fewer"),
        ("assess_normal.sh", ["--mem=10G"], "does not accept --mem=10G"),
        ("assess_normal.sh", ["--mem-per-cpu=2G"], "does not accept --mem-per-cpu=2G"),
        ("assess_normal.sh", ["--gpus=1"], "has no GPUs: remove --gpus=1"),
        ("assess_normal.sh", ["-t", "5-00:00:00"], "at most 4-00:00:00"),
        ("assess_normal.sh", ["-p", "preproc"], "takes one node per job: use --nodes=1"),
        ("assess_preproc.sh", ["-N2"], "takes one node per job: use --nodes=1"),
        ("assess_preproc.sh", ["--array=0-99"], "--array=0-99%16"),
        ("assess_preproc.sh", ["--array=1-40%20"], "--array=1-40%16"),
        ("train_accel.sh", ["--gpus-per-task=1"], "use --gpus-per-node=N"),
        ("train_accel.sh", ["--gpus-per-node=8"], "use --gpus-per-node=4 or fewer"),
        ("train_accel.sh", ["--gpus-per-node=0"], "needs GPUs"),
        ("train_accel.sh", ["--gres=gpu:0"], "needs GPUs"),
        ("train_accel.sh", ["--time=8-00:00:00"], "at most 7-00:00:00"),
    ],
)
def test_violations_are_named_with_the_fix(wrapper, opts, advice):
    got = check(wrapper, *opts)
    assert got.returncode == 2
    assert advice in got.stderr
    assert got.stdout == ""


def test_every_problem_is_reported_at_once():
    got = check("assess_normal.sh", "-N2", "--mem=1G")
    assert got.returncode == 2
    lines = got.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("rule check: partition normal on profile betzy") for line in lines)


@pytest.mark.parametrize(
    "wrapper, opts",
    [
        ("assess_normal.sh", ["--nodes=8", "--time=1-00:00:00", "--account=nn1234k"]),
        ("assess_preproc.sh", ["--array=1-40%16", "--mem=64G"]),
        ("assess_preproc.sh", ["--array=1-8"]),
        ("train_accel.sh", ["--nodes=2", "--gpus-per-node=2", "--mem=100G"]),
        ("train_accel.sh", ["-G", "4"]),
    ],
)
def test_allowed_requests_pass(wrapper, opts):
    got = check(wrapper, *opts)
    assert got.returncode == 0, got.stderr


def test_command_line_overrides_the_scripts_own_lines():
    # assess_normal.sh says --nodes=4; -N2 on the command line wins, as with sbatch, and is refused.
    assert check("assess_normal.sh", "-N2").returncode == 2
    # train_accel.sh says --mem=240G, allowed on accel; moved to normal it is refused.
    got = check("train_accel.sh", "-p", "normal", "--nodes=4", "--gpus-per-node=0")
    assert "does not accept --mem=240G" in got.stderr


def test_profile_rules_differ_where_the_clusters_differ():
    # Saga wants a memory request on normal and has no preproc partition.
    got = check("assess_normal.sh", profile="saga")
    assert got.returncode == 2 and "add --mem-per-cpu=SIZE" in got.stderr
    got = check("assess_preproc.sh", profile="saga")
    assert got.returncode == 2 and "no such partition here (known: accel normal)" in got.stderr


def test_submission_is_refused_before_sbatch():
    got = submit("assess_normal.sh", "-N2")
    assert got.returncode == 2 and "use --nodes=4 or more" in got.stderr
    assert "sbatch" not in got.stdout


def test_submission_passes_options_then_job_arguments_to_sbatch(tmp_path):
    (tmp_path / "train.sif").touch()
    (tmp_path / "run.toml").touch()
    (tmp_path / "shards").mkdir()
    env = {"TRAIN_IMAGE": str(tmp_path / "train.sif"), "EMB_CONFIG": str(tmp_path / "run.toml"),
           "BIND_SHARDS": str(tmp_path / "shards")}
    got = submit("train_accel.sh", "--nodes=2", "--job-name=my run", "--", "train.steps=10", "run.note=it's", env=env)
    assert got.returncode == 0, got.stderr
    want = f"sbatch --nodes=2 --job-name=my\\ run {SLURM}/train_accel.sh train.steps=10 run.note=it\\'s"
    assert got.stdout.strip() == want


def test_unknown_profile_is_bad_input():
    got = check("assess_normal.sh", profile="nowhere")
    assert got.returncode == 2 and "have: betzy local olivia saga" in got.stderr


@pytest.mark.parametrize("how", [["-A", "nn1234k"], ["-Ann1234k"], ["--account", "nn1234k"], ["--account=nn1234k"]])
def test_an_account_is_required_on_the_command_line_or_in_sbatch_account(how):
    got = check("assess_normal.sh", account="")
    assert got.returncode == 2
    assert got.stderr.count("\n") == 1 and "add --account=PROJECT (or set SBATCH_ACCOUNT" in got.stderr
    assert check("assess_normal.sh", *how, account="").returncode == 0
    assert check("assess_normal.sh").returncode == 0  # SBATCH_ACCOUNT, which sbatch itself reads


def test_accel_allows_three_nodes_per_user():
    got = check("train_accel.sh", "--nodes=4")
    assert got.returncode == 2 and "at most 3 nodes per user, not --nodes=4: use --nodes=3 or fewer" in got.stderr
    assert check("train_accel.sh", "--nodes=3").returncode == 0


def test_inputs_are_checked_before_sbatch(tmp_path):
    # each wrapper's own checks run at submission: a missing image is refused in one line, no sbatch
    for wrapper, var in [("assess_normal.sh", "SURE2_IMAGE"), ("assess_preproc.sh", "SURE2_IMAGE"),
                         ("train_accel.sh", "TRAIN_IMAGE"), ("season_build.sh", "SEASON_IMAGE")]:
        got = submit(wrapper)
        assert got.returncode == 2 and f"set {var} to the" in got.stderr and "sbatch" not in got.stdout, got.stderr
    (tmp_path / "sure2.sif").touch()
    got = submit("assess_normal.sh", env={"SURE2_IMAGE": str(tmp_path / "sure2.sif"),
                                           "ASSESS_FIELDS": str(tmp_path / "nope.txt")})
    assert got.returncode == 2 and "ASSESS_FIELDS" in got.stderr and "does not exist" in got.stderr
    got = submit("assess_normal.sh", env={"SURE2_IMAGE": str(tmp_path / "sure2.sif"), "BIND_OUT": str(tmp_path / "o")})
    assert got.returncode == 0 and got.stdout.startswith("sbatch "), got.stderr
    assert "cluster profile betzy (CLUSTER_PROFILE is unset" not in got.stderr
    env = {"PATH": os.environ["PATH"], "SLURM_DRY_RUN": "1", "SBATCH_ACCOUNT": "nn1234k",
           "SURE2_IMAGE": str(tmp_path / "sure2.sif"), "BIND_OUT": str(tmp_path / "o")}
    got = subprocess.run(["bash", str(SLURM / "assess_normal.sh")], env=env, capture_output=True, text=True)
    assert got.returncode == 0 and "cluster profile betzy (CLUSTER_PROFILE is unset" in got.stderr


def test_olivia_shares_normal_nodes_so_memory_is_required():
    got = check("assess_normal.sh", profile="olivia")
    assert got.returncode == 2 and "needs a memory request: add --mem-per-cpu=SIZE" in got.stderr
    assert check("assess_preproc.sh", "-p", "normal", "--nodes=1", profile="olivia").returncode == 0
