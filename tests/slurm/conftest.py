"""Helpers for the `slurm` tier: submit a wrapper to the local cluster and watch the job."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def submit(wrapper, env, *args):
    """`bash slurm/WRAPPER ARGS` (rule check, then sbatch) with the local profile; returns the job id."""
    full = {**os.environ, "CLUSTER_PROFILE": "local", **env}
    full.pop("SLURM_JOB_ID", None)
    got = subprocess.run(["bash", str(ROOT / "slurm" / wrapper), *args], env=full, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    m = re.search(r"Submitted batch job (\d+)", got.stdout)
    assert m, got.stdout
    return m.group(1)


def job_info(job) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def wait_for(what, predicate, timeout=240, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_state(job, states, timeout=240):
    return wait_for(f"job {job} to reach {states}", lambda: job_info(job).get("JobState") in states and job_info(job),
                    timeout)


class Jobs:
    """What a slurm-tier test does with the cluster; every job it submits is cancelled at teardown
    (a no-op for finished jobs), so a failing test leaves no load behind."""

    info = staticmethod(job_info)
    wait_for = staticmethod(wait_for)
    wait_state = staticmethod(wait_state)

    def __init__(self):
        self.submitted = []

    def submit(self, wrapper, env, *args):
        job = submit(wrapper, env, *args)
        self.submitted.append(job)
        return job


@pytest.fixture
def jobs(slurm_cluster):
    j = Jobs()
    yield j
    for job in j.submitted:
        subprocess.run(["scancel", job], capture_output=True)
