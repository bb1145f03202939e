import json
import tomllib

import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely

from app.emb import BANDS
from app.emb.labels import load_class_map
from app.emb.quant import NODATA, dequantise_np, nodata_pixels
from app.emb.synth import UNMAPPED_CODE, SynthSpec, synth
from tests.emb.conftest import run_py, tile_truth


def _pixels_and_classes(src):
    """Dequantised vectors and true classes of every tile's valid pixels (non-crop 0 included)."""
    xs, ys = [], []
    for path in sorted(src.glob("*.tif")):
        with rasterio.open(path) as ds:
            q = ds.read()
            label = tile_truth(src, path)
        keep = ~nodata_pixels(q)
        xs.append(dequantise_np(q)[:, keep].T)
        ys.append(label[keep])
    return np.concatenate(xs), np.concatenate(ys)


def test_tiles_are_published_int8_unit_vectors_in_utm_at_10m(emb_src):
    tifs = sorted(emb_src.glob("*.tif"))
    assert len(tifs) == 4
    with rasterio.open(tifs[0]) as ds:
        assert ds.count == BANDS and ds.dtypes[0] == "int8" and ds.nodata == NODATA
        assert ds.crs.to_epsg() == 32633 and ds.res == (10.0, 10.0) and ds.transform.e < 0
        assert ds.shape == (192, 192)
        q = ds.read()
    missing = nodata_pixels(q)
    assert 0.05 < missing.mean() < 0.12 and missing[-1, -1] and not missing[0, 0]  # the south-east corner
    norms = np.linalg.norm(dequantise_np(q)[:, ~missing], axis=0)
    # The published rule's rounding moves a component by < 0.0079 (0.00006 near 0): lengths stay near 1.
    assert abs(norms.mean() - 1) < 0.01 and norms.min() > 0.97 and norms.max() < 1.03
    # The rule, not v*127: a unit vector's components are mostly small, so |q| sits far above 127·|v|.
    assert np.median(np.abs(q[:, ~missing])) > 2 * 127 * np.median(np.abs(dequantise_np(q)[:, ~missing]))


def test_parcels_are_eurocrops_style_geoparquet_with_a_matching_class_map(emb_src):
    table = pq.read_table(emb_src / "parcels.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["id"]["code"] == 4326
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert shapely.is_valid(geoms).all() and table.num_rows > 100
    lon, lat = shapely.get_coordinates(geoms).T
    assert 14 < lon.min() and lon.max() < 16 and 59 < lat.min() and lat.max() < 61  # southern Norway, lon/lat

    class_map = load_class_map(emb_src / "class_map.toml")
    assert class_map.code_column == "EC_hcat_c" and class_map.classes == 5
    codes, truth = table.column("EC_hcat_c").to_pylist(), table.column("true_class").to_pylist()
    unmapped = [c for c in codes if c not in class_map.codes]
    assert set(unmapped) == {UNMAPPED_CODE[1]} and 0.01 < len(unmapped) / len(codes) < 0.1
    for code, k in zip(codes, truth):
        if code in class_map.codes:
            assert class_map.codes[code] == k  # the map sends every listed code to its true class
    assert {class_map.codes[c] for c in codes if c in class_map.codes} == {0, 1, 2, 3, 4}
    doc = tomllib.loads((emb_src / "class_map.toml").read_text())
    assert doc["unmapped"] == "ignore"


def test_class_is_in_the_embeddings_but_not_trivially(emb_src):
    """Ground truth check: nearest class mean classifies pixels far above chance, below perfection."""
    x, y = _pixels_and_classes(emb_src)
    means = np.stack([x[y == k].mean(0) for k in range(5)])
    pred = np.argmax(x @ means.T - 0.5 * (means ** 2).sum(1), axis=1)
    accuracy = (pred == y).mean()
    majority = np.bincount(y).max() / y.size
    assert 0.55 < accuracy < 0.98, accuracy  # learnable, with within-class variation and noise
    assert accuracy > majority + 0.15
    # Non-crop covers gaps between fields, land-use parcels and unregistered fields: a real share of the land.
    assert 0.15 < (y == 0).mean() < 0.6


def test_tiles_take_the_zones_in_turn(tmp_path):
    paths = synth(tmp_path, SynthSpec(tiles=3, size=32, classes=3, seed=1, zones=(32, 33)))
    epsg = []
    for path in paths[:3]:
        with rasterio.open(path) as ds:
            epsg.append(ds.crs.to_epsg())
    assert epsg == [32632, 32633, 32632]


def test_same_seed_same_data(tmp_path):
    a = synth(tmp_path / "a", SynthSpec(tiles=1, size=64, classes=3, seed=5))
    b = synth(tmp_path / "b", SynthSpec(tiles=1, size=64, classes=3, seed=5))
    with rasterio.open(a[0]) as da, rasterio.open(b[0]) as db:
        assert np.array_equal(da.read(), db.read())
    assert a[1].read_bytes() == b[1].read_bytes()


def test_bad_arguments_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "never"
    for bad in (["--size", "30"], ["--classes", "1"], ["--tiles", "0"], ["--size", "x"], ["--zones", "61"],
                ["--zones", "32,x"]):
        proc = run_py("-m", "app.emb", "synth", "--out", str(out), *bad, check=False)
        assert proc.returncode == 2, bad
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()
