"""Parcel labels: a user's vector file with crop codes + a class map → per-chip label rasters.

The parcel file is read by app.vector (the same reader as the Sure2 import): GeoPackage, Shapefile
(zipped too), GeoJSON, FlatGeobuf, GeoParquet; a file without a CRS is refused, invalid geometries
are repaired (their polygonal part kept), null/empty/non-polygonal ones dropped, and every outcome
is counted for the prepare report.

Class map (TOML; `app.emb synth` writes one next to its parcels):

    code_column = "EC_hcat_c"   # the attribute holding the crop code (EuroCrops: HCAT code)
    unmapped = "ignore"         # codes not listed below: "ignore" (label 255) or "non-crop" (0)

    [classes]                   # training classes: ids 1..K-1, all present; 0 is always non-crop
    1 = "wheat"
    2 = "barley"

    [codes]                     # crop code → class id; 0 = non-crop land use, 255 = ignore
    "3301010101" = 1
    "3301010104" = 1
    "3302000000" = 0

Codes are compared as text: integer attributes (GeoPackage) and integral floats (Shapefile
numerics) become their digits, strings are stripped. A parcel without a code counts as unmapped.
Ignored parcels (255, or unmapped under "ignore") are burnt as 255, so their ground is not taught
as non-crop; parcel boundaries are 255 too (mixed pixels).
"""

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.emb import IGNORE, NON_CROP
from app.errors import BadInput

UNMAPPED_POLICIES = {"ignore": IGNORE, "non-crop": NON_CROP}
REPORT_CODES = 50  # unmapped codes listed by name in the report (the most frequent); the rest are counted


@dataclass(frozen=True)
class ClassMap:
    names: tuple  # index = class id; names[0] is "non-crop"
    codes: dict  # code (str) → class id (0..K-1 or 255)
    code_column: str
    unmapped: str

    @property
    def classes(self) -> int:
        return len(self.names)


def normalise_code(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text or None


def load_class_map(path, code_column: str | None = None, unmapped: str | None = None) -> ClassMap:
    """The class map file, with CLI overrides of its code_column / unmapped; BadInput naming the problem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise BadInput(f"class map {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"class map {path.name} is not valid TOML: {exc}") from None
    where = f"class map {path.name}"
    unknown = set(doc) - {"code_column", "unmapped", "classes", "codes"}
    if unknown:
        raise BadInput(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    column = code_column or doc.get("code_column")
    if not isinstance(column, str) or not column:
        raise BadInput(f"{where}: set code_column (the parcel attribute with the crop code) or pass --code-column")
    policy = unmapped or doc.get("unmapped", "ignore")
    if policy not in UNMAPPED_POLICIES:
        raise BadInput(f"{where}: unmapped must be one of {', '.join(UNMAPPED_POLICIES)}, got {policy!r}")
    classes, codes = doc.get("classes"), doc.get("codes")
    if not isinstance(classes, dict) or not classes or not isinstance(codes, dict) or not codes:
        raise BadInput(f"{where}: needs a non-empty [classes] table (id = name) and [codes] table (code = id)")
    try:
        ids = sorted(int(k) for k in classes)
    except ValueError:
        raise BadInput(f"{where}: [classes] keys must be class ids (1, 2, ...)") from None
    if ids != list(range(1, len(ids) + 1)) or len(ids) >= IGNORE - 1:
        raise BadInput(f"{where}: [classes] ids must be 1..K-1 without gaps (0 is non-crop), got {ids}")
    names = ("non-crop", *(str(classes[str(i)]) for i in ids))
    allowed = set(range(len(names))) | {IGNORE}
    bad = {c: v for c, v in codes.items() if not isinstance(v, int) or isinstance(v, bool) or v not in allowed}
    if bad:
        code, value = next(iter(bad.items()))
        raise BadInput(f"{where}: code {code!r} maps to {value!r}; ids are 0..{len(names) - 1} or {IGNORE}")
    return ClassMap(names, {normalise_code(c): v for c, v in codes.items()}, column, policy)


@dataclass
class Parcels:
    """Polygons in `crs` with their labels (class id, 0 non-crop or 255 ignore) and what reading found."""

    geometry: np.ndarray
    label: np.ndarray
    crs: object
    report: dict = field(default_factory=dict)


def read_parcels(path, class_map: ClassMap, layer: str | None = None) -> Parcels:
    from app.vector import read_vector, repair_polygons

    table = read_vector(path, layer)
    if class_map.code_column not in table.columns:
        have = ", ".join(sorted(table.columns)) or "none"
        raise BadInput(f"{Path(path).name} has no column {class_map.code_column!r} (columns: {have})")
    geoms, notes = repair_polygons(table.geometry)
    policy = UNMAPPED_POLICIES[class_map.unmapped]
    labels = np.empty(len(geoms), np.uint8)
    unmapped, per_label = Counter(), Counter()
    for i, raw in enumerate(table.columns[class_map.code_column]):
        if geoms[i] is None:
            continue  # dropped: counted by its note below
        code = normalise_code(raw)
        label = class_map.codes.get(code)
        if label is None:
            unmapped[code if code is not None else "(no code)"] += 1
            label = policy
        labels[i] = label
        per_label[int(label)] += 1
    keep = np.array([g is not None for g in geoms], bool)
    dropped = Counter(n.split(":")[0] for n, k in zip(notes, keep) if not k)
    repaired = Counter(n[len("repaired: "):].split("[")[0].strip() for n, k in zip(notes, keep)
                       if k and n.startswith("repaired"))
    by_class = {name: per_label.get(i, 0) for i, name in enumerate(class_map.names)}
    report = {
        "file": str(path), "layer": table.layer, "crs": table.crs.to_string(), "features": len(geoms),
        "code_column": class_map.code_column, "unmapped_policy": class_map.unmapped,
        "parcels_by_class": by_class, "ignored_parcels": per_label.get(IGNORE, 0),
        "unmapped": {"parcels": sum(unmapped.values()), "codes": len(unmapped),
                     "most_frequent": dict(unmapped.most_common(REPORT_CODES))},
        "repaired": {"parcels": sum(repaired.values()), "reasons": dict(repaired)},
        "dropped": {"parcels": int((~keep).sum()), "reasons": dict(dropped)},
    }
    return Parcels(geoms[keep], labels[keep], table.crs, report)


class Labeller:
    """Label rasters for chip windows of tiles in any CRS (parcels reprojected once per CRS)."""

    def __init__(self, parcels: Parcels):
        self.parcels = parcels
        self._by_crs = {}

    def _indexed(self, crs_wkt: str):
        import shapely
        from pyproj import CRS

        from app.vector import reproject

        if crs_wkt not in self._by_crs:
            target = CRS.from_wkt(crs_wkt)
            geoms = self.parcels.geometry
            if target != self.parcels.crs:
                geoms = reproject(geoms, self.parcels.crs, target)
            self._by_crs[crs_wkt] = (geoms, shapely.STRtree(geoms))
        return self._by_crs[crs_wkt]

    def labels(self, crs_wkt: str, window_transform: tuple, chip: int) -> np.ndarray:
        """uint8 [chip, chip] for a north-up window: class under each pixel centre, 0 where no parcel,
        255 on parcel boundaries (all touched) and inside ignored parcels."""
        import shapely
        from rasterio import Affine
        from rasterio.features import rasterize

        geoms, tree = self._indexed(crs_wkt)
        t = Affine(*window_transform)
        box = shapely.box(t.c, t.f + chip * t.e, t.c + chip * t.a, t.f)
        hits = tree.query(box)
        out = np.full((chip, chip), NON_CROP, np.uint8)
        if len(hits):
            out = rasterize(zip(geoms[hits], self.parcels.label[hits].tolist()), out_shape=(chip, chip),
                            transform=t, fill=NON_CROP, dtype="uint8")
            edges = rasterize(((g, 1) for g in shapely.boundary(geoms[hits])), out_shape=(chip, chip),
                              transform=t, fill=0, all_touched=True, dtype="uint8")
            out[edges == 1] = IGNORE
        return out
