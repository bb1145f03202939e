import torch

from app.emb import checkpoint


def _state(step):
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "optimizer": {}, "scheduler": {},
            "rng": [{"cpu": torch.get_rng_state()}], "config": {}, "classes": 2, "class_names": ["a", "b"],
            "model_name": "m", "model_norm": "batch", "chip": 8, "weights_sha256": ["x"]}


def test_newest_valid_skips_a_truncated_checkpoint_and_sets_it_aside(tmp_path):
    for step in (2, 4, 6):
        checkpoint.save(tmp_path, _state(step), keep=5)
    newest = checkpoint.path_for(tmp_path, 6)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (tmp_path / ".ckpt-00000008.pt.tmp.123.abcd").write_bytes(b"partial")  # writer killed mid-save
    warnings = []
    path, state = checkpoint.newest_valid(tmp_path, sweep=True, warn=warnings.append)
    assert path.name == "ckpt-00000004.pt" and state["step"] == 4
    assert torch.equal(state["model"]["w"], torch.full((3,), 4.0))
    assert len(warnings) == 1 and "ckpt-00000006.pt" in warnings[0] and "renamed to ckpt-00000006.pt.unusable" in warnings[0]
    assert not list(tmp_path.glob(".*tmp*"))
    assert (tmp_path / "ckpt-00000006.pt.unusable").exists()
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4, 2]


def test_without_sweep_nothing_is_renamed(tmp_path):
    checkpoint.save(tmp_path, _state(1), keep=5)
    (tmp_path / "ckpt-00000002.pt").write_bytes(b"junk")
    assert checkpoint.newest_valid(tmp_path, warn=lambda m: None)[1]["step"] == 1
    assert (tmp_path / "ckpt-00000002.pt").exists()  # predict's read-only look leaves the run as it is


def test_keeps_only_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, _state(step), keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4, 3]


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    """A corrupt file numbered after the current step (left by another history, or a bad copy) must
    not count among the ones to keep: the old rule (newest `keep` by number) deleted the new file."""
    corrupt = checkpoint.path_for(tmp_path, 99)
    corrupt.write_bytes(b"not a checkpoint")
    checkpoint.save(tmp_path, _state(3), keep=1)
    written = checkpoint.save(tmp_path, _state(6), keep=1)
    assert written.exists() and checkpoint.load(written)["step"] == 6
    assert not checkpoint.path_for(tmp_path, 3).exists()  # older ones still pruned
    assert corrupt.exists()  # and a file of another history is not ours to delete


def test_nothing_valid(tmp_path):
    assert checkpoint.newest_valid(tmp_path / "absent") is None
    (tmp_path / "ckpt-00000001.pt").write_bytes(b"not a zip")
    assert checkpoint.newest_valid(tmp_path, warn=lambda m: None) is None


def test_weights_digest_sees_every_parameter_and_no_buffer():
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.BatchNorm2d(2))
    before = checkpoint.weights_digest(net)
    net[1].running_mean += 1  # per-rank statistics: not part of the digest
    assert checkpoint.weights_digest(net) == before
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = torch.nextafter(net[0].weight[0, 0, 0, 0], torch.tensor(9.0))  # one ulp
    assert checkpoint.weights_digest(net) != before
