"""Embedding rasters as published and as mirrored: int8 kept byte for byte, float exports, bottom-up storage."""

import numpy as np
import pytest
import rasterio

from app.emb.quant import NODATA, dequantise_np
from app.emb.raster import EmbeddingRaster
from app.emb.synth import SynthSpec, synth
from app.errors import BadInput


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("tile"), SynthSpec(tiles=1, size=64, classes=3, seed=2))[0]


def rewrite(src, dst, data=None, bottom_up=False, **profile_changes):
    """A copy of src with other data/dtype, optionally stored bottom-up (positive y pixel size)."""
    with rasterio.open(src) as ds:
        profile, arr, t = ds.profile, ds.read(), ds.transform
    arr = arr if data is None else data
    if bottom_up:
        arr = arr[:, ::-1, :]
        profile["transform"] = rasterio.Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * arr.shape[1])
    profile.update(profile_changes)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(arr)
    return dst


def test_int8_is_read_byte_for_byte_with_its_nodata(tile):
    with rasterio.open(tile) as ds:
        raw = ds.read()
    with EmbeddingRaster(tile) as r:
        assert not r.bottom_up and r.grid.transform[4] < 0
        got = r.read(5, 7, 20, 30)
        assert np.array_equal(got, raw[:, 5:25, 7:37])
        assert np.array_equal(r.read(0, 0, 64, 64), raw)
        corner = r.valid_rows(60, 4)
        assert not corner[-1, -1] and corner[0, 0]  # synth's nodata triangle, south-east
        assert (raw[:, 63, 63] == NODATA).all()


def test_bottom_up_storage_reads_as_the_same_north_up_tile(tile, tmp_path):
    flipped = rewrite(tile, tmp_path / "bottom_up.tif", bottom_up=True)
    with rasterio.open(flipped) as ds:
        assert ds.transform.e > 0  # really stored bottom-up
    with EmbeddingRaster(tile) as a, EmbeddingRaster(flipped) as b:
        assert b.bottom_up and a.grid == b.grid
        assert np.array_equal(a.read(3, 9, 17, 21), b.read(3, 9, 17, 21))
        assert np.array_equal(a.valid_rows(50, 14), b.valid_rows(50, 14))


def test_float_export_is_quantised_by_the_published_rule(tile, tmp_path):
    with rasterio.open(tile) as ds:
        raw = ds.read()
    floats = dequantise_np(raw)
    floats[:, raw[0] == NODATA] = np.nan
    path = rewrite(tile, tmp_path / "float.tif", data=floats, dtype="float32", nodata=None)
    with EmbeddingRaster(path) as r:
        assert np.array_equal(r.read(0, 0, 64, 64), raw)  # the exact int8, nodata included


def test_other_rasters_are_bad_input(tile, tmp_path):
    with rasterio.open(tile) as ds:
        raw = ds.read()
    few = tmp_path / "three.tif"
    with rasterio.open(tile) as ds:
        profile = ds.profile
    profile.update(count=3)
    with rasterio.open(few, "w", **profile) as out:
        out.write(raw[:3])
    as_int16 = rewrite(tile, tmp_path / "int16.tif", data=raw.astype(np.int16), dtype="int16")
    for path, says in ((few, "64"), (as_int16, "int8"), (tmp_path / "absent.tif", "cannot read")):
        with pytest.raises(BadInput, match=says):
            EmbeddingRaster(path)
