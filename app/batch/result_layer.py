"""The season's result as a vector layer an insurer opens in QGIS: one feature per field with its
geometry, state, outcome and reason, payout, index, coverage, damaged share and hectares, and events,
and one per row of the insurer's file that the import refused (outcome `refused`, its reason): the
layer has every source row, each with the insurer's ID (`source_id`).

OUT/.batch/season_result.parquet is GeoParquet 1.1 (EPSG:4326 lon/lat), written everywhere (pyarrow
is in every image), meeting the OGC distribution class as tools expect of a published layer: a `bbox`
covering column (xmin, ymin, xmax, ymax) declared in the `geo` metadata, rows in spatial order (a
Hilbert curve over the fields' bounding-box centres; fields without a geometry last) in row groups of
ROW_GROUP rows with statistics, so each row group's bounding box is tight and a reader skips the
others, and ZSTD compression. season_result.gpkg (GeoPackage) is written too where pyogrio is
installed (the venv, season.sif), not in the sealed sure2.sif.
"""

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.hpc.atomic import atomic_path

CATALOGUE_COLUMNS = ("source_id", "crop", "region_id", "stack")
ROW_COLUMNS = {"state": pa.string(), "outcome": pa.string(), "reason": pa.string(), "detail": pa.string(),
               "payout": pa.float64(), "amount_cents": pa.int64(), "currency": pa.string(),
               "index_value": pa.float64(), "raster_coverage": pa.float64(), "observed_share": pa.float64(),
               "damaged_fraction": pa.float64(), "damaged_ha": pa.float64(), "events": pa.string()}
BBOX = ("xmin", "ymin", "xmax", "ymax")
GEO = {"version": "1.1.0", "primary_column": "geometry",
       "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"],
                                "covering": {"bbox": {k: ["bbox", k] for k in BBOX}}}}}  # crs: CRS84
ROW_GROUP = 4096  # rows per row group: tight boxes per group, few enough groups for a national layer
HILBERT_ORDER = 16


def result_table(season, rows: dict) -> pa.Table:
    """One feature per field, then one per source row the import refused (field_id null, state and
    outcome `refused`, reason and detail from SEASON/refused.parquet): every row of the insurer's file;
    in spatial order, with the bbox covering column and `geo` metadata."""
    import shapely

    from app.sure2.season import hilbert_key

    catalogue = season.columns(("geometry", *CATALOGUE_COLUMNS))
    refused = season.refused()
    n_fields, n_refused = len(season.field_ids), refused.num_rows
    data = {"field_id": season.field_ids + [None] * n_refused}
    data.update({name: catalogue[name] + [None] * n_refused for name in CATALOGUE_COLUMNS})
    data["source_id"] = catalogue["source_id"][:n_fields] + refused.column("source_id").to_pylist()
    data.update({name: [rows[fid].get(name) for fid in season.field_ids] + [None] * n_refused for name in ROW_COLUMNS})
    data["state"][n_fields:] = data["outcome"][n_fields:] = ["refused"] * n_refused
    data["reason"][n_fields:] = refused.column("reason").to_pylist()
    data["detail"][n_fields:] = refused.column("detail").to_pylist()
    data["geometry"] = catalogue["geometry"] + refused.column("geometry").to_pylist()
    bounds = shapely.bounds(shapely.from_wkb(data["geometry"]))  # NaN where there is no geometry
    missing = np.isnan(bounds).any(axis=1)
    data["bbox"] = pa.StructArray.from_arrays([pa.array(bounds[:, k], mask=missing) for k in range(4)], names=BBOX,
                                              mask=pa.array(missing))
    schema = pa.schema([("field_id", pa.string()), *((n, pa.string()) for n in CATALOGUE_COLUMNS),
                        *ROW_COLUMNS.items(), ("geometry", pa.binary()),
                        ("bbox", pa.struct([(k, pa.float64()) for k in BBOX]))])
    geo = json.loads(json.dumps(GEO))
    if not missing.all():
        have = bounds[~missing]
        geo["columns"]["geometry"]["bbox"] = [float(have[:, 0].min()), float(have[:, 1].min()),
                                              float(have[:, 2].max()), float(have[:, 3].max())]
    table = pa.table(data, schema=schema).replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    return table.take(pa.array(spatial_order(bounds, missing, hilbert_key)))


def spatial_order(bounds: np.ndarray, missing: np.ndarray, hilbert_key) -> np.ndarray:
    """Row order along a Hilbert curve over the bounding-box centres (rows without a geometry last)."""
    centre = np.where(missing[:, None], 0.0, np.column_stack([bounds[:, 0] + bounds[:, 2], bounds[:, 1] + bounds[:, 3]]) / 2)
    have = centre[~missing]
    lo, hi = (have.min(axis=0), have.max(axis=0)) if len(have) else (np.zeros(2), np.ones(2))
    grid = (np.clip((centre - lo) / np.maximum(hi - lo, 1e-12), 0, 1) * ((1 << HILBERT_ORDER) - 1)).astype(np.int64)
    key = hilbert_key(grid[:, 0], grid[:, 1], HILBERT_ORDER)
    return np.lexsort((np.arange(len(key)), key, missing))


def write_result_layer(season, rows: dict, layout) -> str:
    """Write the layer(s); return a note saying where they went."""
    table = result_table(season, rows)
    with atomic_path(layout.result_parquet) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP, write_statistics=True)
    try:
        import pyogrio
    except ImportError:
        return f"result layer {layout.result_parquet} (GeoParquet; no GeoPackage: this image has no vector driver)"
    with atomic_path(layout.result_gpkg) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDAL's note that the temp name does not end in .gpkg
        pyogrio.write_arrow(table.drop_columns(["bbox"]).replace_schema_metadata(None), str(tmp), driver="GPKG", layer="season_result",
                            geometry_name="geometry", geometry_type="Unknown", crs="EPSG:4326")
    return f"result layers {layout.result_parquet}, {layout.result_gpkg}"
