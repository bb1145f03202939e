"""The science of the import, against the generator's truth (app.season.raw_inputs).

Field means are taken here independently of the importer: pixels whose centre lies inside the field
shrunk by half a pixel diagonal (wholly inside, as the assessment's inner mask), rasterized with
rasterio. Tolerance: per field and date |imported mean − true NDVI| ≤ 0.015 (the generator's pixel
noise, sd ≈ 0.025 over ≥ 4 pixels, and int16 rounding), mean bias ≤ 0.003.
"""

import datetime as dt
import json
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import rasterize

from app.season.raw_inputs import FIELDS_CRS

TOLERANCE = 0.015
NODATA = -32768


def stacks(season):
    manifest = json.loads((season / "season.json").read_text())
    out = {}
    for name, entry in manifest["stacks"].items():
        with rasterio.open(season / entry["file"]) as ds:
            out[name] = (entry, ds.read(), ds.transform, ds.crs.to_string(), ds)
    return manifest, out


def field_masks(season, name, entry, transform, shape, all_touched=False, shrink=True):
    """source_id -> (centre mask, inner mask) of every field of stack `name`, in that stack's grid."""
    to_stack = Transformer.from_crs("EPSG:4326", entry["crs"], always_xy=True)
    masks = {}
    for row in pq.read_table(season / "fields.parquet").to_pylist():
        if row["stack"] != name or row["geometry"] is None:
            continue
        g = shapely.transform(shapely.from_wkb(row["geometry"]),
                              lambda xy: np.column_stack(to_stack.transform(xy[:, 0], xy[:, 1])))
        centre = rasterize([(g, 1)], out_shape=shape, transform=transform).astype(bool)
        inner_geom = shapely.buffer(g, -10 * np.sqrt(2) / 2)
        inner = (rasterize([(inner_geom, 1)], out_shape=shape, transform=transform).astype(bool)
                 if not inner_geom.is_empty else np.zeros(shape, bool))
        masks[row["source_id"]] = (centre, inner)
    return masks


@pytest.fixture(scope="module")
def truth_pixels(raw):
    by_key = defaultdict(list)
    for r in pq.read_table(raw / "truth_pixels.parquet").to_pylist():
        by_key[(r["source_id"], r["crs"], r["date"])].append(r)
    return by_key


@pytest.fixture(scope="module")
def comparison(built, truth_pixels):
    """Per (stack, source_id, date): imported mean, true NDVI, valid centre pixels, truth rows."""
    season, _ = built
    _, st = stacks(season)
    rows = []
    for name, (entry, data, transform, crs, _) in st.items():
        for sid, (centre, inner) in field_masks(season, name, entry, transform, data.shape[1:]).items():
            for k, d in enumerate(entry["dates"]):
                key = (sid, crs, dt.date.fromisoformat(d))
                if key not in truth_pixels:
                    continue
                v = data[k][inner]
                valid = v[v != NODATA]
                rows.append({"stack": name, "source_id": sid, "date": d, "n_inner": int(inner.sum()),
                             "mean": valid.mean() / 1e4 if len(valid) >= max(4, 0.5 * inner.sum()) else None,
                             "true": truth_pixels[key][0]["ndvi_true"],
                             "valid_centre": int(np.count_nonzero(data[k][centre] != NODATA)),
                             "n_centre": int(centre.sum()), "truth": truth_pixels[key]})
    return rows


def test_field_mean_ndvi_matches_truth_per_date_in_both_zones(comparison):
    seen = [r for r in comparison if r["mean"] is not None]
    errors = np.array([r["mean"] - r["true"] for r in seen])
    by_stack = {name: sum(r["stack"] == name for r in seen) for name in ("utm32", "utm33")}
    assert by_stack["utm32"] >= 150 and by_stack["utm33"] >= 300, by_stack
    worst = max(seen, key=lambda r: abs(r["mean"] - r["true"]))
    assert np.abs(errors).max() <= TOLERANCE, worst
    assert abs(errors.mean()) <= 0.003


def test_offset_decided_per_scene_from_metadata_and_values(built, raw):
    season, _ = built
    audit = json.loads((season / "season.json").read_text())["audit"]["stacks"]
    decided = {s["id"]: s for a in audit.values() for s in a["scenes"]}
    truth = pq.read_table(raw / "truth_scenes.parquet").to_pylist()
    assert len(decided) == len(truth)
    for t in truth:
        scene = decided[t["item_id"]]
        if t["quirk"] == "ndvi_asset":
            assert scene["kind"] == "ndvi" and scene["offset"]["offset_dn"] == 0
            continue
        assert scene["offset"]["offset_dn"] == (1000 if t["dn_carry_offset"] else 0), (t, scene["offset"])
        lying = t["quirk"] in ("flag_lies_applied", "flag_lies_not_applied")
        assert (scene["offset"]["verdict"] == "contradicts") == lying, (t, scene["offset"])
    baselines = {t["processing_baseline"] for t in truth}
    assert baselines == {"03.01", "05.11"}  # both sides of 04.00


def test_ignoring_the_offset_would_be_biased_and_the_import_is_not(built, comparison, raw):
    """On dates whose DN carry the offset, NDVI from DN/1e4 (offset ignored: red and NIR +0.1
    reflectance) misses the truth by far more than the tolerance; the import does not."""
    season, _ = built
    audit = json.loads((season / "season.json").read_text())["audit"]["stacks"]
    offset_days = {(name, s["solar_day"]) for name, a in audit.items() for s in a["scenes"]
                   if s["offset"]["offset_dn"] == 1000}
    from app.season.raw_inputs import reflectances

    checked = 0
    for r in comparison:
        if r["mean"] is None or (r["stack"], r["date"]) not in offset_days or r["true"] < 0.5:
            continue
        red, nir = reflectances(np.array(r["true"]))
        naive = ((nir + 0.1) - (red + 0.1)) / ((nir + 0.1) + (red + 0.1))
        assert abs(naive - r["true"]) > 0.1
        assert abs(r["mean"] - r["true"]) <= TOLERANCE
        checked += 1
    assert checked >= 50


def test_clouds_shadows_and_masked_classes_are_nodata(comparison):
    """Where one granule alone covers a field on a date, the stack's valid pixels over the field are
    exactly the generator's clear ones (SCL 0, 1, 3, 8, 9, 10 masked; 20 m → 10 m nearest)."""
    single = [r for r in comparison if len(r["truth"]) == 1 and r["n_centre"] >= 20]
    cloudy = 0
    for r in single:
        t = r["truth"][0]
        assert abs(r["n_centre"] - t["n_pixels"]) <= max(2, 0.02 * t["n_pixels"]), r
        assert abs(r["valid_centre"] - t["n_clear"]) <= max(2, 0.02 * t["n_pixels"]), r
        cloudy += t["n_clear"] < 0.7 * t["n_pixels"]
    assert len(single) >= 200 and cloudy >= 20


def test_granules_of_one_pass_merge_by_solar_day(built, comparison):
    """B1 and B2 (zone 33) overlap; B2 misses a swath-edge corner on some dates. On those dates a
    field in both still has B1's clear pixels in the stack, and each zone-33 date names both items."""
    season, _ = built
    audit = json.loads((season / "season.json").read_text())["audit"]["stacks"]["utm33"]
    assert all(len(ids) == 2 for ids in audit["scenes_by_date"].values())
    filled = 0
    for r in comparison:
        by_granule = {t["granule"]: t for t in r["truth"]}
        if r["stack"] != "utm33" or not {"B1", "B2"} <= set(by_granule) or r["n_centre"] < 20:
            continue
        b1, b2 = by_granule["B1"], by_granule["B2"]
        if b1["n_pixels"] == r["n_centre"] and b2["n_clear"] < b1["n_clear"]:
            assert abs(r["valid_centre"] - b1["n_clear"]) <= max(2, 0.02 * b1["n_pixels"]), r
            filled += 1
    assert filled >= 3


def test_stacks_follow_the_contract(built):
    season, _ = built
    manifest, st = stacks(season)
    dates = {}
    for name, (entry, data, transform, crs, ds) in st.items():
        assert crs == {"utm32": "EPSG:32632", "utm33": "EPSG:32633"}[name]
        assert entry["file"] == f"ndvi_{name}.tif" and entry["block"] == 128 and entry["nodata"] == NODATA
        with rasterio.open(season / entry["file"]) as ds:
            assert ds.dtypes[0] == "int16" and ds.nodata == NODATA and ds.block_shapes[0] == (128, 128)
            assert ds.compression.value == "ZSTD" and ds.interleaving.value == "PIXEL"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
            assert ds.tags()["ACQUISITION_DATES"].split(",") == entry["dates"] == list(ds.descriptions)
            assert ds.res == (10.0, 10.0)
        dates[name] = entry["dates"]
        assert manifest["files"][entry["file"]]
    assert set(dates["utm32"]).isdisjoint(dates["utm33"])  # two orbits: stacks with different dates
    assert len(dates["utm32"]) == len(dates["utm33"]) == 37
