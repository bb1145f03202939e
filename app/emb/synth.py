"""Generated embedding tiles + parcel polygons with known crop classes (the EMB test data).

What it makes, deterministically from the seed:
- `tile-NNN.tif`: 64-band int8 GeoTIFF, EPSG:32633 (UTM 33N), 10 m pixels, tiled and pixel-interleaved.
  Each pixel is a unit-length 64-d vector quantised as round(v * 127) (band scale 1/127 is tagged),
  the same int8 form AlphaEarth's public embeddings use. `prepare` and `predict` also accept float bands.
- `parcels.parquet`: GeoParquet 1.0 (WKB polygons, CRS as PROJJSON) with `parcel_id`, `tile`,
  `crop_class` (1..K-1); its metadata records `classes` = K.

Why the class is learnable, with real spatial structure: fields come from a recursive split of each
tile (field-shaped rectangles with slightly jittered corners) separated by non-crop gaps (roads,
hedges); some fields are left non-crop. Every class k has a prototype vector; each parcel draws its
own vector around its class prototype (within-class variation), a smooth regional signal (plane waves,
like a phenology gradient) and per-pixel noise are added, and a 3x3 blur mixes vectors across
boundaries (mixed pixels) before normalising to unit length. Non-crop land mixes two prototypes
along a smooth field, so it is one learnable class with internal variety.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.emb import BANDS, NON_CROP, QUANT_SCALE
from app.errors import BadInput
from app.hpc.atomic import atomic_path

EPSG = 32633
PIXEL_M = 10.0
ORIGIN = (500_000.0, 6_650_000.0)  # southern Norway, inside UTM 33N
TILE_GAP_M = 2_000.0  # tiles sit side by side with a gap, so spatial blocks differ between tiles

PARCEL_SPREAD = 0.55  # per-dimension std of a parcel's vector around its class prototype
REGIONAL_AMPLITUDE = 0.5
PIXEL_NOISE = 0.9


@dataclass(frozen=True)
class SynthSpec:
    tiles: int = 2
    size: int = 256
    classes: int = 5
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.tiles <= 10_000:
            raise BadInput(f"--tiles must be 1..10000, got {self.tiles}")
        if not 32 <= self.size <= 16_384 or self.size % 16:
            raise BadInput(f"--size must be a multiple of 16 in 32..16384, got {self.size}")
        if not 2 <= self.classes <= 255:
            raise BadInput(f"--classes must be 2..255 (class 0 is non-crop, 255 is ignore), got {self.classes}")


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


def _parcel_polygons(rng, size, transform, classes):
    """Field polygons in map coordinates with their crop classes (gaps and some fields stay non-crop)."""
    from shapely.geometry import Polygon

    boxes = []
    _split_fields(rng, (0, 0, size, size), max(6, size // 16), boxes)
    parcels = []
    for r0, c0, r1, c1 in boxes:
        gap = int(rng.integers(1, 3))  # roads / hedges between fields
        r0, c0, r1, c1 = r0 + gap, c0 + gap, r1 - gap, c1 - gap
        if r1 - r0 < 3 or c1 - c0 < 3 or rng.random() < 0.12:
            continue
        corners = np.array([(c0, r0), (c1, r0), (c1, r1), (c0, r1)], float)
        corners += rng.uniform(-1.2, 1.2, corners.shape)
        xs = transform.c + corners[:, 0] * transform.a  # north-up: no rotation terms
        ys = transform.f + corners[:, 1] * transform.e
        parcels.append((Polygon(zip(xs, ys)), int(rng.integers(1, classes))))
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


def quantise(emb: np.ndarray) -> np.ndarray:
    """Unit-vector components in [-1, 1] → int8; the inverse is x / QUANT_SCALE."""
    return np.clip(np.rint(emb * QUANT_SCALE), -127, 127).astype(np.int8)


def _write_tile(path, q, transform):
    import rasterio

    size = q.shape[-1]
    block = 256 if size % 256 == 0 else 16 * max(1, min(size, 256) // 16)
    profile = dict(driver="GTiff", width=size, height=size, count=BANDS, dtype="int8", crs=f"EPSG:{EPSG}",
                   transform=transform, tiled=True, blockxsize=block, blockysize=block,
                   interleave="pixel", compress="deflate")
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(q)
            dst.scales = [1 / QUANT_SCALE] * BANDS
            dst.descriptions = [f"A{i:02d}" for i in range(BANDS)]
            dst.update_tags(embedding="unit-length 64-d, int8 = round(v * 127)")


def _write_parcels(path, rows, classes):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import CRS

    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                    "crs": CRS.from_epsg(EPSG).to_json_dict()}}}
    table = pa.table({
        "parcel_id": pa.array([r[0] for r in rows], pa.int64()),
        "tile": pa.array([r[1] for r in rows], pa.string()),
        "crop_class": pa.array([r[2] for r in rows], pa.uint8()),
        "geometry": pa.array([r[3] for r in rows], pa.binary()),
    }).replace_schema_metadata({b"geo": json.dumps(geo).encode(), b"emb:classes": str(classes).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def synth(out, spec: SynthSpec) -> list[Path]:
    """Write spec.tiles GeoTIFFs and one parcels GeoParquet into `out`; returns the paths written."""
    spec.check()
    from rasterio.features import rasterize
    from rasterio import Affine

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    prototypes = rng.normal(0, 1, (spec.classes, BANDS)).astype(np.float32)
    background = np.stack([prototypes[NON_CROP], rng.normal(0, 1, BANDS).astype(np.float32)])
    written, rows = [], []
    for t in range(spec.tiles):
        x0 = ORIGIN[0] + t * (spec.size * PIXEL_M + TILE_GAP_M)
        transform = Affine(PIXEL_M, 0.0, x0, 0.0, -PIXEL_M, ORIGIN[1])  # north-up, 10 m
        parcels = _parcel_polygons(rng, spec.size, transform, spec.classes)
        parcel_classes = np.array([c for _, c in parcels], np.int64)
        parcel_map = np.zeros((spec.size, spec.size), np.int32)
        if parcels:
            parcel_map = rasterize(((g, i + 1) for i, (g, _) in enumerate(parcels)), out_shape=parcel_map.shape,
                                   transform=transform, fill=0, dtype="int32")
        class_map = np.concatenate([[NON_CROP], parcel_classes])[parcel_map]
        emb = _embedding(rng, spec.size, class_map, parcel_map, parcel_classes, prototypes, background)
        name = f"tile-{t:03d}"
        path = out / f"{name}.tif"
        _write_tile(path, quantise(emb), transform)
        written.append(path)
        rows += [(len(rows) + i, name, c, g.wkb) for i, (g, c) in enumerate(parcels)]
    parcels_path = out / "parcels.parquet"
    _write_parcels(parcels_path, rows, spec.classes)
    written.append(parcels_path)
    return written
