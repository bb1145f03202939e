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


def _ratio(num, den) -> list[float | None]:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


def scores(conf: torch.Tensor, names) -> dict:
    """Per-class IoU, precision and recall (None where undefined), mIoU over the classes that occur
    (in truth or prediction), and the confusion matrix (rows = truth, columns = prediction)."""
    c = conf.double()
    tp, truth, predicted = c.diag(), c.sum(1), c.sum(0)
    per_class = _ratio(tp, truth + predicted - tp)
    return {"iou": per_class, "miou": mean_iou(per_class), "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, truth), "classes": list(names), "confusion": conf.long().tolist(),
            "val_pixels": int(conf.sum())}


def mean_iou(per_class: list[float | None]) -> float | None:
    present = [v for v in per_class if v is not None]
    return sum(present) / len(present) if present else None


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
