"""Generated embedding tiles + parcels with crop codes and known classes (the EMB test and demo data).

What it writes, deterministically from the seed, in the published formats:
- `tile-NNN.tif`: 64-band int8 GeoTIFF in the published Satellite Embedding quantisation
  (app.emb.quant: v = sign(q)·(|q|/127.5)², -128 in all bands = nodata, GDAL nodata -128), 10 m
  pixels, tiled, pixel-interleaved, north-up, in UTM zone `zones[t % len(zones)]` (EPSG:326ZZ).
  Tile 0 has a nodata triangle (its south-east corner, "outside the swath").
- `parcels.parquet`: GeoParquet 1.0 in EPSG:4326 (lon/lat, like EuroCrops), one row per parcel:
  `parcel_id`, `tile`, EuroCrops-style `EC_hcat_c` (HCAT-like 10-digit crop code) and `EC_hcat_n`
  (its name), and the generated ground truth `true_class` (the class the embedding was drawn from;
  0 for non-crop land-use parcels). About 5 % of the crop parcels carry a code the class map does
  not list (`UNMAPPED_CODE`), as real files do.
- `class_map.toml`: the class map for `prepare` (see app.emb.labels): two codes for most crops,
  land-use codes mapped to non-crop 0, `unmapped = "ignore"`.

Why the class is learnable, with real spatial structure: fields come from a recursive split of each
tile (field-shaped rectangles with slightly jittered corners) separated by non-crop gaps (roads,
hedges); some fields are non-crop land use, some are not in the parcel file at all. Every class k
has a prototype vector; each parcel draws its own vector around its class prototype (within-class
variation), a smooth regional signal (plane waves, like a phenology gradient) and per-pixel noise are
added, and a 3x3 blur mixes vectors across boundaries (mixed pixels) before normalising to unit
length. Non-crop land mixes two prototypes along a smooth field, so it is one learnable class with
internal variety.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.emb import BANDS, NON_CROP
from app.emb.quant import NODATA, quantise
from app.errors import BadInput
from app.hpc.atomic import atomic_path, atomic_write_bytes

PIXEL_M = 10.0
ORIGIN = (500_000.0, 6_650_000.0)  # easting, northing of tile 0's north-west corner: southern Norway
TILE_GAP_M = 2_000.0  # tiles of one zone sit side by side with a gap, so spatial blocks differ between tiles

PARCEL_SPREAD = 0.55  # per-dimension std of a parcel's vector around its class prototype
REGIONAL_AMPLITUDE = 0.5
PIXEL_NOISE = 0.9
UNMAPPED_SHARE = 0.05  # crop parcels whose code the class map does not list

# HCAT-like codes (EuroCrops' 10-digit hierarchy), two per crop where winter and spring sorts exist.
CROP_CODES = (("wheat", ("3301010101", "3301010104")), ("barley", ("3301010301", "3301010304")),
              ("oats", ("3301010401", "3301010404")), ("potatoes", ("3301060701",)),
              ("rapeseed", ("3301040101", "3301040104")), ("rye", ("3301010201", "3301010204")))
LAND_USE_CODES = (("pasture_meadow", "3302000000"), ("tree_wood_forest", "3306000000"))
UNMAPPED_CODE = ("other_arable_crops", "3301990000")


@dataclass(frozen=True)
class SynthSpec:
    tiles: int = 2
    size: int = 256
    classes: int = 5
    seed: int = 0
    zones: tuple = (33,)

    def check(self) -> None:
        if not 1 <= self.tiles <= 10_000:
            raise BadInput(f"--tiles must be 1..10000, got {self.tiles}")
        if not 32 <= self.size <= 16_384 or self.size % 16:
            raise BadInput(f"--size must be a multiple of 16 in 32..16384, got {self.size}")
        if not 2 <= self.classes <= 255:
            raise BadInput(f"--classes must be 2..255 (class 0 is non-crop, 255 is ignore), got {self.classes}")
        if not self.zones or any(not 1 <= z <= 60 for z in self.zones):
            raise BadInput(f"--zones must be UTM zone numbers 1..60, got {list(self.zones)}")


def crop_codes(classes: int) -> list[tuple[str, tuple]]:
    """(name, codes) of classes 1..classes-1: the table above, then generated codes."""
    table = list(CROP_CODES[:classes - 1])
    for k in range(len(table) + 1, classes):
        table.append((f"crop_{k}", (f"3301{k:06d}",)))
    return table


def class_map_toml(classes: int) -> str:
    lines = ["# Class map for the generated parcels (python -m app.emb synth); format: app/emb/labels.py",
             'code_column = "EC_hcat_c"', 'unmapped = "ignore"', "", "[classes]"]
    table = crop_codes(classes)
    lines += [f'{k} = "{name}"' for k, (name, _) in enumerate(table, 1)]
    lines += ["", "[codes]"]
    lines += [f'"{code}" = {k}  # {name}' for k, (name, codes) in enumerate(table, 1) for code in codes]
    lines += [f'"{code}" = {NON_CROP}  # {name} (land use, not a crop)' for name, code in LAND_USE_CODES]
    return "\n".join(lines) + "\n"


def _split_fields(rng, box, min_side, out):
    """Recursive split of a pixel box (r0, c0, r1, c1) into field-shaped rectangles."""
    r0, c0, r1, c1 = box
    h, w = r1 - r0, c1 - c0
    if max(h, w) < 2 * min_side or (max(h, w) < 5 * min_side and rng.random() < 0.3):
        out.append(box)
        return
    if h >= w:
        cut = int(rng.integers(r0 + min_side, r1 - min_side + 1))
        parts = ((r0, c0, cut, c1), (cut, c0, r1, c1))
    else:
        cut = int(rng.integers(c0 + min_side, c1 - min_side + 1))
        parts = ((r0, c0, r1, cut), (r0, cut, r1, c1))
    for part in parts:
        _split_fields(rng, part, min_side, out)


def _parcel_polygons(rng, size, transform, table):
    """Field polygons in map coordinates: (polygon, true class, code, code name).

    Gaps stay non-crop; of the fields left non-crop, half are land-use parcels (class 0 with a
    land-use code) and half are missing from the file, as unregistered land is.
    """
    from shapely.geometry import Polygon

    boxes = []
    _split_fields(rng, (0, 0, size, size), max(6, size // 16), boxes)
    parcels = []
    for box in boxes:
        gap = int(rng.integers(1, 3))  # roads / hedges between fields
        r0, c0, r1, c1 = box[0] + gap, box[1] + gap, box[2] - gap, box[3] - gap
        if r1 - r0 < 3 or c1 - c0 < 3:
            continue
        corners = np.array([(c0, r0), (c1, r0), (c1, r1), (c0, r1)], float)
        corners += rng.uniform(-1.2, 1.2, corners.shape)
        xs = transform.c + corners[:, 0] * transform.a  # north-up: no rotation terms
        ys = transform.f + corners[:, 1] * transform.e
        polygon = Polygon(zip(xs, ys))
        if rng.random() < 0.12:
            if rng.random() < 0.5:
                name, code = LAND_USE_CODES[int(rng.integers(len(LAND_USE_CODES)))]
                parcels.append((polygon, NON_CROP, code, name))
            continue
        k = int(rng.integers(1, len(table) + 1))
        name, codes = table[k - 1]
        name, code = UNMAPPED_CODE if rng.random() < UNMAPPED_SHARE else (name, codes[int(rng.integers(len(codes)))])
        parcels.append((polygon, k, code, name))
    return parcels


def _regional_field(rng, size, amplitude):
    """A smooth per-dimension signal: a few random plane waves with wavelengths of a quarter tile and up."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    field = np.zeros((BANDS, size, size), np.float32)
    for _ in range(3):
        k = rng.uniform(0.5, 4.0, (BANDS, 2)).astype(np.float32) * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi, BANDS).astype(np.float32)
        field += np.sin(k[:, 0, None, None] * xx + k[:, 1, None, None] * yy + phase[:, None, None])
    return field * (amplitude / np.sqrt(3))


def _blur3(a):
    """3x3 box blur over the last two axes (edge-replicated): boundary pixels become mixtures."""
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = a.shape[1:]
    return sum(p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def _embedding(rng, size, class_map, parcel_map, parcel_classes, prototypes, background):
    # Row p of `vectors` is parcel p's own vector (row 0: non-crop pixels, replaced below).
    vectors = np.zeros((len(parcel_classes) + 1, BANDS), np.float32)
    vectors[1:] = prototypes[parcel_classes]
    vectors[1:] += rng.normal(0, PARCEL_SPREAD, (len(parcel_classes), BANDS)).astype(np.float32)
    emb = np.moveaxis(vectors[parcel_map], -1, 0)  # [64, H, W]
    mix = (0.5 + 0.5 * _regional_field(rng, size, 1.0)[0])[None]
    non_crop = mix * background[0][:, None, None] + (1 - mix) * background[1][:, None, None]
    emb = np.where(class_map[None] == NON_CROP, non_crop, emb)
    emb = emb + _regional_field(rng, size, REGIONAL_AMPLITUDE)
    emb = emb + rng.normal(0, PIXEL_NOISE, emb.shape).astype(np.float32)
    emb = _blur3(emb)
    emb /= np.linalg.norm(emb, axis=0, keepdims=True) + 1e-12
    return emb.astype(np.float32)


def _swath_edge(size) -> np.ndarray:
    """bool [size, size]: a nodata triangle in the south-east corner (about 8 % of the tile)."""
    rows, cols = np.mgrid[0:size, 0:size]
    return rows + cols > 1.6 * size


def _write_tile(path, q, transform, epsg):
    import rasterio

    size = q.shape[-1]
    block = 256 if size % 256 == 0 else 16 * max(1, min(size, 256) // 16)
    profile = dict(driver="GTiff", width=size, height=size, count=BANDS, dtype="int8", crs=f"EPSG:{epsg}",
                   transform=transform, nodata=NODATA, tiled=True, blockxsize=block, blockysize=block,
                   interleave="pixel", compress="deflate")
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(q)
            dst.descriptions = [f"A{i:02d}" for i in range(BANDS)]
            dst.update_tags(embedding="Satellite Embedding int8: v = sign(q)*(|q|/127.5)^2; -128 in all bands = nodata")


def _write_parcels(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import CRS

    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                    "crs": CRS.from_epsg(4326).to_json_dict()}}}
    table = pa.table({
        "parcel_id": pa.array([r[0] for r in rows], pa.int64()),
        "tile": pa.array([r[1] for r in rows], pa.string()),
        "EC_hcat_c": pa.array([r[2] for r in rows], pa.string()),
        "EC_hcat_n": pa.array([r[3] for r in rows], pa.string()),
        "true_class": pa.array([r[4] for r in rows], pa.uint8()),
        "geometry": pa.array([r[5] for r in rows], pa.binary()),
    }).replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def tile_origin(spec: SynthSpec, t: int) -> tuple[int, float, float]:
    """(EPSG, easting, northing) of tile t's north-west corner: zones in turn, side by side within one."""
    zone, j = spec.zones[t % len(spec.zones)], t // len(spec.zones)
    return 32600 + zone, ORIGIN[0] + j * (spec.size * PIXEL_M + TILE_GAP_M), ORIGIN[1]


def synth(out, spec: SynthSpec) -> list[Path]:
    """Write spec.tiles GeoTIFFs, parcels.parquet and class_map.toml into `out`; returns the paths."""
    spec.check()
    from pyproj import CRS
    from rasterio import Affine
    from rasterio.features import rasterize

    from app.vector import reproject

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    prototypes = rng.normal(0, 1, (spec.classes, BANDS)).astype(np.float32)
    background = np.stack([prototypes[NON_CROP], rng.normal(0, 1, BANDS).astype(np.float32)])
    table = crop_codes(spec.classes)
    written, rows = [], []
    for t in range(spec.tiles):
        epsg, x0, y0 = tile_origin(spec, t)
        transform = Affine(PIXEL_M, 0.0, x0, 0.0, -PIXEL_M, y0)  # north-up, 10 m
        parcels = _parcel_polygons(rng, spec.size, transform, table)
        parcel_classes = np.array([p[1] for p in parcels], np.int64)
        parcel_map = np.zeros((spec.size, spec.size), np.int32)
        if parcels:
            parcel_map = rasterize(((p[0], i + 1) for i, p in enumerate(parcels)), out_shape=parcel_map.shape,
                                   transform=transform, fill=0, dtype="int32")
        class_map = np.concatenate([[NON_CROP], parcel_classes])[parcel_map]
        emb = _embedding(rng, spec.size, class_map, parcel_map, parcel_classes, prototypes, background)
        q = quantise(emb)
        if t == 0:
            q[:, _swath_edge(spec.size)] = NODATA
        name = f"tile-{t:03d}"
        path = out / f"{name}.tif"
        _write_tile(path, q, transform, epsg)
        written.append(path)
        lonlat = reproject(np.array([p[0] for p in parcels], dtype=object), CRS.from_epsg(epsg), CRS.from_epsg(4326))
        rows += [(len(rows) + i, name, p[2], p[3], p[1], g.wkb) for i, (p, g) in enumerate(zip(parcels, lonlat))]
    parcels_path = out / "parcels.parquet"
    _write_parcels(parcels_path, rows)
    class_map_path = out / "class_map.toml"
    atomic_write_bytes(class_map_path, class_map_toml(spec.classes).encode())
    written += [parcels_path, class_map_path]
    return written
