"""The local cluster is as strict as Betzy where it matters to the wrappers; each test fails on the
kinder cluster this one replaced (ThreadsPerCore=1, no cgroups, no accounting, jobs as root, the
host's /tmp).

Jobs are submitted as the cluster's unprivileged user (conftest.as_user) as small bash scripts:
what the cluster itself does, independent of the wrappers.
"""

import re
import subprocess
from pathlib import Path

import pytest

from tests.slurm.conftest import ACCOUNT, JOB_USER, as_user

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
GRANT = f'source "{ROOT}/slurm/common.sh"; echo "grant: $(sl_step_grant)"'


def sbatch(*opts, env=None):
    return as_user(["sbatch", "--parsable", *opts], env)


def run_job(jobs, tmp_path, *opts, script, timeout=120):
    """Submit `script` (bash) with opts, wait for the end; returns (state, log)."""
    log = tmp_path / "job.out"
    (tmp_path / "job.sh").write_text(f"#!/bin/bash\n{script}\n")
    got = sbatch(f"--output={log}", *opts, str(tmp_path / "job.sh"))
    assert got.returncode == 0, got.stderr
    job = got.stdout.strip().split(";")[0]
    jobs.submitted.append(job)
    info = jobs.wait_state(job, ENDED, timeout=timeout)
    return info["JobState"], log.read_text()


def test_a_job_must_name_an_account_that_exists(slurm_cluster):
    got = sbatch("-p", "preproc", "--mem-per-cpu=100M", "-t", "5", "--hold", "--wrap=true", env={"SBATCH_ACCOUNT": ""})
    assert got.returncode != 0 and "jobs must specify an account" in got.stderr
    got = sbatch("-p", "preproc", "--mem-per-cpu=100M", "-t", "5", "--hold", "-A", "nn9999k", "--wrap=true")
    assert got.returncode != 0 and "Invalid account" in got.stderr
    got = sbatch("-p", "preproc", "--mem-per-cpu=100M", "-t", "5", "--hold", "--wrap=true")  # SBATCH_ACCOUNT
    subprocess.run(["scancel", got.stdout.strip()], capture_output=True)
    assert got.returncode == 0, got.stderr


def test_nodes_count_hyperthreads_like_betzy(slurm_cluster):
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %P %c %X %Y %Z %m %G"], capture_output=True, text=True).stdout
    rows = {f[0]: f[1:] for f in (line.split() for line in out.splitlines())}
    normal = [r for r in rows.values() if r[0].rstrip("*") == "normal"]
    assert len(normal) == 4 and all(r[1:6] == ["256", "2", "64", "2", "249856"] for r in normal)
    accel = [r for r in rows.values() if r[0] == "accel"]
    assert len(accel) == 4 and all(r[1] == "128" and r[4] == "2" and r[6].startswith("gpu:4") for r in accel)


def test_a_whole_node_step_must_ask_for_mem_0_not_per_cpu_memory(tmp_path, jobs):
    # 256 CPUs x 1950M is twice the node: that step never starts (srun waits until killed); --mem=0 runs
    script = ("echo cpus=$SLURM_CPUS_ON_NODE; "
              "srun --exclusive -N1 -n1 -c $SLURM_CPUS_ON_NODE --mem=0 echo mem0-step-ran; "
              "timeout 10 srun --exclusive -N1 -n1 -c $SLURM_CPUS_ON_NODE --mem-per-cpu=1950M echo per-cpu-step-ran; "
              "echo per-cpu-rc=$?")
    state, log = run_job(jobs, tmp_path, "-N4", "-t", "5", script=script)
    assert state == "COMPLETED", log
    assert "cpus=256" in log and "mem0-step-ran" in log
    assert "per-cpu-step-ran" not in log and "per-cpu-rc=124" in log, log


def test_a_step_is_fenced_to_what_it_was_granted(tmp_path, jobs):
    script = (f'{GRANT}; id -un; srun -c 2 --mem=200M bash -c \'{GRANT}\'; '
              "srun --mem=300M bash -c 'a=$(head -c 400M /dev/zero | tr \"\\\\0\" x); echo survived'; echo rc=$?")
    _state, log = run_job(jobs, tmp_path, "-p", "preproc", "-c", "4", "--mem-per-cpu=100M", "-t", "5", script=script)
    grants = re.findall(r"^grant: cpus (\S+) of (\S+) on the node, affinity (\S+) \((\d+) CPUs.*memory limit (.*)$",
                        log, re.M)
    assert grants[0][1] == "4" and grants[0][4] == "400 MiB", log  # the job: 4 CPUs x 100M
    assert grants[1][0] == "2" and grants[1][4] == "200 MiB", log  # the step: what srun asked for
    assert JOB_USER in log.splitlines()
    # RAM is enforced: a shell holding 400M in a 300M step is killed by the cgroup's OOM killer
    assert "survived" not in log and "oom-kill" in log and "rc=0" not in log, log


def test_a_job_sees_only_the_gpus_it_was_given(tmp_path, jobs):
    # The fake GPUs are char devices without a driver: the granted one fails to open with ENXIO, the
    # others are fenced off by the devices cgroup (EPERM).
    script = ('echo cvd=$CUDA_VISIBLE_DEVICES; for d in /var/lib/slurm-local/gpu/nvidia*; do '
              '(exec 3<"$d") 2>&1 | sed "s#^#$d: #"; done')
    state, log = run_job(jobs, tmp_path, "-p", "accel", "--gpus-per-node=1", "--mem=1G", "-t", "5", script=script)
    assert state == "COMPLETED", log
    granted = [line for line in log.splitlines() if "No such device or address" in line]
    fenced = [line for line in log.splitlines() if "Operation not permitted" in line]
    assert len(granted) == 1 and len(fenced) == 3, log


@pytest.mark.parametrize("opts, refused_by", [
    (["-p", "accel", "-N4", "--gpus-per-node=1", "--mem=1G"], "QOS"),  # Betzy: at most 3 accel nodes per user
    (["-p", "preproc", "-c", "130", "--mem-per-cpu=100M"], "QOS"),     # preproc: at most 128 CPUs per job
    (["-p", "normal", "-N4"], "walltime"),                            # normal: --time required
])
def test_per_user_limits_are_refused_at_submit(slurm_cluster, opts, refused_by):
    timed = opts if refused_by == "walltime" else [*opts, "-t", "5"]
    got = sbatch(*timed, "--hold", "--wrap=true")
    if got.returncode == 0:
        subprocess.run(["scancel", got.stdout.strip()], capture_output=True)
    assert got.returncode != 0 and refused_by in got.stderr, got.stderr


def test_each_node_has_its_own_small_tmp(tmp_path, jobs):
    script = "df -BM --output=size /tmp | tail -1; hostname > /tmp/mark-$SLURM_JOB_ID; echo $(hostname)"
    state, log = run_job(jobs, tmp_path, "-p", "preproc", "--mem-per-cpu=100M", "-t", "5", script=script)
    assert state == "COMPLETED", log
    size = int(log.split()[0].rstrip("M"))
    assert 1400 <= size <= 1600, log  # Betzy's 1.5 GB /tmp, not this host's
    assert not list(Path("/tmp").glob("mark-*")), "a node's /tmp is the host's"


def test_the_account_is_the_profiles(slurm_cluster):
    out = subprocess.run(["sacctmgr", "-n", "-P", "show", "assoc", "format=account,user", "where", f"user={JOB_USER}"],
                         capture_output=True, text=True).stdout
    assert f"{ACCOUNT}|{JOB_USER}" in out.split()


def test_temp_dirs_of_jobs_that_are_gone_are_swept_by_the_next_job(tmp_path, jobs):
    # A SIGKILLed step leaves /dev/shm/USER/JOBID behind (RAM until reboot); a live job's is kept.
    held = sbatch("-p", "preproc", "--mem-per-cpu=100M", "-t", "5", "--hold", "--wrap=true")
    assert held.returncode == 0, held.stderr
    live = held.stdout.strip()
    jobs.submitted.append(live)
    shm = Path("/dev/shm") / JOB_USER
    as_user(["mkdir", "-p", str(shm / "999999" / "step.x"), str(shm / live)])
    as_user(["dd", "if=/dev/zero", f"of={shm / '999999' / 'step.x' / 'big'}", "bs=1M", "count=4"])
    script = f'srun bash {ROOT}/slurm/common.sh node-run {shm}/$SLURM_JOB_ID:/tmp "" -- true'
    state, log = run_job(jobs, tmp_path, "-p", "preproc", "--mem-per-cpu=100M", "-t", "5", script=script)
    assert state == "COMPLETED", log
    assert "removed the temp dir of job 999999, which is gone" in log
    assert not (shm / "999999").exists() and (shm / live).is_dir()
    as_user(["rmdir", str(shm / live)])
