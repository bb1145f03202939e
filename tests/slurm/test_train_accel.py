"""train_accel.sh on the local cluster's fake-GPU accel node, through the real train.sif.

torchrun starts 4 local ranks (one per fake GPU; gloo on CPU since there is no CUDA). The walltime
signal is delivered with `scancel --batch --signal=USR2`, exactly what slurmctld does for
`--signal=B:USR2@T` when the time comes (only to the batch shell), without waiting for a walltime.
Stops that do not come through the batch script's trap: `scancel --signal=USR2` (the steps only)
and `--full` (steps and batch shell at once); the wrapper decides from the ranks' status.json.
Slurm holds a requeued job ~120 s (BeginTime); the tests release it with StartTime=now.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.emb.conftest import PREPARE_ARGS, SYNTH_ARGS, label_args
from tests.slurm.conftest import as_user, job_dir

pytestmark = [pytest.mark.slurm, pytest.mark.container, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
STEPS = 24
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def venv(*args):
    got = subprocess.run([PY, *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    return got.stdout


@pytest.fixture(scope="module")
def shards():
    base = job_dir("emb data")  # where the nodes see it (each node's /tmp is its own)
    venv("-m", "app.emb", "synth", "--out", str(base / "src"), *SYNTH_ARGS)
    venv("-m", "app.emb", "prepare", "--src", str(base / "src"), *label_args(base / "src"), "--out", str(base / "shards"),
         *PREPARE_ARGS)
    yield base / "shards"
    shutil.rmtree(base, ignore_errors=True)


def container_env(log: str) -> list[dict]:
    """The forwarded environment each run printed from inside its container."""
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in re.findall(r"^container env on \S+: (.*)$", log, re.M)]


def train_env(train_sif, shards, runs, run_name) -> dict:
    """What a user exports before `bash slurm/train_accel.sh`: image, smoke config, binds."""
    return {
        "TRAIN_IMAGE": str(train_sif),
        "EMB_CONFIG": str(ROOT / "app" / "emb" / "configs" / "smoke.toml"),
        "EMB_RUN": run_name,
        "BIND_SHARDS": str(shards),
        "BIND_RUNS": str(runs),
        "EMB_ALLOW_CPU": "1",  # the fake GPUs are not usable: train on the CPU, explicitly
    }


def status(run_dir) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for_training(jobs, job, run_dir, restart, log_path, steps=2):
    """Until this run (restart) has logged `steps` more steps than it resumed from; the job must run."""
    def progressed():
        s = status(run_dir)
        if s.get("restart") != restart or s.get("state") != "running":
            return False
        try:
            logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                      if '"loss"' in line]
        except (OSError, ValueError):
            return False
        return bool(logged) and logged[-1] >= s["step"] + steps

    jobs.wait_for("training steps", lambda: progressed() or jobs.info(job).get("JobState") in ENDED, timeout=300)
    assert jobs.info(job)["JobState"] == "RUNNING", log_path.read_text()


def release_requeued(jobs, job, restarts):
    """Wait for the requeued job, then let it start at once."""
    requeued = jobs.wait_for(
        "the requeue",
        lambda: (i := jobs.info(job)).get("Restarts") == str(restarts) and i.get("JobState") == "PENDING" and i,
        timeout=300)
    # The node revokes the first run's job credential with one-second resolution: a restart within
    # that second is refused ("Job credential revoked") and the job FAILS. Real clusters hold a
    # requeued job ~120 s; here wait until no accel node is still completing, then 2 s more.
    jobs.wait_for("the first run's clean-up", lambda: not subprocess.run(
        ["sinfo", "-h", "-p", "accel", "-t", "completing", "-o", "%N"], capture_output=True, text=True).stdout.strip())
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    return requeued


def submit(jobs, env, log_path, steps=STEPS):
    return jobs.submit("train_accel.sh", env, "--cpus-per-task=4", "--mem=16G", f"--output={log_path}", "--",
                       f"train.steps={steps}", "train.ckpt_every=1000", "train.log_every=1", "train.eval_every=1000")


def test_walltime_signal_checkpoints_requeues_and_resumes(tmp_path, shards, train_sif, jobs):
    runs = tmp_path / "runs dir"
    env = train_env(train_sif, shards, runs, "smoke")
    log_path = tmp_path / "train.out"
    job = submit(jobs, env, log_path)
    run_dir = runs / "smoke"

    # Training is under way (two logged steps), well before the end: now the walltime signal.
    wait_for_training(jobs, job, run_dir, 0, log_path)
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True)
    requeued = release_requeued(jobs, job, 1)
    info = jobs.wait_state(job, ENDED, timeout=600)
    log = log_path.read_text()
    assert info["JobState"] == "COMPLETED", log
    assert requeued["Restarts"] == "1" and info["Restarts"] == "1"

    # what crossed --cleanenv, as seen inside the containers of both runs
    first, second = container_env(log)
    for seen, restart in ((first, "0"), (second, "1")):
        assert seen["SLURM_JOB_ID"] == job and seen["SLURM_RESTART_COUNT"] == restart
        assert seen["MASTER_ADDR"] == "a1" and seen["MASTER_PORT"] == str(20000 + int(job) % 20000)
        assert seen["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and seen["SLURM_GPUS_ON_NODE"] == "4"
        assert seen["OMP_NUM_THREADS"] == "1" and seen["SLURM_PROCID"] == "0" and seen["SLURM_NNODES"] == "1"

    # signal -> checkpoint -> requeue -> resume from exactly that checkpoint -> finish
    stopped = int(re.search(r"stop signal: checkpointed at step (\d+)", log).group(1))
    assert 2 <= stopped < STEPS
    assert "train_accel.sh: SIGUSR2: asking the ranks to checkpoint" in log
    # the ranks checkpointed on the signal, before the requeue (whose SIGTERM would also stop them)
    assert log.index("stop signal: checkpointed") < log.index(f"requeueing job {job}")
    assert re.search(rf"resumed from \S+ \(step {stopped}\)", log)
    assert "train_accel.sh: training finished" in log
    # each rank's binding and threads, and the software banner, in the log (both runs)
    # (not anchored to whole lines: four ranks write to one log at once)
    ranks = re.findall(r"train: rank (\d) \(local \d\) on a1: CPUs (\S+) \((\d+)\), torch threads (\d+) intra-op / "
                       r"(\d+) inter-op, device cpu", log)
    assert sorted(r[0] for r in ranks) == ["0", "0", "1", "1", "2", "2", "3", "3"], log
    assert all(r[3] == r[4] == "1" for r in ranks)  # the step's cores (this host's 2) over 4 ranks: 1 each
    assert log.count("device cpu (CPU opted in with EMB_ALLOW_CPU=1)") >= 2
    assert status(run_dir) == {"state": "done", "step": STEPS, "job": job, "restart": 1}
    steps_logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                    if "loss" in line]
    assert steps_logged[-1] == STEPS

    # 4 ranks took part: the final checkpoint holds one RNG state per rank
    probe = ("import sys; from app.emb.checkpoint import newest_valid; p, s = newest_valid(sys.argv[1]); "
             "print(s['step'], s['world'], len(s['rng']))")
    assert venv("-c", probe, str(run_dir)).split() == [str(STEPS), "4", "4"]


def test_stops_past_the_trap_requeue_from_the_ranks_status_until_the_limit(tmp_path, shards, train_sif, jobs):
    """scancel --signal=USR2 reaches only the steps: the batch script's trap never fires and torchrun
    exits 1, yet the ranks' status.json says "requeue": the job is requeued. The resumed run is stopped
    with --full (steps and batch shell together) and EMB_MAX_REQUEUES=1 is reached: a clear failure."""
    runs = tmp_path / "runs"
    env = {**train_env(train_sif, shards, runs, "bounded"), "EMB_MAX_REQUEUES": "1"}
    log_path = tmp_path / "train.out"
    job = submit(jobs, env, log_path, steps=400)
    run_dir = runs / "bounded"

    wait_for_training(jobs, job, run_dir, 0, log_path)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    release_requeued(jobs, job, 1)
    wait_for_training(jobs, job, run_dir, 1, log_path)
    subprocess.run(["scancel", "--full", "--signal=USR2", job], check=True)
    info = jobs.wait_state(job, ENDED, timeout=600)
    log = log_path.read_text()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "1:0" and info["Restarts"] == "1", log

    first, second = [int(m) for m in re.findall(r"stop signal: checkpointed at step (\d+)", log)]
    assert re.search(rf"checkpointed at step {first} \(step exit 1\): requeueing job {job} \(1 of at most 1; ", log)
    assert log.count("asking the ranks to checkpoint") == 1  # the first stop never went through the trap
    assert re.search(rf"resumed from \S+ \(step {first}\)", log)
    assert (f"checkpointed at step {second}, but job {job} was already requeued 1 time(s) (EMB_MAX_REQUEUES=1): "
            f"not requeueing again; resubmit with EMB_RUN=bounded to resume") in log
    assert first < second < 400
    assert status(run_dir) == {"state": "requeue", "step": second, "job": job, "restart": 1}
    probe = "import sys; from app.emb.checkpoint import newest_valid; print(newest_valid(sys.argv[1])[1]['step'])"
    assert venv("-c", probe, str(run_dir)).strip() == str(second)


def test_sigint_checkpoints_and_stops_without_requeue(tmp_path, shards, train_sif, jobs):
    runs = tmp_path / "runs"
    env = train_env(train_sif, shards, runs, "ctrl-c")
    log_path = tmp_path / "train.out"
    job = submit(jobs, env, log_path, steps=400)
    run_dir = runs / "ctrl-c"
    wait_for_training(jobs, job, run_dir, 0, log_path)
    subprocess.run(["scancel", "--full", "--signal=INT", job], check=True)
    info = jobs.wait_state(job, ENDED, timeout=600)
    log = log_path.read_text()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "130:0" and info["Restarts"] == "0", log
    stopped = status(run_dir)
    # The ranks saw SIGINT itself (--full signals the steps) and the USR2 the trap made of it: either way
    # they checkpointed at a step boundary; the batch script's INT decides that nothing is requeued.
    assert stopped["state"] in ("interrupted", "requeue") and stopped["restart"] == 0
    assert re.search(rf"stop signal: checkpointed at step {stopped['step']}, exiting (130|75)", log)
    assert "stopped by SIGINT" in log and "not requeued: resubmit with EMB_RUN=ctrl-c to resume" in log
    # no rank died inside a step: the only traceback is torchrun's report of the ranks' non-zero exit
    assert "KeyboardInterrupt" not in log and log.count("Traceback") == log.count("ChildFailedError:")


def test_two_nodes_meet_through_the_rendezvous_on_the_first(tmp_path, shards, train_sif, jobs):
    runs = tmp_path / "runs"
    env = train_env(train_sif, shards, runs, "two-nodes")
    log_path = tmp_path / "train.out"
    job = jobs.submit("train_accel.sh", env, "--nodes=2", "--gpus-per-node=1", "--cpus-per-task=2", "--mem=8G",
                      f"--output={log_path}", "--", "train.steps=2", "train.ckpt_every=1000", "train.eval_every=1000")
    info = jobs.wait_state(job, ENDED, timeout=600)
    log = log_path.read_text()
    assert info["JobState"] == "COMPLETED", log
    seen = {e["SLURM_NODEID"]: e for e in container_env(log)}
    assert set(seen) == {"0", "1"}
    assert {e["MASTER_ADDR"] for e in seen.values()} == {"a1"} and {e["SLURM_NNODES"] for e in seen.values()} == {"2"}
    assert sorted(re.findall(r"^node-run: step \d+ on (a\d): end \S+ exit 0$", log, re.M)) == ["a1", "a2"]
    probe = ("import sys; from app.emb.checkpoint import newest_valid; p, s = newest_valid(sys.argv[1]); "
             "print(s['step'], s['world'])")
    assert venv("-c", probe, str(runs / "two-nodes")).split() == ["2", "2"]


def test_gpus_torch_cannot_use_stop_the_job_with_the_fix(tmp_path, shards, train_sif, jobs):
    """The fake GPUs are what an R550 node is to a CUDA 13 image: allocated, unusable. Without the
    opt-in the job stops before torchrun, exit 3, one line naming CUDA, the driver and the fix."""
    env = {**train_env(train_sif, shards, tmp_path / "runs", "no-gpu"), "EMB_ALLOW_CPU": ""}
    log_path = tmp_path / "train.out"
    job = jobs.submit("train_accel.sh", env, "--cpus-per-task=2", "--mem=8G", "--gpus-per-node=1",
                      f"--output={log_path}", "--", "train.steps=2")
    info = jobs.wait_state(job, ENDED, timeout=300)
    log = log_path.read_text()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "3:0", log
    refusal = [line for line in log.splitlines() if line.startswith("gpus: ")]
    assert len(refusal) == 1 and "1 GPU(s) allocated" in refusal[0] and "driver none found" in refusal[0], log
    assert "--torch-variant cu128" in refusal[0] and "built for CUDA 13" in refusal[0]
    assert "torchrun" not in log and "Traceback" not in log and not (tmp_path / "runs" / "no-gpu" / "status.json").exists()


def test_doctor_in_a_gpu_allocation_names_the_image_cuda_the_driver_and_the_fix(tmp_path, train_sif, jobs):
    """`app doctor` inside train.sif on an accel node: the allocated GPUs torch cannot use fail its
    gpus line, exit 3 (how a user checks a node before a long run)."""
    log = tmp_path / "doctor.out"
    script = tmp_path / "doctor.sh"
    script.write_text(f"#!/bin/bash\nsrun apptainer exec --nv --containall --cleanenv --env CUDA_VISIBLE_DEVICES="
                      f"$CUDA_VISIBLE_DEVICES {train_sif} python -m app doctor\necho doctor-rc=$?\n")
    got = as_user(["sbatch", "--parsable", "-p", "accel", "--gpus-per-node=1", "--mem=8G", "-t", "10",
                   f"--output={log}", str(script)])
    assert got.returncode == 0, got.stderr
    job = got.stdout.strip()
    jobs.submitted.append(job)
    jobs.wait_state(job, ENDED, timeout=300)
    text = log.read_text()
    gpus = [line for line in text.splitlines() if line.split(":")[0].split()[-1:] == ["gpus"]]
    assert "doctor-rc=3" in text and len(gpus) == 1 and gpus[0].startswith("FAIL"), text
    assert "1 allocated, 0 usable (image CUDA 13.0, driver none found)" in gpus[0] and "--torch-variant cu128" in gpus[0]
