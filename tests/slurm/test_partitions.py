"""The local cluster refuses what Betzy refuses, at submit time; the rule check refuses it first."""

import subprocess
from pathlib import Path

import pytest

from tests.slurm.conftest import as_user

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]


def sbatch(*opts):
    return as_user(["sbatch", "--parsable", "--output=/dev/null", "--time=10", *opts, "--wrap=true"])


def via_wrapper(wrapper, *opts):
    return as_user(["bash", str(ROOT / "slurm" / wrapper), *opts])


@pytest.mark.parametrize(
    "opts, slurm_says, wrapper, check_says",
    [
        (["-p", "normal", "-N2"], "Node count specification invalid", "assess_normal.sh", "use --nodes=4 or more"),
        (["-p", "normal", "-N4", "--mem=10G"], "remove --mem", "assess_normal.sh", "does not accept --mem=10G"),
        (["-p", "accel", "-n1", "--gpus-per-task=1"], "--gpus-per-task is not supported", "train_accel.sh",
         "refuses --gpus-per-task=1"),
        (["-p", "accel", "-N1"], "needs GPUs", "train_accel.sh", "needs GPUs"),
        (["-p", "preproc", "-N2", "--mem-per-cpu=1G"], "Node count specification invalid", "assess_preproc.sh",
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
        sbatch("-p", "preproc", "-N1", "--mem-per-cpu=1G", "--hold"),
    ]
    ids = [j.stdout.strip() for j in jobs]
    subprocess.run(["scancel", *[i for i in ids if i]], capture_output=True)
    assert all(j.returncode == 0 for j in jobs), [j.stderr for j in jobs]
