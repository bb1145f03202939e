"""What the season's report adds after a real batch run: the damage GeoTIFF per stack (CRS, transform,
classes, dates against the outputs and the generator's per-pixel truth) and the area-unit results."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from app.sure2.output import footer_summary, read_footer
from app.sure2.payout import payout_cents
from app.sure2.pixels import DAMAGED, NO_DATA, read_patch
from tests.batch.conftest import run_batch


@pytest.fixture(scope="module")
def finished(season_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("products") / "out"
    r = run_batch(season_dir, out)
    assert r.returncode == 0, r.stderr
    assert "damage map(s)" in r.stderr and "area units" in r.stderr
    return out


def test_damage_map_has_the_stacks_grid_and_the_outputs_classes(season, season_dir, finished):
    (name, stack), = season.stacks.items()
    with rasterio.open(finished / ".batch" / f"damage_{name}.tif") as m, \
            rasterio.open(season_dir / "truth_damage.tif") as truth:
        assert m.crs.to_string() == stack.crs and tuple(m.transform)[:6] == tuple(stack.transform)[:6]
        assert (m.width, m.height, m.count, m.dtypes) == (stack.width, stack.height, 2, ("uint16", "uint16"))
        assert m.block_shapes == [(256, 256)] * 2 and m.nodata == 0 and m.colormap(1)[DAMAGED][:3] == (215, 48, 39)
        classes, doy = m.read(1), m.read(2)
        true = truth.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2} and DAMAGED in classes
    assert ((doy > 0) == (classes == DAMAGED)).all()  # a date exactly where there is damage
    assert set(np.unique(doy[doy > 0])) <= set(stack.doy.astype(int))
    judged = classes > 0
    assert (true[judged] > 0).all()  # judged pixels are field pixels
    assert np.mean((classes[judged] == DAMAGED) == (true[judged] == 2)) >= 0.95
    for fid in season.field_ids:  # each field's patch is in the map as its output says
        footer = read_footer(finished / f"{fid}.parquet")
        if footer["damage_map"] is None:
            continue
        row0, col0, patch, _ = read_patch(footer["damage_map"])
        h, w = patch.shape
        seen = patch != NO_DATA
        assert (classes[row0:row0 + h, col0:col0 + w][seen] == patch[seen]).all(), fid


def test_area_units_written_once_each_with_exact_money(season, season_dir, finished):
    contracts = pq.read_table(season_dir / "units.parquet").to_pylist()
    units = pq.read_table(finished / ".batch" / "units.parquet").to_pylist()
    assert [u["unit_id"] for u in units] == [c["unit_id"] for c in contracts]
    cat = season.columns(("region_id", "crop"))
    assert sum(u["n_fields"] for u in units) == len(season.field_ids) == len(cat["crop"])
    assessed = [u for u in units if u["status"] == "assessed"]
    assert assessed, [(u["unit_id"], u["reason"], u["detail"]) for u in units]
    for u in assessed:
        assert u["amount_cents"] == payout_cents(u["insured_sum_cents"], u["fraction"])
        assert u["terms"] == "percentile" and 0 <= u["percentile"] <= 100 and u["history_years"] == 10
        assert len(u["dates"]) == len(u["ndvi_smooth"]) == 37 and u["assessed_area_ha"] >= 0.5 * u["area_ha"]
    text = (finished / ".batch" / "units.txt").read_text()
    assert all(u["unit_id"] in text for u in units)


def test_result_layer_carries_each_fields_damaged_share_and_hectares(season, finished):
    layer = {r["field_id"]: r for r in pq.read_table(finished / ".batch" / "season_result.parquet").to_pylist()}
    assert sorted(layer) == sorted(season.field_ids)  # one feature per field (in spatial order)
    damaged = 0
    for fid in season.field_ids:
        said = footer_summary(finished / f"{fid}.parquet")
        row = layer[fid]
        assert (row["damaged_fraction"], row["damaged_ha"]) == (said["damaged_fraction"], said["damaged_ha"]), fid
        damaged += bool(row["damaged_fraction"])
    assert damaged > 0  # the generator's hail swaths show up in QGIS as a column, not only in the map
