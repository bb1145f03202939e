"""The report's products as other tools take them: the damage maps are valid Cloud-Optimized GeoTIFFs
with overviews (rio-cogeo's validator), the result layer passes the OGC GeoParquet core, covering and
distribution classes (geoparquet-validator: bbox covering column, spatially ordered row groups, ZSTD)."""

import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from app.batch import result_layer
from app.batch.damage_map import write_stack_map
from app.batch.layout import BatchLayout
from app.sure2.output import footer_summary

VALIDATOR = shutil.which("geoparquet-validator") or str(Path(sys.executable).parent / "geoparquet-validator")


@pytest.fixture(scope="module")
def finished(reported):
    return reported


def validate_geoparquet(path) -> str:
    r = subprocess.run([VALIDATOR, "check", str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_damage_map_of_a_batch_is_a_valid_cog(finished):
    (tif,) = (finished / ".batch").glob("damage_*.tif")
    valid, errors, warnings = cog_validate(str(tif))
    assert valid and not errors, (errors, warnings)


def test_a_large_damage_map_is_a_cog_with_overviews_and_the_patches_pixels(tmp_path):
    size, n_dates = 2048, 10
    dates = [date(2025, 5, 1) + timedelta(days=10 * k) for k in range(n_dates)]
    stack = SimpleNamespace(width=size, height=size, crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6700000),
                            dates=dates, doy=np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64))
    rng = np.random.default_rng(3)
    patches = []
    for row0, col0 in rng.integers(0, size - 40, size=(60, 2)):
        classes = rng.integers(0, 3, size=(30, 40)).astype(np.uint8)
        patches.append((int(row0), int(col0), classes, np.where(classes == 2, 3, 65535).astype(np.uint16)))
    path = tmp_path / "damage_utm33.tif"
    write_stack_map(stack, patches, path)
    valid, errors, warnings = cog_validate(str(path))
    assert valid and not errors and not warnings, (errors, warnings)
    with rasterio.open(path) as m:
        assert m.overviews(1) == m.overviews(2) and len(m.overviews(1)) >= 2
        classes = m.read(1)
        assert set(np.unique(m.read(1, out_shape=(size // 4, size // 4)))) <= {0, 1, 2}  # nearest: no blends
    row0, col0, patch, _ = patches[-1]
    seen = patch > 0
    assert (classes[row0:row0 + 30, col0:col0 + 40][seen] == patch[seen]).all()


def test_result_layer_is_distribution_conformant(finished):
    report = validate_geoparquet(finished / ".batch" / "season_result.parquet")
    assert "distribution: " in report and "NOT CONFORMANT" not in report
    meta = pq.ParquetFile(finished / ".batch" / "season_result.parquet").metadata
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}


def test_result_layer_row_groups_are_spatially_ordered(season, finished, tmp_path, monkeypatch):
    """Many row groups (8 rows each): the validator measures how well their boxes prune."""
    monkeypatch.setattr(result_layer, "ROW_GROUP", 8)
    layout = BatchLayout(tmp_path / "out")
    layout.create()
    rows = {fid: {**footer_summary(finished / f"{fid}.parquet"), "state": "assessed"} for fid in season.field_ids}
    result_layer.write_result_layer(season, rows, layout)
    report = validate_geoparquet(layout.result_parquet)
    assert "PASS  /conf/distribution/spatial-order" in report, report
    table = pq.read_table(layout.result_parquet)
    assert sorted(table.column("field_id").to_pylist()) == sorted(season.field_ids)
    assert pq.ParquetFile(layout.result_parquet).metadata.num_row_groups == -(-len(season.field_ids) // 8)
