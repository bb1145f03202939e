import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely
from rasterio.features import rasterize

from app.emb import IGNORE
from app.emb.synth import SynthSpec, synth
from tests.emb.conftest import run_py


def test_class_map_has_the_inputs_grid_and_finds_the_crops(trained_run, emb_src, tmp_path):
    tile = sorted(emb_src.glob("*.tif"))[0]
    out = tmp_path / "classes.tif"
    run_py("-m", "app.emb", "predict", "--checkpoint", str(trained_run), "--input", str(tile), "--out", str(out))
    with rasterio.open(tile) as src, rasterio.open(out) as got:
        assert got.crs == src.crs and got.transform == src.transform
        assert got.shape == src.shape and got.count == 1 and got.dtypes[0] == "uint8"
        pred = got.read(1)
        transform, shape = src.transform, src.shape
    # Ground truth from the parcels: agreement far above the majority-class share.
    table = pq.read_table(emb_src / "parcels.parquet")
    mine = [i for i, t in enumerate(table.column("tile").to_pylist()) if t == tile.stem]
    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    classes = table.column("crop_class").to_numpy()
    truth = rasterize(((geoms[i], int(classes[i])) for i in mine), out_shape=shape, transform=transform,
                      fill=0, dtype="uint8")
    assert set(np.unique(pred)) <= set(range(5))
    accuracy = (pred == truth).mean()
    majority = np.bincount(truth.ravel()).max() / truth.size
    assert accuracy > majority + 0.15, (accuracy, majority)


def test_raster_smaller_than_a_chip_and_float_bands(trained_run, tmp_path):
    small = synth(tmp_path / "small", SynthSpec(tiles=1, size=32, classes=5, seed=11))[0]
    with rasterio.open(small) as src:
        profile = src.profile
        data = src.read().astype(np.float32) / 127
    # Same embeddings as float32 unit vectors, cropped to 20 x 28 px: smaller than the 32 px chip.
    profile.update(dtype="float32", width=28, height=20, tiled=False)
    profile.pop("blockxsize"), profile.pop("blockysize")
    floaty = tmp_path / "float.tif"
    with rasterio.open(floaty, "w", **profile) as dst:
        dst.write(data[:, :20, :28])
    out = tmp_path / "out.tif"
    run_py("-m", "app.emb", "predict", "--checkpoint", str(trained_run), "--input", str(floaty), "--out", str(out))
    with rasterio.open(out) as got:
        assert got.shape == (20, 28) and got.transform == profile["transform"]
        assert got.read(1).max() < IGNORE


def test_bad_checkpoint_or_input_exits_2_and_writes_nothing(trained_run, emb_src, tmp_path, capsys):
    from app.emb.__main__ import main

    tile = str(sorted(emb_src.glob("*.tif"))[0])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"truncated")
    out = tmp_path / "out.tif"
    proc = run_py("-m", "app.emb", "predict", "--checkpoint", str(junk), "--input", tile, "--out", str(out),
                  check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for args in (["--checkpoint", str(tmp_path / "absent"), "--input", tile],
                 ["--checkpoint", str(trained_run), "--input", str(emb_src / "parcels.parquet")],
                 ["--checkpoint", str(trained_run), "--input", tile, "--overlap", "0.95"]):
        assert main(["predict", *args, "--out", str(out)]) == 2, args
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [junk]
