"""Embedding tiles + parcel polygons → a few large shards per split (see app.emb.shards for the format).

Choices (the issue leaves them open):
- Inputs: every `*.tif` in --src (64 bands, int8 = round(v*127) or float unit vectors) and every
  `*.parquet` there (GeoParquet: WKB `geometry`, `crop_class`). Parcels in another CRS are reprojected.
- Labels: parcels rasterised per chip window (pixel-centre rule) over non-crop 0; pixels touched by a
  parcel boundary become 255 (ignore: mixed pixels), and so do pixels the raster masks as nodata.
- Chips: `chip`² windows every `stride` pixels, plus one aligned to the far edge so the whole tile
  is covered; tiles smaller than a chip are skipped with a warning.
- Spatial split: square blocks of `block` pixels anchored at the map origin (so they are global across
  tiles); a block is validation when a seeded hash of its (column, row) falls below `val_frac`.
  A chip whose footprint touches blocks of both splits is dropped: no pixel is seen by both splits.
- Shards: `shard_chips` chips each (default: as many as fit in ~1 GiB), chips in tile/row/column order
  so neighbouring chips are adjacent on disk. The plan depends on the inputs' geometry only, so a rerun
  recomputes it, keeps every shard whose manifest matches (fingerprint + checksums) and writes the rest.
"""

import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from app.emb import BANDS, IGNORE, NON_CROP, QUANT_SCALE
from app.emb.shards import shard_files, shard_is_valid, write_index, write_shard
from app.errors import BadInput
from app.hpc.atomic import sweep_temp_files

SPLITS = ("train", "val")
SHARD_BYTES = 1 << 30


@dataclass(frozen=True)
class PrepareSpec:
    chip: int = 256
    stride: int = 256
    block: int = 2048
    val_frac: float = 0.2
    shard_chips: int = 0  # 0 = as many chips as fit in ~1 GiB
    seed: int = 0

    def check(self) -> None:
        if not 8 <= self.chip <= 4096:
            raise BadInput(f"--chip must be 8..4096, got {self.chip}")
        if not 1 <= self.stride <= self.chip:
            raise BadInput(f"--stride must be 1..chip ({self.chip}), got {self.stride}")
        if self.block < self.chip:
            raise BadInput(f"--block must be at least --chip ({self.chip}), got {self.block}")
        if not 0.0 <= self.val_frac < 1.0:
            raise BadInput(f"--val-frac must be in [0, 1), got {self.val_frac}")
        if self.shard_chips < 0:
            raise BadInput(f"--shard-chips must be >= 0, got {self.shard_chips}")

    def chips_per_shard(self) -> int:
        if self.shard_chips:
            return self.shard_chips
        return max(1, SHARD_BYTES // (BANDS * self.chip * self.chip + self.chip * self.chip))


def _warn(msg: str) -> None:
    print(f"prepare: warning: {msg}", file=sys.stderr)


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def _block_split(bx: int, by: int, spec: PrepareSpec) -> str:
    h = hashlib.sha256(f"{spec.seed}:{bx}:{by}".encode()).digest()
    return "val" if int.from_bytes(h[:8], "little") / 2**64 < spec.val_frac else "train"


def window_offsets(length: int, chip: int, stride: int) -> list[int]:
    starts = list(range(0, length - chip + 1, stride))
    if starts and starts[-1] != length - chip:
        starts.append(length - chip)  # cover the far edge
    return starts


def _read_tiles(src: Path) -> list[dict]:
    import rasterio

    paths = sorted(src.glob("*.tif")) + sorted(src.glob("*.tiff"))
    if not paths:
        raise BadInput(f"no *.tif embedding rasters in {src}")
    tiles = []
    for path in paths:
        try:
            with rasterio.open(path) as ds:
                if ds.count != BANDS:
                    raise BadInput(f"{path.name} has {ds.count} bands, expected {BANDS}")
                if ds.crs is None or not ds.crs.is_projected:
                    raise BadInput(f"{path.name} has no projected CRS (expected UTM)")
                if ds.transform.b or ds.transform.d:
                    raise BadInput(f"{path.name} is rotated; only north-up rasters are supported")
                tiles.append({"name": path.name, "path": path, "width": ds.width, "height": ds.height,
                              "crs": ds.crs.to_wkt(), "transform": list(ds.transform)[:6],
                              "dtype": ds.dtypes[0]})
        except rasterio.errors.RasterioIOError as exc:
            raise BadInput(f"cannot read {path.name}: {str(exc).splitlines()[0]}") from None
    return tiles


def _read_parcels(src: Path):
    """(geometries, classes, crs, classes_declared) from every GeoParquet in src."""
    import pyarrow.parquet as pq
    import shapely
    from pyproj import CRS

    paths = sorted(src.glob("*.parquet"))
    if not paths:
        raise BadInput(f"no *.parquet parcel file in {src}")
    geoms, classes, crs, declared = [], [], None, 0
    for path in paths:
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if "geometry" not in table.column_names or "crop_class" not in table.column_names:
            raise BadInput(f"{path.name} needs columns 'geometry' (WKB) and 'crop_class'")
        geo = json.loads(meta.get(b"geo", b"{}"))
        col_crs = geo.get("columns", {}).get("geometry", {}).get("crs")
        file_crs = CRS.from_user_input(col_crs) if col_crs else CRS.from_epsg(4326)  # GeoParquet default
        if crs is not None and file_crs != crs:
            raise BadInput(f"{path.name} uses another CRS than the other parcel files")
        crs = file_crs
        geoms.append(shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)))
        classes.append(table.column("crop_class").to_numpy().astype(np.int64))
        declared = max(declared, int(meta.get(b"emb:classes", b"0")))
    classes = np.concatenate(classes)
    if classes.size and (classes.min() < 0 or classes.max() >= IGNORE):
        raise BadInput(f"crop_class must be 0..{IGNORE - 1}")
    return np.concatenate(geoms), classes, crs, declared


def _plan(tiles: list[dict], spec: PrepareSpec) -> dict[str, list[tuple]]:
    """Every chip (tile index, row, col) per split, in tile/row/column order."""
    plan = {split: [] for split in SPLITS}
    for t, tile in enumerate(tiles):
        if tile["width"] < spec.chip or tile["height"] < spec.chip:
            continue
        a, _, c, _, e, f = tile["transform"]
        block_m = spec.block * abs(a)
        for row in window_offsets(tile["height"], spec.chip, spec.stride):
            for col in window_offsets(tile["width"], spec.chip, spec.stride):
                x0, x1 = sorted((c + col * a, c + (col + spec.chip) * a))
                y0, y1 = sorted((f + row * e, f + (row + spec.chip) * e))
                eps = 1e-3 * abs(a)  # corners nudged inwards: an edge lying on a block line stays out
                splits = {_block_split(math.floor(x / block_m), math.floor(y / block_m), spec)
                          for x in (x0 + eps, x1 - eps) for y in (y0 + eps, y1 - eps)}
                if len(splits) == 1:
                    plan[splits.pop()].append((t, row, col))
    return plan


def _labeller(parcel_geoms, parcel_classes, parcel_crs):
    """Per tile: a function (window transform, chip) → uint8 labels; parcels indexed by an STRtree."""
    import shapely
    from pyproj import CRS, Transformer
    from rasterio.features import rasterize

    cache = {}

    def for_tile(tile_crs_wkt):
        if tile_crs_wkt not in cache:
            tile_crs = CRS.from_wkt(tile_crs_wkt)
            geoms = parcel_geoms
            if tile_crs != parcel_crs:
                to_tile = Transformer.from_crs(parcel_crs, tile_crs, always_xy=True)
                geoms = shapely.transform(geoms, lambda xy: np.column_stack(to_tile.transform(xy[:, 0], xy[:, 1])))
            cache[tile_crs_wkt] = (geoms, shapely.STRtree(geoms))
        geoms, tree = cache[tile_crs_wkt]

        def labels(window_transform, chip):
            t = window_transform
            xs, ys = (t.c, t.c + chip * t.a), (t.f, t.f + chip * t.e)
            hits = tree.query(shapely.box(min(xs), min(ys), max(xs), max(ys)))
            out = np.full((chip, chip), NON_CROP, np.uint8)
            if len(hits):
                out = rasterize(zip(geoms[hits], parcel_classes[hits].tolist()), out_shape=(chip, chip),
                                transform=window_transform, fill=NON_CROP, dtype="uint8")
                edges = rasterize(((g, 1) for g in shapely.boundary(geoms[hits])), out_shape=(chip, chip),
                                  transform=window_transform, fill=0, all_touched=True, dtype="uint8")
                out[edges == 1] = IGNORE
            return out

        return labels

    return for_tile


def chip_transform(tile: dict, row: int, col: int) -> list[float]:
    """The affine (a, b, c, d, e, f) of a window whose top-left pixel is (row, col); north-up tiles."""
    a, b, c, d, e, f = tile["transform"]
    return [a, b, c + col * a, d, e, f + row * e]


def read_chip(ds, row, col, height, width) -> np.ndarray:
    """A window of embeddings as int8 (v * 127), from int8 or float bands."""
    from rasterio.windows import Window

    data = ds.read(window=Window(col, row, width, height))
    if data.dtype == np.int8:
        return data
    if data.dtype.kind == "f":
        return np.clip(np.rint(np.nan_to_num(data) * QUANT_SCALE), -127, 127).astype(np.int8)
    raise BadInput(f"{ds.name}: embeddings must be int8 (v*127) or float, got {data.dtype}")


def prepare(src, out, spec: PrepareSpec) -> dict:
    """Write the shards and index.json; returns {'written': [...], 'skipped': [...], 'index': {...}}."""
    import rasterio
    from rasterio.windows import Window

    spec.check()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise BadInput(f"--src {src} is not a directory")
    tiles = _read_tiles(src)
    geoms, classes, parcel_crs, declared = _read_parcels(src)
    n_classes = max(declared, int(classes.max()) + 1 if classes.size else 2, 2)
    plan = _plan(tiles, spec)
    if not plan["train"]:
        raise BadInput("no training chips: tiles are smaller than a chip or every block went to validation")
    for tile in tiles:
        if tile["width"] < spec.chip or tile["height"] < spec.chip:
            _warn(f"{tile['name']} ({tile['width']}x{tile['height']}) is smaller than a chip; skipped")
    for split in SPLITS:
        if spec.val_frac and not plan[split]:
            _warn(f"the {split} split is empty (too few spatial blocks for --block {spec.block})")

    out.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(out)
    sources = [_file_identity(t["path"]) for t in tiles] + [_file_identity(p) for p in sorted(src.glob("*.parquet"))]
    labeller = _labeller(geoms, classes, parcel_crs)
    per_shard = spec.chips_per_shard()
    splits, written, skipped, class_pixels = {}, [], [], {}
    for split in SPLITS:
        chips = plan[split]
        names = []
        counts = np.zeros(IGNORE + 1, np.int64)
        for s, start in enumerate(range(0, len(chips), per_shard)):
            name = f"{split}-{s:05d}"
            names.append(name)
            members = chips[start:start + per_shard]
            fingerprint = hashlib.sha256(json.dumps([asdict(spec), sources, members]).encode()).hexdigest()
            if shard_is_valid(out, name, fingerprint):
                skipped.append(name)
            else:
                meta = {"fingerprint": fingerprint, "split": split,
                        "chips": [{"tile": t, "row": r, "col": c, "transform": chip_transform(tiles[t], r, c)}
                                  for t, r, c in members]}

                def fill(x, y, members=members):
                    open_tile, ds = None, None
                    try:
                        for i, (t, row, col) in enumerate(members):
                            if open_tile != t:
                                if ds is not None:
                                    ds.close()
                                ds, open_tile = rasterio.open(tiles[t]["path"]), t
                                labels_of = labeller(tiles[t]["crs"])
                            x[i] = read_chip(ds, row, col, spec.chip, spec.chip)
                            window = Window(col, row, spec.chip, spec.chip)
                            label = labels_of(rasterio.Affine(*chip_transform(tiles[t], row, col)), spec.chip)
                            label[ds.read_masks(1, window=window) == 0] = IGNORE
                            y[i] = label
                    finally:
                        if ds is not None:
                            ds.close()

                write_shard(out, name, len(members), spec.chip, fill, meta)
                written.append(name)
            y = np.load(shard_files(out, name)[1], mmap_mode="r")
            counts += np.bincount(np.asarray(y).ravel(), minlength=IGNORE + 1)
        splits[split] = names
        class_pixels[split] = {str(k): int(v) for k, v in enumerate(counts) if v}
    _remove_stale(out, {n for names in splits.values() for n in names})
    index = {"splits": splits, "chips": {s: len(plan[s]) for s in SPLITS}, "chip": spec.chip,
             "bands": BANDS, "classes": n_classes, "ignore": IGNORE, "quant_scale": QUANT_SCALE,
             "class_pixels": class_pixels, "params": asdict(spec),
             "tiles": [{k: t[k] for k in ("name", "width", "height", "crs", "transform")} for t in tiles]}
    write_index(out, index)
    return {"written": written, "skipped": skipped, "index": index}


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Shards left by an earlier plan with more shards (e.g. other parameters)."""
    for manifest in out.glob("*-?????.json"):
        name = manifest.name[:-len(".json")]
        if name.split("-")[0] in SPLITS and name not in keep:
            for path in shard_files(out, name):
                path.unlink(missing_ok=True)
