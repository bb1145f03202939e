"""Segmentation scores and the run's metrics.jsonl (rank 0 writes it)."""

import json
import os
from pathlib import Path

import torch

from app.emb import IGNORE
from app.hpc.atomic import atomic_write_bytes


def confusion(pred: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """[K, K] counts, rows = truth, columns = prediction; ignore pixels do not count."""
    keep = target != IGNORE
    idx = target[keep].long() * classes + pred[keep].long()
    return torch.bincount(idx, minlength=classes * classes).reshape(classes, classes)


def iou(conf: torch.Tensor) -> list[float | None]:
    """Per-class intersection over union; None for a class absent from both truth and prediction."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    return [float(t / u) if u > 0 else None for t, u in zip(tp, union)]


def mean_iou(per_class: list[float | None]) -> float:
    present = [v for v in per_class if v is not None]
    return sum(present) / len(present) if present else 0.0


class MetricsLog:
    """Append-only JSON lines, one record per event, flushed and fsynced as written.

    On resume the records after the resumed step are dropped (they belong to steps that will run
    again), so the file always describes one consistent history.
    """

    def __init__(self, run_dir, resume_step: int):
        self.path = Path(run_dir) / "metrics.jsonl"
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            atomic_write_bytes(self.path, "".join(f"{line}\n" for line in kept).encode())

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a torn last line from a kill: drop it


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
