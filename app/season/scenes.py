"""Sentinel-2 L2A scenes described by STAC: an ItemCollection JSON, one item JSON, or a directory of
item JSONs (searched recursively); asset hrefs are local files (relative to the JSON that names them,
absolute paths, or file:// URIs: compute nodes have no internet).

Recognised assets: red/nir/scl (earthsearch) or B04/B08/SCL (Planetary Computer and the Copernicus
catalogue's short names), or a ready `ndvi` asset (float32 NDVI, or integers with a `raster:bands`
scale, default 1e-4) with an optional SCL. What each item says about the BOA offset is collected here
(`s2:processing_baseline`, `raster:bands` offset, `earthsearch:boa_offset_applied`); the decision is
app.season.offset's. The item's date is its solar day: the UTC acquisition time shifted by the
scene centre's longitude (15° per hour), so granules of one pass fall on one day everywhere.

An item that cannot be used (not a dict, no datetime, no red/nir or ndvi asset, an asset file missing
or unreadable) is skipped with its reason, never a stop: the build records it in the audit trail.
"""

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer

from app.errors import BadInput

ASSET_KEYS = {"red": ("red", "B04", "b04"), "nir": ("nir", "B08", "b08", "nir08"), "scl": ("scl", "SCL"),
              "ndvi": ("ndvi", "NDVI")}


@dataclass
class Asset:
    path: Path
    scale: float | None = None  # raster:bands scale
    offset: float | None = None  # raster:bands offset (reflectance units)
    nodata: float | None = None


@dataclass
class Scene:
    id: str
    source: str  # the JSON file it came from
    acquired: dt.datetime
    solar_day: dt.date
    footprint: object  # shapely lon/lat (the item's geometry, else its raster bounds)
    crs: str
    transform: tuple
    width: int
    height: int
    assets: dict  # band -> Asset (red, nir, scl, ndvi)
    processing_baseline: str | None = None
    offset_applied_flag: bool | None = None  # earthsearch:boa_offset_applied
    catalogue: str = "stac"
    properties: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "ndvi" if "red" not in self.assets else "reflectance"


@dataclass
class SceneCatalogue:
    scenes: list
    skipped: list  # {"id", "source", "reason"}


def load_scenes(source) -> SceneCatalogue:
    """Every usable Sentinel-2 scene under `source`; BadInput if it names nothing readable at all."""
    source = Path(source)
    if not source.exists():
        raise BadInput(f"scenes {source} do not exist (an ItemCollection JSON or a directory of item JSONs)")
    files = sorted(source.rglob("*.json")) if source.is_dir() else [source]
    scenes, skipped, seen = [], [], set()
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            skipped.append({"id": None, "source": str(path), "reason": f"unreadable JSON: {exc}"})
            continue
        for item in _items(doc):
            item_id = item.get("id") if isinstance(item, dict) else None
            if item_id in seen:
                continue  # the same item in a collection file and as its own JSON
            try:
                scene = _scene(item, path)
            except ValueError as exc:
                skipped.append({"id": item_id, "source": str(path), "reason": str(exc)})
                continue
            seen.add(scene.id)
            scenes.append(scene)
    if not scenes and not skipped:
        raise BadInput(f"no STAC item found in {source}")
    scenes.sort(key=lambda s: (s.solar_day, s.id))
    return SceneCatalogue(scenes, skipped)


def _items(doc):
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return doc.get("features") or []
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    return []  # a collection/catalog JSON or anything else: not an item


def _scene(item: dict, path: Path) -> Scene:
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ValueError("item has no id")
    props = item.get("properties") or {}
    acquired = _datetime(props)
    assets = {}
    for band, keys in ASSET_KEYS.items():
        key = next((k for k in keys if k in (item.get("assets") or {})), None)
        if key is not None:
            assets[band] = _asset(item["assets"][key], path, band)
    if not (("red" in assets and "nir" in assets) or "ndvi" in assets):
        raise ValueError(f"no red+nir (red/nir or B04/B08) or ndvi asset (has: {', '.join(item.get('assets') or {})})")
    grid_band = "red" if "red" in assets else "ndvi"
    for band, asset in assets.items():
        if not asset.path.is_file():
            raise ValueError(f"{band} asset file {asset.path} does not exist")
    try:
        with rasterio.open(assets[grid_band].path) as ds:
            if ds.crs is None:
                raise ValueError(f"{assets[grid_band].path.name} has no CRS")
            crs, transform, width, height = ds.crs.to_string(), tuple(ds.transform)[:6], ds.width, ds.height
            bounds = ds.bounds
    except rasterio.errors.RasterioError as exc:
        raise ValueError(f"{assets[grid_band].path.name} is not readable: {exc}") from None
    footprint = _footprint(item, crs, bounds)
    lon = footprint.centroid.x
    solar = (acquired + dt.timedelta(hours=lon / 15.0)).date()
    flag = props.get("earthsearch:boa_offset_applied")
    return Scene(item_id, str(path), acquired, solar, footprint, CRS.from_user_input(crs).to_string(), transform,
                 width, height, assets, _baseline(props), flag if isinstance(flag, bool) else None,
                 "earthsearch" if "earthsearch:boa_offset_applied" in props else "stac",
                 {k: props[k] for k in props if k.startswith(("s2:", "earthsearch:", "proj:", "platform"))})


def _datetime(props) -> dt.datetime:
    text = props.get("datetime") or props.get("start_datetime")
    if not isinstance(text, str):
        raise ValueError("item has no datetime")
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"unreadable datetime {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _baseline(props) -> str | None:
    value = props.get("s2:processing_baseline") or props.get("processing:version")
    if value is None:
        return None
    try:
        return f"{float(value):05.2f}"  # "5.11", 5.11 and "05.11" alike
    except (TypeError, ValueError):
        return None


def _asset(asset: dict, item_path: Path, band: str) -> Asset:
    href = asset.get("href") if isinstance(asset, dict) else None
    if not isinstance(href, str) or not href:
        raise ValueError(f"{band} asset has no href")
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https", "s3", "gs", "az"):
        raise ValueError(f"{band} asset is remote ({parsed.scheme}://): download the scenes first "
                         "(compute nodes have no internet)")
    local = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(href)
    if not local.is_absolute():
        local = (item_path.parent / local).resolve()
    bands = asset.get("raster:bands") or [{}]
    info = bands[0] if isinstance(bands, list) and bands and isinstance(bands[0], dict) else {}
    number = lambda v: float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
    return Asset(local, number(info.get("scale")), number(info.get("offset")), number(info.get("nodata")))


def _footprint(item: dict, crs: str, bounds):
    geometry = item.get("geometry")
    if isinstance(geometry, dict):
        try:
            shape = shapely.geometry.shape(geometry)
            if not shape.is_empty:
                return shapely.make_valid(shape)
        except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
            pass
    t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    box = shapely.box(*bounds).segmentize(max(bounds.right - bounds.left, 1) / 8)
    return shapely.transform(box, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
