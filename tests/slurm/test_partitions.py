"""The local cluster refuses what Betzy refuses, at submit time; the rule check refuses it first."""

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]


def sbatch(*opts):
    return subprocess.run(["sbatch", "--parsable", "--output=/dev/null", *opts, "--wrap=true"],
                          capture_output=True, text=True)


def via_wrapper(wrapper, *opts):
    env = {**os.environ, "CLUSTER_PROFILE": "local"}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(["bash", str(ROOT / "slurm" / wrapper), *opts], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "opts, slurm_says, wrapper, check_says",
    [
        (["-p", "normal", "-N2"], "Node count specification invalid", "assess_normal.sh", "use --nodes=4 or more"),
        (["-p", "normal", "-N4", "--mem=10G"], "remove --mem", "assess_normal.sh", "does not accept --mem=10G"),
        (["-p", "accel", "-n1", "--gpus-per-task=1"], "--gpus-per-task is not supported", "train_accel.sh",
         "refuses --gpus-per-task=1"),
        (["-p", "accel", "-N1"], "needs GPUs", "train_accel.sh", "needs GPUs"),
        (["-p", "preproc", "-N2"], "Node count specification invalid", "assess_preproc.sh",
         "takes one node per job"),
    ],
)
def test_refused_at_submit_and_before_it(slurm_cluster, opts, slurm_says, wrapper, check_says):
    got = sbatch(*opts)
    assert got.returncode != 0 and got.stdout == ""
    assert slurm_says in got.stderr

    extra = ["--gpus-per-node=0"] if "needs GPUs" in check_says else opts
    got = via_wrapper(wrapper, *extra)
    assert got.returncode == 2
    assert check_says in got.stderr
    assert "Submitted batch job" not in got.stdout and "sbatch:" not in got.stderr  # never reached sbatch


def test_what_the_rules_allow_is_accepted(slurm_cluster):
    jobs = [
        sbatch("-p", "normal", "-N4", "--hold"),
        sbatch("-p", "accel", "-N1", "--gpus-per-node=4", "--mem=100G", "--hold"),
        sbatch("-p", "preproc", "-N1", "--mem=8G", "--hold"),
    ]
    ids = [j.stdout.strip() for j in jobs]
    subprocess.run(["scancel", *[i for i in ids if i]], capture_output=True)
    assert all(j.returncode == 0 for j in jobs), [j.stderr for j in jobs]


def test_nodes_look_like_betzy(slurm_cluster):
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %P %c %G"], capture_output=True, text=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    normal = [n for n, (part, *_rest) in rows.items() if part.rstrip("*") == "normal"]
    assert len(normal) >= 4 and all(rows[n][1] == "128" for n in normal)
    accel = [n for n, (part, *_rest) in rows.items() if part == "accel"]
    assert accel and all(rows[n][2].startswith("gpu:4") for n in accel)
