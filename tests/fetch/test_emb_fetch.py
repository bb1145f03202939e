"""`app.emb fetch` through the same core: only the chips of prepare's grid that meet a parcel, bytes as
published, into `app.emb prepare` unchanged."""

import json

import numpy as np
import pyarrow.parquet as pq
import shapely
from fetch_world import EMB_YEAR, EMBEDDINGS, cli

from app.emb.prepare import window_offsets
from app.emb.raster import EmbeddingRaster
from app.vector import read_vector, reproject

CHIP = 128


def test_emb_fetch_keeps_the_chips_that_meet_parcels_byte_for_byte_and_prepare_takes_it(world, tmp_path):
    src = world.raw / "scenes" / "emb"
    table = pq.read_table(src / "parcels.parquet")
    mask = np.array([t == "tile-000" for t in table.column("tile").to_pylist()])
    subset = tmp_path / "parcels.parquet"
    pq.write_table(table.filter(mask).slice(0, 4), subset)  # a few parcels of tile 0
    out = tmp_path / "tiles"
    got = cli("app.emb", "fetch", "--parcels", subset, "--year", EMB_YEAR, "--catalog", world.stac.url,
              "--collection", EMBEDDINGS, "--out", out, "--allow-host", world.proxy.url, "--chip", CHIP,
              "--workers", 4, "--backoff", 0.02)
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    assert summary["fetched"] == 1 and summary["bytes_fetched"] < 0.7 * summary["full_assets_bytes"]
    # byte for byte inside every prepare chip that meets a parcel; nodata (-128) elsewhere
    parcels = read_vector(subset)
    with EmbeddingRaster(src / "tile-000.tif") as full, EmbeddingRaster(out / "tile-000.tif") as mine:
        b = shapely.bounds(reproject(parcels.geometry, parcels.crs, full.crs))
        a, _, c, _, e, f = full.grid.transform
        meets, with_data, empty = 0, 0, 0
        for r0 in window_offsets(full.grid.height, CHIP, CHIP):
            for c0 in window_offsets(full.grid.width, CHIP, CHIP):
                x0, x1, y1, y0 = c + c0 * a, c + (c0 + CHIP) * a, f + r0 * e, f + (r0 + CHIP) * e
                hit = ((b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)).any()
                mine_chip = mine.read(r0, c0, CHIP, CHIP)
                nodata = (mine_chip == -128).all()
                with_data += not nodata
                meets += hit
                if hit or not nodata:  # a fetched COG tile may hold a neighbouring chip too
                    assert np.array_equal(mine_chip, full.read(r0, c0, CHIP, CHIP))
                else:
                    empty += 1
        assert meets > 0 and empty > 0
    got = cli("app.emb", "prepare", "--src", out, "--parcels", subset, "--class-map", src / "class_map.toml",
              "--out", tmp_path / "shards", "--chip", CHIP)
    assert got.returncode == 0, got.stderr
    report = json.loads((tmp_path / "shards" / "report.json").read_text())
    assert 1 <= report["chips"]["train"] + report["chips"]["val"] <= with_data  # prepare drops chips across split blocks
    # a rerun keeps the tile
    again = cli("app.emb", "fetch", "--parcels", subset, "--year", EMB_YEAR, "--catalog", world.stac.url,
                "--collection", EMBEDDINGS, "--out", out, "--allow-host", world.proxy.url, "--chip", CHIP)
    assert again.returncode == 0 and json.loads(again.stdout)["already_fetched"] == 1
