"""Helpers for the `slurm` tier: submit a wrapper to the local cluster and watch the job.

The strict local cluster (scripts/slurm-local.sh) runs jobs as its unprivileged user, from its project
account, on nodes whose /tmp is their own small tmpfs: so the tier submits as that user (runuser, a
clean environment, SBATCH_ACCOUNT from the profile) and gives slurm-marked tests a `tmp_path` under
/var/tmp/slurm-tier that the user owns and every node sees.
"""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB_BASE = Path("/var/tmp/slurm-tier")  # made by scripts/slurm-local.sh start


def cluster_setting(key: str) -> str:
    """A `cluster KEY VALUE` line of the local profile, through the wrappers' own reader."""
    got = subprocess.run(["bash", "-c", f'source "{ROOT}/slurm/common.sh" && sl_map_lines cluster'],
                         env={"PATH": os.environ["PATH"], "CLUSTER_PROFILE": "local"}, capture_output=True, text=True)
    return dict(line.split()[1:3] for line in got.stdout.splitlines())[key]


JOB_USER = cluster_setting("user")
ACCOUNT = cluster_setting("account")


def user_env(env: dict) -> dict:
    """What a user's login shell would hold, plus `env`: the local profile and the project account."""
    pw = pwd.getpwnam(JOB_USER)
    return {"PATH": os.environ["PATH"], "HOME": pw.pw_dir, "USER": JOB_USER, "LOGNAME": JOB_USER,
            "LANG": "C.UTF-8", "CLUSTER_PROFILE": "local", "SBATCH_ACCOUNT": ACCOUNT, **env}


def as_user(cmd, env=None, **kw):
    """Run cmd as the cluster's unprivileged user with user_env(env)."""
    full = user_env(env or {})
    return subprocess.run(["runuser", "-u", JOB_USER, "--", "env", "-i", *[f"{k}={v}" for k, v in full.items()], *cmd],
                          capture_output=True, text=True, cwd=JOB_BASE, **kw)


def job_dir(name: str) -> Path:
    """A fresh directory the job user owns, visible on every node (not under /tmp: each node has its own)."""
    d = Path(tempfile.mkdtemp(prefix=re.sub(r"[^\w.-]", "_", name)[:50] + "-", dir=JOB_BASE))
    pw = pwd.getpwnam(JOB_USER)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    d.chmod(0o755)
    return d


@pytest.fixture
def tmp_path(request, tmp_path_factory):
    """pytest's tmp_path, moved where jobs can use it for slurm-marked tests."""
    if request.node.get_closest_marker("slurm") is None:
        return tmp_path_factory.mktemp(re.sub(r"[^\w]", "_", request.node.name)[:30], numbered=True)
    d = job_dir(request.node.name)
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def submit(wrapper, env, *args):
    """`bash slurm/WRAPPER ARGS` (rule check, then sbatch) as the job user; returns the job id."""
    got = as_user(["bash", str(ROOT / "slurm" / wrapper), *args], env)
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


@pytest.fixture(scope="session")
def job_user_reads_checkout(slurm_cluster):
    """Jobs run as the cluster's user: the wrappers and images must be readable by it (a checkout under
    a private home directory is not), or every job fails on its first line."""
    paths = [ROOT / "slurm" / "common.sh", *(p for p in (ROOT / "build").glob("*.sif"))]
    got = as_user(["bash", "-c", 'for p; do [ -r "$p" ] || echo "$p"; done', "sh", *map(str, paths)])
    assert got.stdout == "", (f"the cluster's user {JOB_USER} cannot read {got.stdout.split()}: make the checkout "
                              "and build/ readable (chmod o+rX on the path) to run the slurm tier")


@pytest.fixture
def jobs(slurm_cluster, job_user_reads_checkout):
    j = Jobs()
    yield j
    for job in j.submitted:
        subprocess.run(["scancel", job], capture_output=True)
