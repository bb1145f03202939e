import numpy as np

from app.emb import BANDS
from app.emb.shards import ShardSet, shard_files, shard_is_valid, write_index, write_shard


def _make(root, name="train-00000", count=6, chip=8, fingerprint="f1"):
    rng = np.random.default_rng(0)
    xs = rng.integers(-127, 128, (count, BANDS, chip, chip), dtype=np.int8)
    ys = rng.integers(0, 5, (count, chip, chip), dtype=np.uint8)

    def fill(x, y):
        x[:] = xs
        y[:] = ys

    write_shard(root, name, count, chip, fill, {"fingerprint": fingerprint, "chips": []})
    return xs, ys


def test_written_shard_reads_back_by_pread_and_memmap(tmp_path):
    xs, ys = _make(tmp_path)
    write_index(tmp_path, {"splits": {"train": ["train-00000"]}})
    shards = ShardSet(tmp_path, "train")
    x_out = np.empty((3, BANDS, 8, 8), np.int8)
    y_out = np.empty((3, 8, 8), np.uint8)
    shards.read_into(0, 2, 3, x_out, y_out)
    assert np.array_equal(x_out, xs[2:5]) and np.array_equal(y_out, ys[2:5])
    assert np.array_equal(shards.shards[0].x, xs)
    shards.close()


def test_validity_needs_manifest_fingerprint_size_and_checksum(tmp_path):
    _make(tmp_path)
    assert shard_is_valid(tmp_path, "train-00000", "f1")
    assert not shard_is_valid(tmp_path, "train-00000", "other-plan")
    x_path, y_path, manifest = shard_files(tmp_path, "train-00000")
    data = bytearray(y_path.read_bytes())
    data[200] ^= 1
    y_path.write_bytes(bytes(data))
    assert shard_is_valid(tmp_path, "train-00000", "f1", checksums=False)  # same size
    assert not shard_is_valid(tmp_path, "train-00000", "f1")
    _make(tmp_path)
    with open(x_path, "r+b") as f:
        f.truncate(100)
    assert not shard_is_valid(tmp_path, "train-00000", "f1", checksums=False)
    _make(tmp_path)
    manifest.write_text(manifest.read_text()[:-10])  # torn manifest
    assert not shard_is_valid(tmp_path, "train-00000", "f1")


def test_failed_fill_leaves_nothing(tmp_path):
    def fill(x, y):
        raise RuntimeError("disk full")

    try:
        write_shard(tmp_path, "train-00000", 2, 8, fill, {})
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
