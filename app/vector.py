"""Vector files that users bring (insured fields, crop parcels): read, CRS checked, geometries repaired.

One reader for the Sure2 season import and the EMB labels, so both treat dirty files alike:
- Formats: GeoPackage (.gpkg), Shapefile (.shp, or a zipped one: .zip / .shp.zip), GeoJSON
  (.geojson, .json), FlatGeobuf (.fgb) through pyogrio (GDAL/OGR); GeoParquet (.parquet,
  .geoparquet) through pyarrow (pyogrio's GDAL has no Parquet driver).
- A file with no CRS is refused (BadInput naming the file): a CRS is never guessed. GeoJSON is
  WGS 84 by definition (RFC 7946; GDAL reports EPSG:4326); a GeoParquet column whose `crs` key is
  absent is OGC:CRS84 by the GeoParquet spec, while `"crs": null` means unknown and is refused.
- A file with several layers needs `layer=` (the message lists them).
- `repair_polygons` makes geometries valid (shapely.make_valid, structure method) and keeps their
  polygonal part: MultiPolygons and holes stay; lines or points left by a repair are dropped; each
  feature gets a note saying what was done, for the import logs.
"""

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS

from app.errors import BadInput

OGR_SUFFIXES = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".zip": "ESRI Shapefile (zipped)",
                ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf"}
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
CRS84 = "OGC:CRS84"


@dataclass
class VectorTable:
    """Features of one layer: geometries (shapely, None where null) and attribute columns."""

    path: Path
    layer: str | None
    crs: CRS
    geometry: np.ndarray
    columns: dict  # name -> list of Python values

    def __len__(self) -> int:
        return len(self.geometry)


def read_vector(path, layer: str | None = None) -> VectorTable:
    """Read a vector file (see the module docstring); BadInput for anything a user must fix."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"vector file {path} does not exist")
    if path.is_dir():
        raise BadInput(f"vector file {path} is a directory, not a file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _read_geoparquet(path)
    if suffix not in OGR_SUFFIXES:
        raise BadInput(f"{path.name}: unsupported vector format {suffix or '(no suffix)'} "
                       f"(supported: {', '.join(sorted(set(OGR_SUFFIXES) | set(PARQUET_SUFFIXES)))})")
    return _read_ogr(path, layer)


def _read_ogr(path: Path, layer) -> VectorTable:
    import pyogrio
    from pyproj import CRS

    source = str(path)
    if path.suffix.lower() == ".zip":
        source = _zipped_shapefile(path)
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(source)]
        if layer is None and len(layers) > 1:
            raise BadInput(f"{path.name} has {len(layers)} layers ({', '.join(layers)}): name the one to use")
        if layer is not None and layer not in layers:
            raise BadInput(f"{path.name} has no layer {layer!r} (has: {', '.join(layers)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GDAL's own warnings (e.g. encoding guesses) are not ours to show
            meta, table = pyogrio.read_arrow(source, layer=layer)
    except BadInput:
        raise
    except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError/... for unreadable files
        raise BadInput(f"cannot read {path.name}: {_first_line(exc)}") from None
    if not meta.get("crs"):
        raise BadInput(f"{path.name} has no CRS (a .prj or CRS definition is missing); "
                       "add it to the file, a CRS is never guessed")
    crs = CRS.from_user_input(meta["crs"])
    geometry_name = meta.get("geometry_name") or "wkb_geometry"
    names = [n for n in table.column_names if n != geometry_name]
    wkb = table.column(geometry_name).to_pylist() if geometry_name in table.column_names else [None] * table.num_rows
    return VectorTable(path, layer or (layers[0] if layers else None), crs, _from_wkb(wkb),
                       {n: table.column(n).to_pylist() for n in names})


def _zipped_shapefile(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            shps = [n for n in z.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"{path.name} is not a readable zip file: {_first_line(exc)}") from None
    if len(shps) != 1:
        raise BadInput(f"{path.name} holds {len(shps)} shapefiles ({', '.join(shps) or 'none'}); expected exactly one")
    return f"/vsizip/{path.resolve()}/{shps[0]}"


def _read_geoparquet(path: Path) -> VectorTable:
    import pyarrow.parquet as pq
    from pyproj import CRS

    try:
        table = pq.read_table(path)
    except Exception as exc:  # ArrowInvalid / OSError for foreign or torn files
        raise BadInput(f"cannot read {path.name}: {_first_line(exc)}") from None
    raw = (table.schema.metadata or {}).get(b"geo")
    if raw is None:
        raise BadInput(f"{path.name} is a Parquet file without GeoParquet 'geo' metadata (no geometry column or CRS)")
    try:
        geo = json.loads(raw)
        name = geo["primary_column"]
        column = geo["columns"][name]
    except (ValueError, KeyError, TypeError):
        raise BadInput(f"{path.name}: malformed GeoParquet 'geo' metadata") from None
    if column.get("encoding", "WKB").upper() != "WKB":
        raise BadInput(f"{path.name}: geometry encoding {column.get('encoding')!r} is not supported (WKB only)")
    if "crs" in column and column["crs"] is None:
        raise BadInput(f"{path.name} declares its CRS unknown (GeoParquet crs: null); a CRS is never guessed")
    try:
        crs = CRS.from_user_input(column.get("crs", CRS84))
    except Exception as exc:
        raise BadInput(f"{path.name}: unreadable CRS in its GeoParquet metadata: {_first_line(exc)}") from None
    names = [n for n in table.column_names if n != name]
    return VectorTable(path, None, crs, _from_wkb(table.column(name).to_pylist()),
                       {n: table.column(n).to_pylist() for n in names})


def _from_wkb(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        try:
            out[i] = shapely.from_wkb(value) if value is not None else None
        except shapely.errors.GEOSException:
            out[i] = None  # unparsable geometry: reported by repair_polygons as a null geometry
    return out


def repair_polygons(geometries) -> tuple[np.ndarray, list[str]]:
    """(geometries, notes): each made valid with only its polygonal part kept, or None if nothing is left.

    Notes: "" (valid as it was), "repaired: <why it was invalid>", "null geometry", "empty geometry",
    "not polygonal: <type>", "repair left no area: <why>".
    """
    out = np.empty(len(geometries), dtype=object)
    notes = []
    for i, geom in enumerate(geometries):
        if geom is None:
            out[i], note = None, "null geometry"
        elif geom.is_empty:
            out[i], note = None, "empty geometry"
        elif geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            out[i], note = None, f"not polygonal: {geom.geom_type}"
        elif shapely.is_valid(geom) and geom.geom_type != "GeometryCollection":
            out[i], note = shapely.force_2d(geom), ""
        else:
            why = shapely.is_valid_reason(geom)
            fixed = _polygonal_part(shapely.make_valid(shapely.force_2d(geom), method="structure"))
            if fixed is None:
                out[i], note = None, f"repair left no area: {why}"
            else:
                out[i], note = fixed, f"repaired: {why}"
        notes.append(note)
    return out, notes


def _polygonal_part(geom):
    parts = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    if not parts:
        return None
    merged = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    return merged if merged.area > 0 else None


def reproject(geometries, src_crs, dst_crs) -> np.ndarray:
    """Geometries from src_crs to dst_crs (x = easting/longitude always; None stays None)."""
    from pyproj import Transformer

    transformer = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    out = np.empty(len(geometries), dtype=object)
    present = np.array([g is not None for g in geometries], dtype=bool)
    if present.any():
        out[present] = shapely.transform(
            np.asarray(geometries, dtype=object)[present],
            lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    return out


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
