"""The season's result as a vector layer an insurer opens in QGIS: one feature per field with its
geometry, state, outcome and reason, payout, index, coverage, damaged share and hectares, and events,
and one per row of the insurer's file that the import refused (outcome `refused`, its reason): the
layer has every source row, each with the insurer's ID (`source_id`).

OUT/.batch/season_result.parquet is GeoParquet 1.0 (EPSG:4326 lon/lat), written everywhere (pyarrow
is in every image); season_result.gpkg (GeoPackage) is written too where pyogrio is installed (the venv,
season.sif), not in the sealed sure2.sif.
"""

import json
import warnings

import pyarrow as pa
import pyarrow.parquet as pq

from app.hpc.atomic import atomic_path

CATALOGUE_COLUMNS = ("source_id", "crop", "region_id", "stack")
ROW_COLUMNS = {"state": pa.string(), "outcome": pa.string(), "reason": pa.string(), "detail": pa.string(),
               "payout": pa.float64(), "amount_cents": pa.int64(), "currency": pa.string(),
               "index_value": pa.float64(), "raster_coverage": pa.float64(), "observed_share": pa.float64(),
               "damaged_fraction": pa.float64(), "damaged_ha": pa.float64(), "events": pa.string()}
GEO = {"version": "1.0.0", "primary_column": "geometry",
       "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"]}}}  # crs: CRS84


def result_table(season, rows: dict) -> pa.Table:
    """One feature per field, then one per source row the import refused (field_id null, state and
    outcome `refused`, reason and detail from SEASON/refused.parquet): every row of the insurer's file."""
    catalogue = season.columns(("geometry", *CATALOGUE_COLUMNS))
    refused = season.refused()
    n_refused = refused.num_rows
    data = {"field_id": season.field_ids + [None] * n_refused}
    data.update({name: catalogue[name] + [None] * n_refused for name in CATALOGUE_COLUMNS})
    data["source_id"] = catalogue["source_id"][:len(season.field_ids)] + refused.column("source_id").to_pylist()
    data.update({name: [rows[fid].get(name) for fid in season.field_ids] + [None] * n_refused for name in ROW_COLUMNS})
    data["state"][len(season.field_ids):] = data["outcome"][len(season.field_ids):] = ["refused"] * n_refused
    data["reason"][len(season.field_ids):] = refused.column("reason").to_pylist()
    data["detail"][len(season.field_ids):] = refused.column("detail").to_pylist()
    data["geometry"] = catalogue["geometry"] + refused.column("geometry").to_pylist()
    schema = pa.schema([("field_id", pa.string()), *((n, pa.string()) for n in CATALOGUE_COLUMNS),
                        *ROW_COLUMNS.items(), ("geometry", pa.binary())])
    return pa.table(data, schema=schema).replace_schema_metadata({b"geo": json.dumps(GEO).encode()})


def write_result_layer(season, rows: dict, layout) -> str:
    """Write the layer(s); return a note saying where they went."""
    table = result_table(season, rows)
    with atomic_path(layout.result_parquet) as tmp:
        pq.write_table(table, tmp)
    try:
        import pyogrio
    except ImportError:
        return f"result layer {layout.result_parquet} (GeoParquet; no GeoPackage: this image has no vector driver)"
    with atomic_path(layout.result_gpkg) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDAL's note that the temp name does not end in .gpkg
        pyogrio.write_arrow(table.replace_schema_metadata(None), str(tmp), driver="GPKG", layer="season_result",
                            geometry_name="geometry", geometry_type="Unknown", crs="EPSG:4326")
    return f"result layers {layout.result_parquet}, {layout.result_gpkg}"
