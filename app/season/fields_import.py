"""The insurer's field file → the rows of the season catalogue, with a note per field and a log.

Order of decisions, each recorded in the import log (one entry per source row):
  - the file is read by app.vector (a file with no CRS is refused whole: BadInput, exit 2);
  - the mapping's columns must exist (else BadInput);
  - rows without an ID, rows whose ID appears more than once (all of them: which one is insured
    cannot be told), and rows whose mapped ID collides with another row's (app.season.field_ids)
    are REFUSED (reasons REFUSAL_REASONS): not in the catalogue, listed in the log, on stderr and in
    SEASON/refused.parquet with their geometry (downstream: outcome `refused`); the rest are imported;
  - geometries are repaired (app.vector.repair_polygons: MultiPolygons and holes kept), put in a
    canonical form (shapely.normalize; a one-part MultiPolygon becomes a Polygon) so the same field
    from any file format gives the same catalogue row, and reprojected to EPSG:4326 lon/lat;
    a geometry that repair leaves without area becomes null (the field stays, with the note);
  - fields smaller than MIN_PIXELS Sentinel-2 pixels, or narrower than one pixel, are flagged
    ("sliver: 0.3 pixels"): kept, the assessment decides (too few pixels → not assessable);
  - the mapping fills the contract (each contract column read as a whole first: an ambiguous or
    mostly unreadable column stops the import, BadInput); what it cannot fill is null with a note.
Area is measured in the field's own UTM zone (that of its centroid's longitude).
"""

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import shapely

from app.season.field_ids import season_id, source_text
from app.season.mapping import Mapping, check_columns, map_row, read_columns
from app.vector import read_vector, repair_polygons, reproject

FIELDS_CRS = "EPSG:4326"
# why a source row is refused (SEASON/refused.parquet `reason`): no ID, an ID on several rows, two IDs
# that the ID rule maps to one season ID
REFUSAL_REASONS = ("no_id", "duplicate_id", "id_collision")
PIXEL_M2 = 100.0  # one 10 m Sentinel-2 pixel
MIN_PIXELS = 4.0
HALF_PIXEL_M = 5.0


@dataclass
class ImportedFields:
    """Imported rows (parallel lists) + the refused rows + the log."""

    source_name: str
    source_crs: str
    field_id: list = field(default_factory=list)
    source_id: list = field(default_factory=list)
    row: list = field(default_factory=list)  # 1-based row in the source file
    geometry: list = field(default_factory=list)  # shapely, EPSG:4326 lon/lat, or None
    area_ha: list = field(default_factory=list)
    contract: list = field(default_factory=list)  # dicts from mapping.map_row
    notes: list = field(default_factory=list)  # list of strings per field
    refused: list = field(default_factory=list)  # {"row", "source_id", "reason", "detail", "geometry"}

    def __len__(self) -> int:
        return len(self.field_id)

    def note(self, i: int) -> str | None:
        return "; ".join(self.notes[i]) or None


def utm_crs(lon: float, lat: float) -> str:
    zone = min(60, max(1, int(math.floor((lon + 180) / 6)) + 1))
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def import_fields(path, mapping: Mapping, layer: str | None = None) -> ImportedFields:
    table = read_vector(path, layer=layer or mapping.layer)
    check_columns(mapping, table.columns, table.path.name)
    read = read_columns(mapping, table.columns)  # BadInput for an unreadable or ambiguous column
    out = ImportedFields(table.path.name, table.crs.to_string())
    ids = [source_text(v) for v in table.columns[mapping.id_column]]
    mapped = [season_id(s) if s is not None else None for s in ids]
    seen_source = Counter(s for s in ids if s is not None)
    seen_mapped = Counter(m for s, m in zip(ids, mapped) if s is not None and seen_source[s] == 1)
    geoms, repair_notes = repair_polygons(table.geometry)
    lonlat = reproject(np.array([_canonical(g) for g in geoms], dtype=object), table.crs, FIELDS_CRS)
    local = local_utm(lonlat)
    for i in range(len(table)):
        row_no = i + 1
        refusal = _refusal(ids[i], mapped[i], seen_source, seen_mapped, ids, mapped)
        if refusal:
            reason, detail = refusal
            out.refused.append({"row": row_no, "source_id": ids[i], "reason": reason, "detail": detail,
                                "geometry": lonlat[i]})
            continue
        notes = []  # an ID mapping is no note: source_id keeps the insurer's ID
        if repair_notes[i]:
            notes.append(repair_notes[i])
        geom = lonlat[i]
        area = None if geom is None else round(float(shapely.area(local[i])) / 1e4, 4)
        if geom is not None:
            notes += _size_flags(local[i])
        row = {name: values[i] for name, values in table.columns.items()}
        contract, contract_notes = map_row(mapping, row, area, read, i)
        out.field_id.append(mapped[i])
        out.source_id.append(ids[i])
        out.row.append(row_no)
        out.geometry.append(geom)
        out.area_ha.append(area)
        out.contract.append(contract)
        out.notes.append(notes + contract_notes)
    return out


def _refusal(source, mapped, seen_source, seen_mapped, ids, all_mapped) -> tuple[str, str] | None:
    """(reason, detail) for a row that cannot be imported (REFUSAL_REASONS), else None."""
    if source is None:
        return "no_id", "no ID (the ID column is empty)"
    if seen_source[source] > 1:
        return "duplicate_id", f"duplicate ID: {source!r} is on {seen_source[source]} rows"
    if seen_mapped[mapped] > 1:
        others = sorted({s for s, m in zip(ids, all_mapped) if m == mapped and s != source and s is not None})
        return "id_collision", f"ID {source!r} maps to {mapped!r}, as does {', '.join(repr(o) for o in others)}"
    return None


def _canonical(geom):
    """One form per shape: normalized rings and parts; a one-part MultiPolygon is its Polygon."""
    if geom is None:
        return None
    if geom.geom_type == "MultiPolygon" and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    return shapely.normalize(geom)


def local_utm(lonlat) -> np.ndarray:
    """Each geometry in the UTM zone of its centroid (metres), one transformer per zone."""
    out = np.empty(len(lonlat), dtype=object)
    present = [i for i, g in enumerate(lonlat) if g is not None]
    centres = shapely.centroid(np.array([lonlat[i] for i in present], dtype=object))
    zones = [utm_crs(c.x, c.y) for c in centres]
    for zone in set(zones):
        sel = [i for i, z in zip(present, zones) if z == zone]
        out[sel] = reproject(np.array([lonlat[i] for i in sel], dtype=object), FIELDS_CRS, zone)
    return out


def _size_flags(local) -> list[str]:
    pixels = shapely.area(local) / PIXEL_M2
    if pixels < MIN_PIXELS or shapely.buffer(local, -HALF_PIXEL_M).is_empty:
        return [f"sliver: {pixels:.1f} pixels"]
    return []
