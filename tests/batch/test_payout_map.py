"""The season's PNG map stays readable when one field lies far from the others: the bulk of the season
keeps its size on the map, and the far field is marked at the frame's edge, not drawn as a dot off in
a corner of an empty map."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
import shapely.affinity
from PIL import Image

from app.batch.payout_map import BACKGROUND, draw_payout_map


def _rows(season):
    return {fid: {"state": "assessed", "amount_cents": 1000 * (i % 3), "currency": "NOK"}
            for i, fid in enumerate(season.field_ids)}


def _coloured_pixels(path) -> int:
    image = np.asarray(Image.open(path).convert("RGB"))
    return int((image != np.array(BACKGROUND, dtype=np.uint8)).any(axis=2).sum())


def test_one_far_field_does_not_shrink_the_season_to_a_dot(season, season_dir, tmp_path):
    from app.sure2.season import Season

    near = tmp_path / "near.png"
    draw_payout_map(season, _rows(season), near)
    far_season = tmp_path / "season"
    shutil.copytree(season_dir, far_season)
    table = pq.read_table(far_season / "fields.parquet")
    victim = table["field_id"][0].as_py()
    moved = shapely.affinity.translate(shapely.from_wkb(table["geometry"][0].as_py()), xoff=3.0)  # ≈170 km east
    geometry = pc.if_else(pc.equal(table["field_id"], victim), pa.scalar(shapely.to_wkb(moved)), table["geometry"])
    table = table.set_column(table.schema.get_field_index("geometry"), "geometry", geometry)
    pq.write_table(table, far_season / "fields.parquet")
    far = tmp_path / "far.png"
    with Season.open(far_season) as s:
        note = draw_payout_map(s, _rows(s), far)
    assert note.startswith("payout map")
    # the bulk is drawn at (about) the same scale as without the far field: not squeezed into a corner
    assert _coloured_pixels(far) > 0.8 * _coloured_pixels(near)
