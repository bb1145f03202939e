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
    "no_pixel_centre": ("not_assessable", "no_pixel"),
    "no_baseline": ("not_assessable", "no_baseline"),
    "every_date_cloudy": ("insufficient_data", "too_few_observations"),
    "mostly_unobserved": ("insufficient_data", "too_few_observations"),
    "self_intersecting": ("not_assessable", "invalid_geometry"),
    "empty_geometry": ("not_assessable", "invalid_geometry"),
    "null_geometry": ("not_assessable", "invalid_geometry"),
    "trigger_above_exit": ("not_assessable", "bad_contract"),
    "insured_sum_zero": ("not_assessable", "bad_contract"),
    "no_stack": ("not_assessable", "no_stack"),
    "unknown_index": ("not_assessable", "bad_contract"),
    "sowing_after_harvest": ("not_assessable", "bad_contract"),
    "baseline_short_of_window": ("not_assessable", "no_baseline"),
}
# what the outcome's detail must say where the reason alone does not tell the kinds apart
DETAILS = {
    "no_baseline": "no baseline for",
    "trigger_above_exit": "must satisfy",
    "unknown_index": "index 'rainfall' is not one of",
    "sowing_after_harvest": "is not before harvest",
    "baseline_short_of_window": "does not cover the field's sowing→harvest dates",
    "every_date_cloudy": "acquisitions observed",
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
    cols["index"][victims["unknown_index"]] = "rainfall"
    i = victims["sowing_after_harvest"]
    cols["sowing_date"][i], cols["harvest_date"][i] = cols["harvest_date"][i], cols["sowing_date"][i]
    i = victims["baseline_short_of_window"]
    cols["region_id"][i] = _short_baseline(season_dir / "baseline.parquet", cols["region_id"][i], cols["crop"][i],
                                           cols["sowing_date"][i], cols["harvest_date"][i])
    fields = pa.table(cols, schema=table.schema)
    pq.write_table(fields, season_dir / "fields.parquet")

    _cloud_over(season_dir / stack["file"], [polygon(victims["every_date_cloudy"])], keep_every=0)
    _cloud_over(season_dir / stack["file"], [polygon(victims["mostly_unobserved"])], keep_every=8)
    _reseal(season_dir, manifest)
    ids = cols["field_id"]
    return {ids[i]: (kind, *KINDS[kind]) for kind, i in victims.items()}


def _short_baseline(path: Path, region: str, crop: str, sowing, harvest) -> str:
    """A new unit whose baseline is the field's own unit's, cut at the middle of its sowing→harvest
    window: the baseline exists but does not cover the window. Returns the new unit's region."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    middle = (sowing.timetuple().tm_yday + harvest.timetuple().tm_yday) // 2
    short = [dict(r, region_id="NO-ShortBaseline") for r in rows
             if r["region_id"] == region and r["crop"] == crop and r["doy"] <= middle]
    assert short, (region, crop)
    pq.write_table(pa.Table.from_pylist(rows + short, schema=table.schema), path)
    return "NO-ShortBaseline"


def _reseal(season_dir: Path, manifest: dict) -> None:
    """season.json with the changed files' hashes and fingerprint."""
    files = {n: hashlib.sha256((season_dir / n).read_bytes()).hexdigest() for n in manifest["files"]}
    manifest.update(files=files, fingerprint=hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest())
    (season_dir / "season.json").write_text(json.dumps(manifest, indent=1))


def each_pixel_seen_twice(season_dir) -> str:
    """The largest field: over its box every date shows a few pixels (2 of n_dates groups), but each
    pixel only 2 dates, short of the 3 views a pixel's curve needs. Its field mean is observed on
    every date wherever a date counts with that few pixels (--min-coverage ≤ 2/n_dates). Returns its ID."""
    season_dir = Path(season_dir)
    manifest = json.loads((season_dir / "season.json").read_text())
    (_, stack), = manifest["stacks"].items()
    fields = pq.read_table(season_dir / "fields.parquet", columns=["field_id", "area_ha", "geometry"]).to_pydict()
    i = int(np.argmax(fields["area_ha"]))
    to_utm = Transformer.from_crs("EPSG:4326", stack["crs"], always_xy=True)
    polygon = shapely.transform(shapely.from_wkb(fields["geometry"][i]),
                                lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    path = season_dir / stack["file"]
    with rasterio.open(path) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
        descriptions = src.descriptions
        inv = ~src.transform
    minx, miny, maxx, maxy = polygon.bounds
    c0, r0 = inv @ (minx, maxy)
    c1, r1 = inv @ (maxx, miny)
    window = (slice(int(r0), int(np.ceil(r1))), slice(int(c0), int(np.ceil(c1))))
    n = data.shape[0]
    rows, cols = data[0][window].shape
    group = np.arange(rows * cols).reshape(rows, cols) % n  # pixel groups, each seen on 2 dates
    for d in range(n):
        hidden = (group != d) & (group != (d + n // 2) % n)
        data[d][window][hidden] = profile["nodata"]
    _rewrite(path, profile, data, tags, descriptions)
    _reseal(season_dir, manifest)
    return fields["field_id"][i]


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
    _rewrite(path, profile, data, tags, descriptions)


def _rewrite(path: Path, profile, data, tags, descriptions) -> None:
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for b, text in enumerate(descriptions, start=1):
            dst.set_band_description(b, text)
