"""train_accel.sh on the local cluster's fake-GPU accel node, through the real train.sif.

torchrun starts 4 local ranks (one per fake GPU; gloo on CPU since there is no CUDA). The walltime
signal is delivered with `scancel --batch --signal=USR2`, exactly what slurmctld does for
`--signal=B:USR2@T` when the time comes (only to the batch shell), without waiting for a walltime.
Slurm holds a requeued job ~120 s (BeginTime); the test releases it with StartTime=now.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("emb data")
    venv("-m", "app.emb", "synth", "--out", str(base / "src"), "--tiles", "4", "--size", "128", "--seed", "7")
    venv("-m", "app.emb", "prepare", "--src", str(base / "src"), "--out", str(base / "shards"),
         "--chip", "32", "--block", "64", "--val-frac", "0.4", "--shard-chips", "24")
    return base / "shards"


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
    }


def test_walltime_signal_checkpoints_requeues_and_resumes(tmp_path, shards, train_sif, jobs):
    runs = tmp_path / "runs dir"
    env = train_env(train_sif, shards, runs, "smoke")
    log_path = tmp_path / "train.out"
    job = jobs.submit(
        "train_accel.sh", env, "--cpus-per-task=4", "--mem=16G", f"--output={log_path}", "--",
        f"train.steps={STEPS}", "train.ckpt_every=1000", "train.log_every=1", "train.eval_every=1000",
    )
    run_dir = runs / "smoke"

    def trained_steps():
        try:
            return len((run_dir / "metrics.jsonl").read_text().splitlines())
        except OSError:
            return 0

    # Training is under way (two logged steps), well before the end: now the walltime signal.
    jobs.wait_for("training steps", lambda: trained_steps() >= 2 or jobs.info(job).get("JobState") in ENDED,
                  timeout=300)
    assert jobs.info(job)["JobState"] == "RUNNING", log_path.read_text()
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True)

    requeued = jobs.wait_for(
        "the requeue", lambda: (i := jobs.info(job)).get("Restarts") == "1" and i.get("JobState") == "PENDING" and i,
        timeout=300)
    # The node revokes the first run's job credential with one-second resolution: a restart within
    # that second is refused ("Job credential revoked") and the job FAILS. Real clusters hold a
    # requeued job ~120 s; here wait until no accel node is still completing, then 2 s more.
    jobs.wait_for("the first run's clean-up", lambda: not subprocess.run(
        ["sinfo", "-h", "-p", "accel", "-t", "completing", "-o", "%N"], capture_output=True, text=True).stdout.strip())
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
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
    assert "walltime signal: asking the ranks to checkpoint" in log
    # the ranks checkpointed on the signal, before the requeue (whose SIGTERM would also stop them)
    assert log.index("stop signal: checkpointed") < log.index(f"requeueing job {job}")
    assert re.search(rf"resumed from \S+ \(step {stopped}\)", log)
    assert "train_accel.sh: training finished" in log
    assert json.loads((run_dir / "status.json").read_text()) == {"state": "done", "step": STEPS}
    steps_logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                    if "loss" in line]
    assert steps_logged[-1] == STEPS

    # 4 ranks took part: the final checkpoint holds one RNG state per rank
    probe = ("import sys; from app.emb.checkpoint import newest_valid; p, s = newest_valid(sys.argv[1]); "
             "print(s['step'], s['world'], len(s['rng']))")
    assert venv("-c", probe, str(run_dir)).split() == [str(STEPS), "4", "4"]


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
