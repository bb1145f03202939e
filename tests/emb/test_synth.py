import json

import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely
from rasterio.features import rasterize

from app.emb import BANDS
from app.emb.synth import EPSG, SynthSpec, synth
from tests.emb.conftest import run_py


def _pixels_and_classes(src):
    """Dequantised vectors and parcel classes of every tile's labelled pixels (non-crop 0 included)."""
    table = pq.read_table(src / "parcels.parquet")
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    classes = table.column("crop_class").to_numpy()
    tiles = table.column("tile").to_pylist()
    xs, ys = [], []
    for path in sorted(src.glob("*.tif")):
        with rasterio.open(path) as ds:
            emb = ds.read().astype(np.float32) / 127
            mine = [i for i, t in enumerate(tiles) if t == path.stem]
            label = rasterize(((geoms[i], int(classes[i])) for i in mine), out_shape=ds.shape,
                              transform=ds.transform, fill=0, dtype="uint8")
        xs.append(emb.reshape(BANDS, -1).T)
        ys.append(label.ravel())
    return np.concatenate(xs), np.concatenate(ys)


def test_tiles_are_unit_vectors_in_utm_at_10m(emb_src):
    tifs = sorted(emb_src.glob("*.tif"))
    assert len(tifs) == 4
    with rasterio.open(tifs[0]) as ds:
        assert ds.count == BANDS and ds.dtypes[0] == "int8"
        assert ds.crs.to_epsg() == EPSG and ds.res == (10.0, 10.0)
        assert ds.shape == (128, 128)
        norms = np.linalg.norm(ds.read().astype(np.float32) / 127, axis=0)
    # int8 rounding moves each component by <= 0.5/127: lengths stay within ~2% of 1.
    assert abs(norms.mean() - 1) < 0.01 and norms.min() > 0.97 and norms.max() < 1.03


def test_parcels_are_geoparquet_with_crop_classes(emb_src):
    table = pq.read_table(emb_src / "parcels.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["id"]["code"] == EPSG
    classes = table.column("crop_class").to_numpy()
    assert set(classes) == {1, 2, 3, 4}  # crops only: non-crop is where no parcel is
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert shapely.is_valid(geoms).all() and table.num_rows > 40


def test_class_is_in_the_embeddings_but_not_trivially(emb_src):
    """Ground truth check: nearest class mean classifies pixels far above chance, below perfection."""
    x, y = _pixels_and_classes(emb_src)
    means = np.stack([x[y == k].mean(0) for k in range(5)])
    pred = np.argmax(x @ means.T - 0.5 * (means ** 2).sum(1), axis=1)
    accuracy = (pred == y).mean()
    majority = np.bincount(y).max() / y.size
    assert 0.55 < accuracy < 0.98, accuracy  # learnable, with within-class variation and noise
    assert accuracy > majority + 0.15
    # Non-crop covers gaps between fields and left-out fields: a real share of the land.
    assert 0.15 < (y == 0).mean() < 0.6


def test_same_seed_same_data(tmp_path):
    a = synth(tmp_path / "a", SynthSpec(tiles=1, size=64, classes=3, seed=5))
    b = synth(tmp_path / "b", SynthSpec(tiles=1, size=64, classes=3, seed=5))
    with rasterio.open(a[0]) as da, rasterio.open(b[0]) as db:
        assert np.array_equal(da.read(), db.read())


def test_bad_arguments_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "never"
    for bad in (["--size", "30"], ["--classes", "1"], ["--tiles", "0"], ["--size", "x"]):
        proc = run_py("-m", "app.emb", "synth", "--out", str(out), *bad, check=False)
        assert proc.returncode == 2, bad
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()
