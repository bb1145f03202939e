import torch

from app.emb import checkpoint


def _state(step):
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "optimizer": {}, "scheduler": {},
            "rng": [{"cpu": torch.get_rng_state()}], "config": {}, "classes": 2}


def test_newest_valid_skips_a_truncated_checkpoint_with_a_warning(tmp_path):
    for step in (2, 4, 6):
        checkpoint.save(tmp_path, _state(step), keep=5)
    newest = checkpoint.path_for(tmp_path, 6)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (tmp_path / ".ckpt-00000008.pt.tmp.123.abcd").write_bytes(b"partial")  # writer killed mid-save
    warnings = []
    path, state = checkpoint.newest_valid(tmp_path, sweep=True, warn=warnings.append)
    assert path.name == "ckpt-00000004.pt" and state["step"] == 4
    assert torch.equal(state["model"]["w"], torch.full((3,), 4.0))
    assert len(warnings) == 1 and "ckpt-00000006.pt" in warnings[0]
    assert not list(tmp_path.glob(".*tmp*"))


def test_keeps_only_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, _state(step), keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4, 3]


def test_nothing_valid(tmp_path):
    assert checkpoint.newest_valid(tmp_path / "absent") is None
    (tmp_path / "ckpt-00000001.pt").write_bytes(b"not a zip")
    assert checkpoint.newest_valid(tmp_path, warn=lambda m: None) is None
