"""PNG views of a run, drawn by rank 0 after each validation from metrics.jsonl (matplotlib, Agg).

- `curves.png`: training loss per logged step, and validation mIoU (second axis) per validation.
- `confusion.png`: the latest validation's confusion matrix, each row normalised to the share of
  that true class (counts written in the cells when there are at most 12 classes), with per-class
  IoU, precision and recall in the row labels.

matplotlib is pinned in train.txt, so train.sif draws them too; written atomically (app.hpc.atomic).
"""

from pathlib import Path

from app.hpc.atomic import atomic_path

CURVES = "curves.png"
CONFUSION = "confusion.png"
ANNOTATE_UP_TO = 12


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def training_curves(records: list[dict], path) -> None:
    plt = _pyplot()
    train = [r for r in records if "loss" in r]
    val = [r for r in records if r.get("miou") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in val], [r["miou"] for r in val], "o-", color="tab:orange", label="val mIoU")
        ax2.set_ylabel("validation mIoU", color="tab:orange")
        ax2.set_ylim(0, 1)
    else:
        ax.set_title("no validation data")
    _save(fig, Path(path))


def confusion_matrix(record: dict, path) -> None:
    """record: a validation record of metrics.jsonl (app.emb.metrics.scores + step)."""
    import numpy as np

    plt = _pyplot()
    conf = np.array(record["confusion"], dtype=np.float64)
    k = len(conf)
    shares = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fmt = lambda v: "–" if v is None else f"{v:.2f}"
    rows = [f"{name}  IoU {fmt(i)} P {fmt(p)} R {fmt(r)}" for name, i, p, r in
            zip(record["classes"], record["iou"], record["precision"], record["recall"])]
    fig, ax = plt.subplots(figsize=(4 + 0.5 * k, 2 + 0.45 * k))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), record["classes"], rotation=45, ha="right")
    ax.set_yticks(range(k), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"validation at step {record['step']}: mIoU {fmt(record['miou'])}")
    if k <= ANNOTATE_UP_TO:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(conf[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    _save(fig, Path(path))
