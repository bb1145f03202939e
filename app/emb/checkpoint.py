"""Atomic checkpoints in the run directory; start-up picks the newest one that loads completely.

`ckpt-00000120.pt` holds the state after 120 optimizer steps: model, optimizer, scheduler, step (which
is also the data position: batches are a pure function of seed and step), every rank's RNG states,
every rank's weight digest (all equal, or training stops) and the config. Written to a temp name,
fsynced, renamed (app.hpc.atomic).

- Start-up (rank 0, no writer active) skips a truncated or corrupt file with a warning and renames it
  `NAME.unusable`, so it never shadows a good checkpoint again and pruning never counts it.
- Pruning after a save keeps the checkpoint just written and the `keep - 1` newest ones *before* it;
  files numbered after it are not this run's history and are left alone, so a newer-numbered
  corrupt file can never cause the deletion of the checkpoint just written.
"""

import hashlib
import re
import sys
from pathlib import Path

import torch

from app.hpc.atomic import atomic_path, sweep_temp_files

FORMAT = "emb-ckpt/2"
UNUSABLE = ".unusable"
_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")
REQUIRED = ("format", "step", "model", "optimizer", "scheduler", "rng", "config", "classes", "class_names", "model_name",
            "model_norm", "chip", "weights_sha256")


def path_for(run_dir, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path), newest first."""
    found = []
    for path in Path(run_dir).glob("ckpt-*.pt"):
        m = _NAME.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found, reverse=True)


def weights_digest(module) -> str:
    """sha256 over the bytes of every parameter, in registration order (buffers such as BatchNorm's
    running statistics are per rank by design and not included)."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(run_dir, state: dict, keep: int) -> Path:
    step = state["step"]
    path = path_for(run_dir, step)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    older = [p for s, p in list_checkpoints(run_dir) if s < step]
    for old in older[keep - 1:]:
        old.unlink(missing_ok=True)
    return path


def load(path) -> dict:
    """The checkpoint's state; ValueError when it is truncated, corrupt or not ours."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, I/O error: all mean "not usable"
        raise ValueError(f"{Path(path).name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or any(k not in state for k in REQUIRED):
        raise ValueError(f"{Path(path).name}: not an {FORMAT} checkpoint")
    return state


def newest_valid(run_dir, sweep=False, warn=lambda msg: print(msg, file=sys.stderr)) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads. `sweep` (only when no writer is active: training start-up)
    also removes temp files of a writer killed mid-save and renames unusable checkpoints aside."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    if sweep:
        sweep_temp_files(run_dir)
    for _, path in list_checkpoints(run_dir):
        try:
            return path, load(path)
        except ValueError as exc:
            aside = ""
            if sweep:
                path.rename(path.with_name(path.name + UNUSABLE))
                aside = f" (renamed to {path.name}{UNUSABLE})"
            warn(f"checkpoint: warning: skipping unusable checkpoint {exc}{aside}")
    return None


def resolve(checkpoint_or_run_dir) -> tuple[Path, dict]:
    """A checkpoint file, or a run directory's newest valid checkpoint; ValueError when there is none."""
    p = Path(checkpoint_or_run_dir)
    if p.is_dir():
        found = newest_valid(p)
        if found is None:
            raise ValueError(f"no valid checkpoint in {p}")
        return found
    return p, load(p)
