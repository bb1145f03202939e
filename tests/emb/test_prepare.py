import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

from app.emb import BANDS, IGNORE
from app.emb.prepare import PrepareSpec, prepare
from app.emb.shards import ShardSet, read_index, shard_files
from tests.emb.conftest import PREPARE_ARGS, run_py


def test_a_few_large_files_not_one_per_chip(emb_shards):
    index = read_index(emb_shards)
    files = sorted(p.name for p in emb_shards.iterdir())
    n_shards = sum(len(v) for v in index["splits"].values())
    n_chips = sum(index["chips"].values())
    assert len(files) == 3 * n_shards + 1  # x + y + manifest per shard, one index
    assert n_chips > 3 * len(files)
    assert index["splits"]["train"] and index["splits"]["val"]


def test_arrays_are_int8_chips_and_uint8_labels(emb_shards):
    shards = ShardSet(emb_shards, "train")
    s = shards.shards[0]
    assert s.x.dtype == np.int8 and s.x.shape[1:] == (BANDS, 32, 32)
    assert s.y.dtype == np.uint8 and s.y.shape[1:] == (32, 32)
    assert set(np.unique(s.y)) <= {0, 1, 2, 3, 4, IGNORE}
    shards.close()


def test_chips_carry_their_georeferencing_and_match_the_source(emb_shards, emb_src):
    """Chip i's embeddings are the tile's window at its recorded transform; labels follow the parcels."""
    manifest = json.loads(shard_files(emb_shards, "train-00000")[2].read_text())
    x = np.load(shard_files(emb_shards, "train-00000")[0], mmap_mode="r")
    y = np.load(shard_files(emb_shards, "train-00000")[1], mmap_mode="r")
    index = read_index(emb_shards)
    table = pq.read_table(emb_src / "parcels.parquet")
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    classes = table.column("crop_class").to_numpy()
    for i in (0, len(manifest["chips"]) - 1):
        chip = manifest["chips"][i]
        tile = index["tiles"][chip["tile"]]
        a, _, c, _, e, f = chip["transform"]
        assert (c, f) == (tile["transform"][2] + chip["col"] * a, tile["transform"][5] + chip["row"] * e)
        with rasterio.open(emb_src / tile["name"]) as ds:
            window = rasterio.windows.Window(chip["col"], chip["row"], 32, 32)
            assert np.array_equal(x[i], ds.read(window=window))
        # Ground truth: a labelled pixel's class is the class of the parcel under its centre (or 0).
        rows, cols = np.nonzero(y[i] != IGNORE)
        pts = shapely.points(c + (cols + 0.5) * a, f + (rows + 0.5) * e)
        truth = np.zeros(len(pts), np.uint8)
        for g, k in zip(geoms, classes):
            truth[shapely.contains(g, pts)] = k
        assert np.array_equal(y[i][rows, cols], truth)
        assert (y[i] == IGNORE).any()  # parcel boundaries are ignored


def _footprint(chip):
    a, _, c, _, e, f = chip["transform"]
    return shapely.box(c, f + 32 * e, c + 32 * a, f)


def test_spatial_split_shares_no_ground(emb_shards):
    index = read_index(emb_shards)
    feet = {}
    for split, names in index["splits"].items():
        feet[split] = [_footprint(c) for n in names
                       for c in json.loads(shard_files(emb_shards, n)[2].read_text())["chips"]]
    train = shapely.union_all(feet["train"])
    for box in feet["val"]:
        assert shapely.intersection(train, box).area == 0


def test_rerun_skips_valid_shards_and_rewrites_damaged_ones(emb_src, tmp_path):
    out = tmp_path / "shards"
    spec = PrepareSpec(chip=32, stride=32, block=64, val_frac=0.4, shard_chips=24)
    first = prepare(emb_src, out, spec)
    assert first["skipped"] == [] and len(first["written"]) >= 3
    again = prepare(emb_src, out, spec)
    assert again["written"] == [] and sorted(again["skipped"]) == sorted(first["written"])

    # A truncated array (killed writer, full disk) and a flipped byte (bad copy) are both caught.
    x_path = shard_files(out, "train-00000")[0]
    with open(x_path, "r+b") as f:
        f.truncate(x_path.stat().st_size // 2)
    y_path = shard_files(out, "val-00000")[1]
    data = bytearray(y_path.read_bytes())
    data[-1] ^= 0xFF
    y_path.write_bytes(bytes(data))
    shard_files(out, "train-00001")[2].unlink()  # no manifest: never committed
    third = prepare(emb_src, out, spec)
    assert sorted(third["written"]) == ["train-00000", "train-00001", "val-00000"]
    fourth = prepare(emb_src, out, spec)
    assert fourth["written"] == []


def test_rewritten_shard_is_identical(emb_src, emb_shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(emb_shards, out)
    shard_files(out, "train-00000")[2].unlink()
    result = prepare(emb_src, out, PrepareSpec(chip=32, stride=32, block=64, val_frac=0.4, shard_chips=24))
    assert result["written"] == ["train-00000"]
    for i in (0, 1):
        assert shard_files(out, "train-00000")[i].read_bytes() == shard_files(emb_shards, "train-00000")[i].read_bytes()


@pytest.mark.parametrize("bad", [["--chip", "4"], ["--stride", "0"], ["--chip", "32", "--stride", "64"],
                                 ["--val-frac", "1.5"], ["--block", "16"], ["--chip", "256"]])
def test_bad_arguments_exit_2_and_write_nothing(emb_src, tmp_path, bad):
    out = tmp_path / "never"
    proc = run_py("-m", "app.emb", "prepare", "--src", str(emb_src), "--out", str(out), *bad, check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr
    assert not out.exists()


def test_missing_inputs_exit_2(tmp_path):
    proc = run_py("-m", "app.emb", "prepare", "--src", str(tmp_path), "--out", str(tmp_path / "o"), *PREPARE_ARGS,
                  check=False)
    assert proc.returncode == 2 and "no *.tif" in proc.stderr
    assert not (tmp_path / "o").exists()
