import json

import torch

from app.emb.metrics import MetricsLog, confusion, iou, mean_iou, read_metrics


def test_iou_from_a_known_confusion():
    target = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    conf = confusion(pred, target, 3)
    assert conf.sum() == 5  # the ignore pixel does not count
    per_class = iou(conf)
    assert per_class == [1 / 3, 2 / 3, 0.0]
    assert abs(mean_iou(per_class) - 1 / 3) < 1e-12
    assert iou(confusion(torch.tensor([0]), torch.tensor([0]), 2)) == [1.0, None]


def test_resume_drops_records_after_the_checkpoint_and_torn_lines(tmp_path):
    log = MetricsLog(tmp_path, 0)
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": 1.0 / step})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # killed mid-line
    MetricsLog(tmp_path, 2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2
