"""Shared EMB fixtures: one small generated dataset, its shards, and one short training run.

Sizes are chosen for 2 shared CPU cores: 4 tiles of 128² px, 32² chips, the smoke model.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
TORCHRUN = str(Path(PY).with_name("torchrun"))
SMOKE = str(ROOT / "app" / "emb" / "configs" / "smoke.toml")

SYNTH_ARGS = ["--tiles", "4", "--size", "128", "--classes", "5", "--seed", "7"]
PREPARE_ARGS = ["--chip", "32", "--block", "64", "--val-frac", "0.4", "--shard-chips", "24"]


def run_py(*args, timeout=600, check=True, **kw):
    """Run `python <args>` from the repo root; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def train_cmd(shards, run_dir, *overrides, nproc=1):
    base = ["-m", "app.emb.train", "--config", SMOKE, f"data.shards={shards}", f"run.dir={run_dir}", *overrides]
    if nproc == 1:
        return [PY, *base]
    return [TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", *base]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def emb_src(tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "src"
    run_py("-m", "app.emb", "synth", "--out", str(out), *SYNTH_ARGS)
    return out


@pytest.fixture(scope="session")
def emb_shards(emb_src):
    out = emb_src.parent / "shards"
    run_py("-m", "app.emb", "prepare", "--src", str(emb_src), "--out", str(out), *PREPARE_ARGS)
    return out


# 100 steps of the smoke model reach mIoU ≈ 0.55-0.6 on this data (measured); see test_train.py.
TRAINED_STEPS = 100


@pytest.fixture(scope="session")
def trained_run(emb_shards):
    run_dir = emb_shards.parent / "trained"
    proc = subprocess.run(train_cmd(emb_shards, run_dir, f"train.steps={TRAINED_STEPS}", "train.eval_every=50",
                                    "train.log_every=10", "train.ckpt_every=1000"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
