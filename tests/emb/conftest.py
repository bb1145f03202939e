"""Shared EMB fixtures: one small generated dataset, its shards, and one short training run.

Sizes are chosen for 2 shared CPU cores: 4 tiles of 192² px (published int8 format, one with a
nodata corner), 32² chips in geographic blocks of 96 px, the smoke model.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
TORCHRUN = str(Path(PY).with_name("torchrun"))
SMOKE = str(ROOT / "app" / "emb" / "configs" / "smoke.toml")

SYNTH_ARGS = ["--tiles", "4", "--size", "192", "--classes", "5", "--seed", "7"]
PREPARE_ARGS = ["--chip", "32", "--block", "96", "--val-frac", "0.4", "--shard-chips", "24"]


def label_args(src) -> list[str]:
    """prepare's label options for a directory written by `app.emb synth` (any path form: host or container)."""
    return ["--parcels", f"{src}/parcels.parquet", "--class-map", f"{src}/class_map.toml"]


def run_py(*args, timeout=600, check=True, **kw):
    """Run `python <args>` from the repo root; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def train_cmd(shards, run_dir, *overrides, nproc=1):
    base = ["-m", "app.emb.train", "--config", SMOKE, f"data.shards={shards}", f"run.dir={run_dir}", *overrides]
    if nproc == 1:
        return [PY, *base]
    return [TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", *base]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def emb_src(tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "src"
    run_py("-m", "app.emb", "synth", "--out", str(out), *SYNTH_ARGS)
    return out


@pytest.fixture(scope="session")
def emb_shards(emb_src):
    out = emb_src.parent / "shards"
    run_py("-m", "app.emb", "prepare", "--src", str(emb_src), "--out", str(out), *label_args(emb_src), *PREPARE_ARGS)
    return out


# 100 steps of the smoke model reach mIoU ≈ 0.75 on this data (measured); see test_train.py.
TRAINED_STEPS = 100


@pytest.fixture(scope="session")
def trained_run(emb_shards):
    run_dir = emb_shards.parent / "trained"
    proc = subprocess.run(train_cmd(emb_shards, run_dir, f"train.steps={TRAINED_STEPS}", "train.eval_every=50",
                                    "train.log_every=10", "train.ckpt_every=1000"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def write_vector(parquet, out, driver, crs="EPSG:4326", layer=None, replace=None):
    """The synth GeoParquet rewritten as `driver` (GPKG, ESRI Shapefile), via pyogrio as users' tools do.

    replace: {column: values} swaps attribute columns (e.g. integer codes). `crs=None` writes no CRS.
    A path ending in .zip becomes a zipped Shapefile (one .shp with its side files in a folder).
    """
    import warnings
    import zipfile

    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyogrio

    table = pq.read_table(parquet).replace_schema_metadata(None)
    for name, values in (replace or {}).items():
        table = table.set_column(table.column_names.index(name), name, pa.array(values))
    out = Path(out)
    target = out.with_suffix(".shp") if out.suffix == ".zip" else out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio warns when asked for a file without CRS: that is the point
        pyogrio.write_arrow(table, str(target), driver=driver, geometry_name="geometry", geometry_type="Polygon",
                            crs=crs, layer=layer)
    if out.suffix == ".zip":
        with zipfile.ZipFile(out, "w") as z:
            for part in sorted(target.parent.glob(f"{target.stem}.*")):
                if part != out:
                    z.write(part, f"parcels/{part.name}")
                    part.unlink()
    return out


def tile_truth(src, path):
    """Ground truth of a synth tile: the generated class of the parcel under each pixel centre (0 where none)."""
    import pyarrow.parquet as pq
    import rasterio
    import shapely
    from pyproj import CRS
    from rasterio.features import rasterize

    from app.vector import reproject

    table = pq.read_table(Path(src) / "parcels.parquet")
    mine = [i for i, t in enumerate(table.column("tile").to_pylist()) if t == Path(path).stem]
    lonlat = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))[mine]
    with rasterio.open(path) as ds:
        geoms = reproject(lonlat, CRS.from_epsg(4326), CRS.from_user_input(ds.crs))
        shape, transform = ds.shape, ds.transform
    classes = table.column("true_class").to_numpy()[mine]
    return rasterize(zip(geoms, classes.tolist()), out_shape=shape, transform=transform, fill=0, dtype="uint8")
