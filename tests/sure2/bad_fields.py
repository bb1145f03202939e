"""Inject one bad field of every kind into a generated season (in place), with the outcome each must get.

Like torchgeo's data generators: small, deterministic, next to the tests. The victims are taken from
the season's own catalogue (largest fields first, so masks have pixels to lose), changed in
fields.parquet, in the NDVI stack (clouds over a field on all or most dates) or in the baseline's
reach (an unknown region), and season.json is rewritten with the new hashes and fingerprint.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
import shapely.affinity
from pyproj import Transformer

# field kind → (status, reason) the assessment must give it
KINDS = {
    "outside_raster": ("not_assessable", "outside_raster"),
    "partly_outside": ("insufficient_data", "partial_coverage"),
    "no_pixel_centre": ("not_assessable", "too_small"),
    "no_baseline": ("not_assessable", "no_baseline"),
    "every_date_cloudy": ("insufficient_data", "too_few_observations"),
    "mostly_unobserved": ("insufficient_data", "too_few_observations"),
    "self_intersecting": ("not_assessable", "invalid_geometry"),
    "empty_geometry": ("not_assessable", "invalid_geometry"),
    "null_geometry": ("not_assessable", "invalid_geometry"),
    "trigger_above_exit": ("not_assessable", "bad_contract"),
    "insured_sum_zero": ("not_assessable", "bad_contract"),
    "no_stack": ("not_assessable", "no_stack"),
}


def inject_bad_fields(season_dir) -> dict:
    """Change the season in place; return {field_id: (kind, status, reason)}."""
    season_dir = Path(season_dir)
    manifest = json.loads((season_dir / "season.json").read_text())
    (name, stack), = manifest["stacks"].items()
    table = pq.read_table(season_dir / "fields.parquet")
    cols = table.to_pydict()
    order = np.argsort(-np.asarray(cols["area_ha"]))  # largest first: victims with plenty of pixels
    victims = {kind: int(order[k]) for k, kind in enumerate(KINDS)}
    to_utm = Transformer.from_crs("EPSG:4326", stack["crs"], always_xy=True)
    to_lonlat = Transformer.from_crs(stack["crs"], "EPSG:4326", always_xy=True)
    utm = lambda g: shapely.transform(g, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    lonlat = lambda g: shapely.to_wkb(shapely.transform(g, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))))
    a, _, c, _, e, f = stack["transform"]
    right = c + a * stack["width"]

    def polygon(i):
        return utm(shapely.from_wkb(cols["geometry"][i]))

    geometry = cols["geometry"]
    i = victims["outside_raster"]
    geometry[i] = lonlat(shapely.affinity.translate(polygon(i), xoff=right - polygon(i).bounds[0] + 5_000))
    i = victims["partly_outside"]
    geometry[i] = lonlat(shapely.affinity.translate(polygon(i), xoff=right - polygon(i).centroid.x))
    i = victims["no_pixel_centre"]  # 3 m square in the corner of a pixel: the pixel's centre is not inside
    x0, y0 = c + a * 3 + 0.5, f + e * 3 - 0.5
    geometry[i] = lonlat(shapely.box(x0, y0 - 3, x0 + 3, y0))
    i = victims["self_intersecting"]  # a bow-tie over the field's own box
    minx, miny, maxx, maxy = polygon(i).bounds
    geometry[i] = lonlat(shapely.Polygon([(minx, miny), (maxx, maxy), (maxx, miny), (minx, maxy)]))
    geometry[victims["empty_geometry"]] = shapely.to_wkb(shapely.Polygon())
    geometry[victims["null_geometry"]] = None
    cols["region_id"][victims["no_baseline"]] = "NO-Finnmark"  # a region the baseline has never seen
    i = victims["trigger_above_exit"]
    cols["trigger"][i], cols["exit"][i] = 0.5, 0.3
    cols["insured_sum"][victims["insured_sum_zero"]] = 0.0
    cols["stack"][victims["no_stack"]] = None
    cols["note"][victims["no_stack"]] = "outside every scene"
    fields = pa.table(cols, schema=table.schema)
    pq.write_table(fields, season_dir / "fields.parquet")

    _cloud_over(season_dir / stack["file"], [polygon(victims["every_date_cloudy"])], keep_every=0)
    _cloud_over(season_dir / stack["file"], [polygon(victims["mostly_unobserved"])], keep_every=8)
    files = {n: hashlib.sha256((season_dir / n).read_bytes()).hexdigest() for n in manifest["files"]}
    manifest.update(files=files, fingerprint=hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest())
    (season_dir / "season.json").write_text(json.dumps(manifest, indent=1))
    ids = cols["field_id"]
    return {ids[i]: (kind, *KINDS[kind]) for kind, i in victims.items()}


def _cloud_over(path: Path, polygons, keep_every: int) -> None:
    """Nodata over the polygons' boxes on every date (keep_every=0) or all but every k-th date."""
    with rasterio.open(path) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
        descriptions = src.descriptions
        inv = ~src.transform
    for poly in polygons:
        minx, miny, maxx, maxy = poly.bounds
        c0, r0 = inv @ (minx, maxy)
        c1, r1 = inv @ (maxx, miny)
        window = (slice(int(r0), int(np.ceil(r1))), slice(int(c0), int(np.ceil(c1))))
        for d in range(data.shape[0]):
            if keep_every == 0 or d % keep_every:
                data[(d, *window)] = profile["nodata"]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for b, text in enumerate(descriptions, start=1):
            dst.set_band_description(b, text)
