import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.warp import Resampling, reproject

from app.code_digest import code_digest
from app.emb import BANDS, IGNORE
from app.emb.labels import load_class_map
from app.emb.prepare import REPORT, LabelSpec, PrepareSpec, prepare
from app.emb.quant import NODATA
from app.emb.shards import ShardSet, read_index, shard_files
from app.vector import reproject as reproject_geoms
from tests.emb.conftest import PREPARE_ARGS, label_args, run_py, write_vector

SPEC = PrepareSpec(chip=32, stride=32, block=96, val_frac=0.4, shard_chips=24)


def labels_of(src):
    return LabelSpec(str(src / "parcels.parquet"), str(src / "class_map.toml"))


def chips_of(shards):
    """Every chip's (split, manifest entry, x, y), in shard order."""
    index = read_index(shards)
    out = []
    for split, names in index["splits"].items():
        for name in names:
            manifest = json.loads(shard_files(shards, name)[2].read_text())
            x = np.load(shard_files(shards, name)[0], mmap_mode="r")
            y = np.load(shard_files(shards, name)[1], mmap_mode="r")
            out += [(split, c, x[i], y[i]) for i, c in enumerate(manifest["chips"])]
    return out


def footprint_lonlat(chip, crs_wkt, side=32):
    """The chip's ground as a lon/lat polygon (edges densified)."""
    a, _, c, _, e, f = chip["transform"]
    box = shapely.segmentize(shapely.box(c, f + side * e, c + side * a, f), 10.0)
    to_ll = Transformer.from_crs(CRS.from_wkt(crs_wkt), CRS.from_epsg(4326), always_xy=True)
    return shapely.transform(box, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))


def test_a_few_large_files_not_one_per_chip(emb_shards):
    index = read_index(emb_shards)
    files = sorted(p.name for p in emb_shards.iterdir())
    n_shards = sum(len(v) for v in index["splits"].values())
    n_chips = sum(index["chips"].values())
    assert len(files) == 3 * n_shards + 2  # x + y + manifest per shard, one index, one report
    assert n_chips > 3 * len(files)
    assert index["splits"]["train"] and index["splits"]["val"]
    assert index["class_names"] == ["non-crop", "wheat", "barley", "oats", "potatoes"]
    assert "127.5" in index["quantisation"]


def test_arrays_are_int8_chips_and_uint8_labels(emb_shards):
    shards = ShardSet(emb_shards, "train")
    s = shards.shards[0]
    assert s.x.dtype == np.int8 and s.x.shape[1:] == (BANDS, 32, 32)
    assert s.y.dtype == np.uint8 and s.y.shape[1:] == (32, 32)
    assert set(np.unique(s.y)) <= {0, 1, 2, 3, 4, IGNORE}
    shards.close()


def test_chips_keep_the_source_bytes_and_labels_follow_codes_boundaries_and_nodata(emb_shards, emb_src):
    """Ground truth: each chip is its tile's window byte for byte; a labelled pixel's class is the class
    map's id for the code of the parcel under its centre (0 where none); unmapped parcels and nodata
    pixels are ignore."""
    index = read_index(emb_shards)
    table = pq.read_table(emb_src / "parcels.parquet")
    class_map = load_class_map(emb_src / "class_map.toml")
    lonlat = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    geoms = reproject_geoms(lonlat, CRS.from_epsg(4326), CRS.from_epsg(32633))
    wanted = np.array([class_map.codes.get(c, IGNORE) for c in table.column("EC_hcat_c").to_pylist()])
    nodata_seen = unmapped_seen = 0
    for split, chip, x, y in chips_of(emb_shards):
        tile = index["tiles"][chip["tile"]]
        a, _, c, _, e, f = chip["transform"]
        assert (c, f) == (tile["transform"][2] + chip["col"] * a, tile["transform"][5] + chip["row"] * e)
        with rasterio.open(emb_src / tile["name"]) as ds:
            assert np.array_equal(x, ds.read(window=rasterio.windows.Window(chip["col"], chip["row"], 32, 32)))
        rows, cols = np.mgrid[0:32, 0:32]
        pts = shapely.points(c + (cols.ravel() + 0.5) * a, f + (rows.ravel() + 0.5) * e)
        near = shapely.STRtree(geoms).query(shapely.box(c, f + 32 * e, c + 32 * a, f))
        truth = np.zeros(len(pts), np.int64)
        for g, k in zip(geoms[near], wanted[near]):
            truth[shapely.contains(g, pts)] = k
        truth = truth.reshape(32, 32)
        missing = (x == NODATA).all(0)
        assert (y[missing] == IGNORE).all()
        assert (y[truth == IGNORE] == IGNORE).all()  # unmapped parcels are not taught as non-crop
        labelled = y != IGNORE
        assert np.array_equal(y[labelled], truth[labelled])
        assert (y == IGNORE).any()  # parcel boundaries are ignored
        nodata_seen += missing.sum()
        unmapped_seen += (truth == IGNORE).sum()
    assert nodata_seen > 0 and unmapped_seen > 0  # both cases were really exercised


def test_spatial_split_shares_no_ground(emb_shards):
    index = read_index(emb_shards)
    feet = {"train": [], "val": []}
    for split, chip, _, _ in chips_of(emb_shards):
        feet[split].append(footprint_lonlat(chip, index["tiles"][chip["tile"]]["crs"]))
    assert shapely.intersection(shapely.union_all(feet["train"]), shapely.union_all(feet["val"])).area == 0


def test_the_report_counts_parcels_codes_and_chips(emb_shards, emb_src):
    report = json.loads((emb_shards / REPORT).read_text())
    table = pq.read_table(emb_src / "parcels.parquet")
    codes = table.column("EC_hcat_c").to_pylist()
    class_map = load_class_map(emb_src / "class_map.toml")
    n_unmapped = sum(c not in class_map.codes for c in codes)
    assert report["parcels"]["features"] == len(codes)
    assert report["parcels"]["unmapped"]["parcels"] == n_unmapped > 0
    assert sum(report["parcels"]["parcels_by_class"].values()) + report["parcels"]["ignored_parcels"] == len(codes)
    tile0 = report["tiles"]["tile-000.tif"]
    assert tile0["nodata"] == 1  # the south-east corner chip lies wholly in synth's nodata triangle
    assert sum(sum(t[k] for k in ("train", "val", "straddling", "nodata")) for t in report["tiles"].values()) == 4 * 36


def test_chips_without_data_are_dropped(emb_src, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(emb_src, src)
    with rasterio.open(src / "tile-001.tif", "r+") as ds:
        q = ds.read()
        q[:, :96, :96] = NODATA  # the north-west quarter: 9 whole chips of sea
        ds.write(q)
    result = prepare(src, tmp_path / "shards", SPEC, labels_of(src))
    assert result["report"]["tiles"]["tile-001.tif"]["nodata"] == 9
    assert not [c for _, c, _, _ in chips_of(tmp_path / "shards") if c["tile"] == 1 and c["row"] < 96 and c["col"] < 96]


def test_a_bottom_up_tile_gives_the_same_chips(emb_src, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(emb_src, src)
    for path in src.glob("*.tif"):
        with rasterio.open(path) as ds:
            profile, q, t = ds.profile, ds.read(), ds.transform
        profile["transform"] = rasterio.Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * ds.height)
        with rasterio.open(path, "w", **profile) as out:
            out.write(q[:, ::-1, :])  # stored bottom-up, as one public mirror does
    north = prepare(emb_src, tmp_path / "north", SPEC, labels_of(emb_src))
    south = prepare(src, tmp_path / "south", SPEC, labels_of(src))
    assert all(t["bottom_up"] for t in south["index"]["tiles"])
    assert [t["transform"] for t in south["index"]["tiles"]] == [t["transform"] for t in north["index"]["tiles"]]
    a, b = chips_of(tmp_path / "north"), chips_of(tmp_path / "south")
    assert len(a) == len(b) > 0
    for (sa, ca, xa, ya), (sb, cb, xb, yb) in zip(a, b):
        assert sa == sb and ca == cb and np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_tiles_in_two_zones_share_no_ground_across_the_split(emb_src, tmp_path):
    """The same ground in UTM 33 and (reprojected, like an overlapping tile of the next zone) in UTM 32."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("parcels.parquet", "class_map.toml", "tile-000.tif"):
        shutil.copy(emb_src / name, src / name)
    with rasterio.open(emb_src / "tile-000.tif") as ds:
        q, profile = ds.read(), ds.profile
        ll = Transformer.from_crs(ds.crs, "EPSG:32632", always_xy=True)
        x0, y0 = ll.transform(ds.bounds.left, ds.bounds.top)
        dst_t = rasterio.Affine(10.0, 0, round(x0, -1) - 300, 0, -10.0, round(y0, -1) + 300)
        out = np.full((BANDS, 260, 260), NODATA, np.int8)
        reproject(q, out, src_transform=ds.transform, src_crs=ds.crs, dst_transform=dst_t, dst_crs="EPSG:32632",
                  src_nodata=NODATA, dst_nodata=NODATA, resampling=Resampling.nearest)
    profile.update(crs="EPSG:32632", transform=dst_t, width=260, height=260)
    with rasterio.open(src / "tile-zone32.tif", "w", **profile) as dst:
        dst.write(out)
    spec = PrepareSpec(chip=32, stride=16, block=64, val_frac=0.5, shard_chips=64, seed=3)
    result = prepare(src, tmp_path / "shards", spec, labels_of(src))
    index = result["index"]
    assert {CRS.from_wkt(t["crs"]).to_epsg() for t in index["tiles"]} == {32632, 32633}
    feet = {"train": [], "val": []}
    zones = {"train": set(), "val": set()}
    for split, chip, x, _ in chips_of(tmp_path / "shards"):
        tile = index["tiles"][chip["tile"]]
        feet[split].append(footprint_lonlat(chip, tile["crs"]))
        zones[split].add(CRS.from_wkt(tile["crs"]).to_epsg())
        with rasterio.open(src / tile["name"]) as ds:  # a chip is one tile's window: it never mixes zones
            assert np.array_equal(x, ds.read(window=rasterio.windows.Window(chip["col"], chip["row"], 32, 32)))
    assert zones["train"] == zones["val"] == {32632, 32633}  # both zones in both splits: the test has teeth
    train, val = shapely.union_all(feet["train"]), shapely.union_all(feet["val"])
    assert shapely.intersection(train, val).area == 0


@pytest.mark.parametrize("name,driver", [("parcels.gpkg", "GPKG"), ("parcels.zip", "ESRI Shapefile")])
def test_prepare_from_geopackage_and_shapefile_with_a_class_map(emb_src, emb_shards, tmp_path, name, driver):
    table = pq.read_table(emb_src / "parcels.parquet")
    codes = table.column("EC_hcat_c").to_pylist()
    as_int = [int(c) for c in codes]  # GPKG: integer codes, as national files often have them
    parcels = write_vector(emb_src / "parcels.parquet", tmp_path / name, driver,
                           replace={"EC_hcat_c": as_int} if driver == "GPKG" else None)
    out = tmp_path / "shards"
    proc = run_py("-m", "app.emb", "prepare", "--src", str(emb_src), "--parcels", str(parcels), "--class-map",
                  str(emb_src / "class_map.toml"), "--out", str(out), *PREPARE_ARGS)
    n_unmapped = sum(c not in load_class_map(emb_src / "class_map.toml").codes for c in codes)
    assert f"unmapped {n_unmapped} parcels with 1 codes (→ ignore)" in proc.stdout
    report = json.loads((out / REPORT).read_text())
    assert report["parcels"]["unmapped"]["parcels"] == n_unmapped
    for (sa, ca, xa, ya), (sb, cb, xb, yb) in zip(chips_of(emb_shards), chips_of(out), strict=True):
        assert ca == cb and np.array_equal(xa, xb) and np.array_equal(ya, yb)  # the same labels as from GeoParquet


def test_unmapped_as_non_crop_changes_only_those_parcels(emb_src, emb_shards, tmp_path):
    out = tmp_path / "shards"
    run_py("-m", "app.emb", "prepare", "--src", str(emb_src), *label_args(emb_src), "--unmapped", "non-crop",
           "--out", str(out), *PREPARE_ARGS)
    before, after = json.loads((emb_shards / REPORT).read_text()), json.loads((out / REPORT).read_text())
    moved = before["parcels"]["unmapped"]["parcels"]
    assert after["parcels"]["parcels_by_class"]["non-crop"] == before["parcels"]["parcels_by_class"]["non-crop"] + moved
    assert after["class_pixels"]["train"]["255"] < before["class_pixels"]["train"]["255"]


def test_a_parcel_file_without_crs_exits_2_and_writes_nothing(emb_src, tmp_path):
    parcels = write_vector(emb_src / "parcels.parquet", tmp_path / "nocrs.gpkg", "GPKG", crs=None)
    out = tmp_path / "never"
    proc = run_py("-m", "app.emb", "prepare", "--src", str(emb_src), "--parcels", str(parcels), "--class-map",
                  str(emb_src / "class_map.toml"), "--out", str(out), *PREPARE_ARGS, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "prepare: error: nocrs.gpkg has no CRS (a .prj or CRS definition is missing); add it to the file, "
        "a CRS is never guessed"]
    assert not out.exists()


def test_rerun_skips_valid_shards_and_rewrites_damaged_ones(emb_src, tmp_path):
    out = tmp_path / "shards"
    first = prepare(emb_src, out, SPEC, labels_of(emb_src))
    assert first["skipped"] == [] and len(first["written"]) >= 3
    again = prepare(emb_src, out, SPEC, labels_of(emb_src))
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
    third = prepare(emb_src, out, SPEC, labels_of(emb_src))
    assert sorted(third["written"]) == ["train-00000", "train-00001", "val-00000"]
    assert prepare(emb_src, out, SPEC, labels_of(emb_src))["written"] == []


def test_another_class_map_rewrites_every_shard(emb_src, emb_shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(emb_shards, out)
    class_map = tmp_path / "class_map.toml"
    class_map.write_text((emb_src / "class_map.toml").read_text().replace('unmapped = "ignore"', 'unmapped = "non-crop"'))
    result = prepare(emb_src, out, SPEC, LabelSpec(str(emb_src / "parcels.parquet"), str(class_map)))
    assert result["skipped"] == []


def test_shards_of_other_prepare_code_are_rewritten(emb_src, emb_shards, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(emb_shards, out)
    assert prepare(emb_src, out, SPEC, labels_of(emb_src))["written"] == []
    real = code_digest("shard")
    monkeypatch.setattr("app.emb.prepare.code_digest", lambda product: real[::-1] if product == "shard" else None)
    result = prepare(emb_src, out, SPEC, labels_of(emb_src))
    assert result["skipped"] == [] and result["written"]


def test_rewritten_shard_is_identical(emb_src, emb_shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(emb_shards, out)
    shard_files(out, "train-00000")[2].unlink()
    result = prepare(emb_src, out, SPEC, labels_of(emb_src))
    assert result["written"] == ["train-00000"]
    for i in (0, 1):
        assert shard_files(out, "train-00000")[i].read_bytes() == shard_files(emb_shards, "train-00000")[i].read_bytes()


@pytest.mark.parametrize("bad", [["--chip", "4"], ["--stride", "0"], ["--chip", "32", "--stride", "64"],
                                 ["--val-frac", "1.5"], ["--block", "16"], ["--chip", "256"],
                                 ["--unmapped", "drop"], ["--code-column", "nope"]])
def test_bad_arguments_exit_2_and_write_nothing(emb_src, tmp_path, bad):
    out = tmp_path / "never"
    proc = run_py("-m", "app.emb", "prepare", "--src", str(emb_src), *label_args(emb_src), "--out", str(out),
                  *PREPARE_ARGS, *bad, check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr
    assert not out.exists()


def test_missing_inputs_exit_2(emb_src, tmp_path):
    for src, labels, says in ((tmp_path, label_args(emb_src), "no *.tif"),
                              (emb_src, label_args(tmp_path), "does not exist")):
        proc = run_py("-m", "app.emb", "prepare", "--src", str(src), *labels, "--out", str(tmp_path / "o"),
                      *PREPARE_ARGS, check=False)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert not (tmp_path / "o").exists()
