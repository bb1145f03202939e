"""Per-field coverage-weighted NDVI means: exactextract against ours, side by side in one run.

    .venv/bin/python bench/sure2_zonal.py                 # generates a 2,000-field season in /dev/shm
    .venv/bin/python bench/sure2_zonal.py --data DIR      # an existing generated season

Every field × every date (37): the mean of the valid pixels weighted by the share of each pixel inside
the polygon (exactextract's `mean`). Three ways, each over all fields, in catalogue (spatial) order:
  exactextract   exact_extract(stack, fields, "mean", strategy="raster-sequential") (PyPI, pinned in
                 requirements/dev.txt); fields given in the stack's CRS
  ours/gdal      the assessment's steps per field — polygon, window, exact coverage fractions
                 (app.sure2.assess.coverage_fractions), a windowed GDAL read of all dates, the weighted
                 means — i.e. the per-field read path before the tile cache
  ours/tiles     the same, reading through app.sure2.tiles (each stack tile decoded once for all the
                 fields it serves): what the assessment does now
Prints fields/s and the ratios, and checks that all three agree (max |difference| in NDVI).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app.sure2.assess import (
    coverage_fractions,
    field_polygon,
    field_window,
    zonal_means,
)
from app.sure2.season import Season


def ours(season, ids, read) -> np.ndarray:
    out = []
    for fid in ids:
        stack = season.stack_of(fid)
        polygon = field_polygon(season, season.field(fid), stack)
        shape, transform, (window, dr, dc) = field_window(stack, polygon)
        fraction = coverage_fractions(polygon, transform, shape)[dr:dr + window.height, dc:dc + window.width]
        data = np.ascontiguousarray(read(stack, window))
        out.append(zonal_means(data, fraction, (fraction > 0).astype(np.uint8), stack.nodata)[2])
    return np.array(out)


def with_exactextract(season, ids) -> np.ndarray:
    import shapely
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource

    stack = season.stacks[season.stack_of(ids[0]).name]
    features = [{"type": "Feature", "properties": {"field_id": fid},
                 "geometry": shapely.geometry.mapping(field_polygon(season, season.field(fid), stack))}
                for fid in ids]
    rows = exact_extract(str(stack.path), JSONFeatureSource(features), "mean", strategy="raster-sequential",
                         include_cols=["field_id"])  # GeoJSON-like features out (no pandas needed)
    props = {r["properties"]["field_id"]: r["properties"] for r in rows}
    band = lambda name: int("".join(ch for ch in name if ch.isdigit()) or 0)
    columns = sorted((k for k in props[ids[0]] if k.endswith("mean")), key=band)
    return np.array([[np.nan if props[fid][c] is None else props[fid][c] for c in columns] for fid in ids],
                    dtype=np.float64) * 1e-4


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a generated season (default: make one with --fields)")
    p.add_argument("--fields", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        data = args.data
        if data is None:
            from app.season.synth import generate

            data = os.path.join(tmp, "season")
            generate(args.fields, 3, data)
        with Season.open(data) as season:
            ids = season.field_ids
            ee, t_ee = timed(lambda: with_exactextract(season, ids))
        with Season.open(data) as season:  # fresh: no cache carried over
            gdal, t_gdal = timed(lambda: ours(season, ids, lambda st, w: st.read(w)))
        from app.sure2 import tiles

        with Season.open(data) as season:
            tiled, t_tiles = timed(lambda: ours(season, ids, tiles.read))
    n = len(ids)
    diff = lambda a, b: float(np.nanmax(np.abs(a - b)))
    same_nan = bool((np.isnan(ee) == np.isnan(tiled)).all() and (np.isnan(gdal) == np.isnan(tiled)).all())
    print(f"{n} fields x {ee.shape[1]} dates, coverage-weighted means")
    for name, t in (("exactextract raster-sequential", t_ee), ("ours, per-field GDAL read", t_gdal),
                    ("ours, tile cache (the assessment)", t_tiles)):
        print(f"  {name:36s} {t:7.2f} s  {n / t:8.0f} fields/s")
    print(f"  ours/tiles vs exactextract: {t_ee / t_tiles:.2f}x faster; vs the per-field GDAL read: "
          f"{t_gdal / t_tiles:.2f}x")
    print(f"  agreement: max |ours − exactextract| {diff(tiled, ee):.2e} NDVI, |tiles − gdal| {diff(tiled, gdal):.1e}, "
          f"same missing dates: {same_nan}")


if __name__ == "__main__":
    main()
