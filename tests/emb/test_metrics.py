import json

import torch

from app.emb import plots
from app.emb.metrics import MetricsLog, confusion, mean_iou, read_metrics, scores


def test_scores_from_a_known_confusion():
    target = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    conf = confusion(pred, target, 3)
    assert conf.sum() == 5  # the ignore pixel does not count
    s = scores(conf, ["non-crop", "wheat", "barley"])
    assert s["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert s["iou"] == [1 / 3, 2 / 3, 0.0]
    assert s["precision"] == [0.5, 2 / 3, None]  # barley never predicted: undefined, not 0
    assert s["recall"] == [0.5, 1.0, 0.0]
    assert abs(s["miou"] - 1 / 3) < 1e-12 and s["val_pixels"] == 5
    assert scores(confusion(torch.tensor([0]), torch.tensor([0]), 2), ["a", "b"])["iou"] == [1.0, None]
    assert mean_iou([None, None]) is None  # nothing to score is not a score of 0


def test_resume_drops_records_after_the_checkpoint_and_torn_lines(tmp_path):
    log = MetricsLog(tmp_path, 0)
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": 1.0 / step})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # killed mid-line
    MetricsLog(tmp_path, 2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_pngs_are_drawn(tmp_path):
    conf = confusion(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    record = {"step": 10, **scores(conf, ["non-crop", "wheat", "barley"])}
    plots.confusion_matrix(record, tmp_path / "confusion.png")
    plots.training_curves([{"step": 5, "loss": 1.0}, {"step": 10, "loss": 0.5}, record], tmp_path / "curves.png")
    for name in ("confusion.png", "curves.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.glob(".*"))  # atomic: no temp files left
