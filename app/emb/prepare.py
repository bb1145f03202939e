"""Embedding tiles + a parcel file + a class map → a few large shards per split (format: app.emb.shards).

Choices:
- Inputs: every `*.tif`/`*.tiff` in --src (app.emb.raster: published int8 kept byte for byte, float
  exports quantised by the published rule, bottom-up storage seen north-up, tiles in any UTM zone),
  and one parcel file with crop codes + a class map (app.emb.labels). Parcels are reprojected to
  each tile's CRS; a chip is cut from one tile, so it never mixes zones.
- Labels: parcels rasterised per chip window (pixel-centre rule) over non-crop 0; pixels touched by a
  parcel boundary, pixels of ignored parcels and nodata pixels (-128 in all bands) are 255.
- Chips: `chip`² windows every `stride` pixels, plus one aligned to the far edge so the whole tile
  is covered; tiles smaller than a chip are skipped with a warning; chips without a single valid
  pixel (sea, outside the swath: found from band 1, where published nodata is -128 too) are dropped.
- Spatial split: geographic blocks shared by every zone (app.emb.split); a chip straddling two blocks
  is dropped, so no ground is seen by both splits.
- Shards: `shard_chips` chips each (default: as many as fit in ~1 GiB), chips in tile/row/column order
  so neighbouring chips are adjacent on disk. A shard's fingerprint covers the parameters, the input
  files' identities, the class map, its chips and `code_digest("shard")` (app.code_digest: the code
  that cuts, labels and stores chips), so a rerun keeps every shard whose manifest matches
  (fingerprint + checksums) and writes the rest.
- Report: `report.json` (atomic) next to the shards: parcels per class, unmapped codes (counted,
  the most frequent named), repaired and dropped geometries, chips per tile and split, label pixels
  per class and split.
"""

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from app.code_digest import code_digest
from app.emb import BANDS, IGNORE
from app.emb.labels import Labeller, load_class_map, read_parcels
from app.emb.quant import nodata_pixels
from app.emb.raster import EmbeddingRaster
from app.emb.shards import shard_files, shard_is_valid, write_index, write_shard
from app.emb.split import block_split, chip_blocks
from app.errors import BadInput
from app.hpc.atomic import atomic_write_bytes, sweep_temp_files

SPLITS = ("train", "val")
SHARD_BYTES = 1 << 30
QUANTISATION = "satellite-embedding-int8: v = sign(q)*(|q|/127.5)^2, -128 in all bands = nodata"
REPORT = "report.json"


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


@dataclass(frozen=True)
class LabelSpec:
    """Where the labels come from: the parcel file, its layer, the class map and its CLI overrides."""

    parcels: str
    class_map: str
    layer: str | None = None
    code_column: str | None = None
    unmapped: str | None = None


def _warn(msg: str) -> None:
    print(f"prepare: warning: {msg}", file=sys.stderr)


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def window_offsets(length: int, chip: int, stride: int) -> list[int]:
    starts = list(range(0, length - chip + 1, stride))
    if starts and starts[-1] != length - chip:
        starts.append(length - chip)  # cover the far edge
    return starts


def _read_tiles(src: Path) -> list[dict]:
    paths = sorted(src.glob("*.tif")) + sorted(src.glob("*.tiff"))
    if not paths:
        raise BadInput(f"no *.tif embedding rasters in {src}")
    tiles = []
    for path in paths:
        with EmbeddingRaster(path) as r:
            tiles.append({"name": path.name, "path": path, "grid": r.grid, "bottom_up": r.bottom_up,
                          "dtype": r.ds.dtypes[0]})
    sizes = {t["grid"].pixel_m for t in tiles}
    if len(sizes) > 1:
        raise BadInput(f"tiles have different pixel sizes ({', '.join(map(str, sorted(sizes)))} m): "
                       "spatial blocks need one")
    return tiles


def _valid_windows(raster: EmbeddingRaster, rows: list[int], cols: list[int], chip: int) -> np.ndarray:
    """bool [len(rows), len(cols)]: windows holding at least one valid pixel."""
    starts = np.asarray(cols)
    out = np.zeros((len(rows), len(cols)), bool)
    for i, row in enumerate(rows):
        columns = raster.valid_rows(row, chip).any(axis=0)
        counts = np.concatenate([[0], np.cumsum(columns)])
        out[i] = counts[starts + chip] > counts[starts]
    return out


def _plan(tiles: list[dict], spec: PrepareSpec) -> tuple[dict[str, list[tuple]], list[dict]]:
    """Every chip (tile index, row, col) per split in tile/row/column order, and per-tile counts."""
    plan = {split: [] for split in SPLITS}
    per_tile = []
    for t, tile in enumerate(tiles):
        grid = tile["grid"]
        counts = {"train": 0, "val": 0, "straddling": 0, "nodata": 0}
        per_tile.append(counts)
        if grid.width < spec.chip or grid.height < spec.chip:
            _warn(f"{tile['name']} ({grid.width}x{grid.height}) is smaller than a chip; skipped")
            continue
        rows = window_offsets(grid.height, spec.chip, spec.stride)
        cols = window_offsets(grid.width, spec.chip, spec.stride)
        with EmbeddingRaster(tile["path"]) as raster:
            valid = _valid_windows(raster, rows, cols, spec.chip)
        windows = [(r, c) for r in rows for c in cols]
        origins = np.array([grid.window_transform(r, c)[2::3] for r, c in windows], float).reshape(-1, 2)
        blocks = chip_blocks(grid.crs_wkt, origins, spec.chip * grid.pixel_m, spec.block * grid.pixel_m)
        for (row, col), block, ok in zip(windows, blocks, valid.ravel()):
            if not ok:
                counts["nodata"] += 1
            elif block is None:
                counts["straddling"] += 1
            else:
                split = block_split(*block, spec.seed, spec.val_frac)
                plan[split].append((t, row, col))
                counts[split] += 1
    return plan, per_tile


def _fill_chips(tiles, labeller: Labeller, chip: int, members, x, y) -> None:
    """write_shard's fill: the embeddings and labels of (tile, row, col) chips, in order."""
    open_tile = None
    raster: EmbeddingRaster | None = None
    try:
        for i, (t, row, col) in enumerate(members):
            if raster is None or open_tile != t:
                if raster is not None:
                    raster.close()
                raster, open_tile = EmbeddingRaster(tiles[t]["path"]), t
            grid = tiles[t]["grid"]
            x[i] = raster.read(row, col, chip, chip)
            label = labeller.labels(grid.crs_wkt, grid.window_transform(row, col), chip)
            label[nodata_pixels(x[i])] = IGNORE
            y[i] = label
    finally:
        if raster is not None:
            raster.close()


def prepare(src, out, spec: PrepareSpec, labels: LabelSpec) -> dict:
    """Write the shards, index.json and report.json; returns {'written', 'skipped', 'index', 'report'}.

    Everything that can be bad input (parameters, tiles, class map, parcel file) is checked before
    the output directory is created.
    """
    spec.check()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise BadInput(f"--src {src} is not a directory")
    tiles = _read_tiles(src)
    class_map = load_class_map(labels.class_map, labels.code_column, labels.unmapped)
    parcels = read_parcels(labels.parcels, class_map, labels.layer)
    plan, per_tile = _plan(tiles, spec)
    if not plan["train"]:
        raise BadInput("no training chips: tiles are smaller than a chip, hold no data, "
                       "or every block went to validation")
    for split in SPLITS:
        if spec.val_frac and not plan[split]:
            _warn(f"the {split} split is empty (too few spatial blocks for --block {spec.block})")

    out.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(out)
    sources = [_file_identity(t["path"]) for t in tiles] + [_file_identity(Path(labels.parcels)),
                                                             [labels.layer, asdict(class_map)]]
    code = code_digest("shard")
    labeller = Labeller(parcels)
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
            fingerprint = hashlib.sha256(json.dumps([asdict(spec), sources, members, code]).encode()).hexdigest()
            if shard_is_valid(out, name, fingerprint):
                skipped.append(name)
            else:
                meta = {"fingerprint": fingerprint, "split": split,
                        "chips": [{"tile": t, "row": r, "col": c, "transform": list(tiles[t]["grid"].window_transform(r, c))}
                                  for t, r, c in members]}
                write_shard(out, name, len(members), spec.chip,
                            partial(_fill_chips, tiles, labeller, spec.chip, members), meta)
                written.append(name)
            y = np.load(shard_files(out, name)[1], mmap_mode="r")
            counts += np.bincount(np.asarray(y).ravel(), minlength=IGNORE + 1)
        splits[split] = names
        class_pixels[split] = {str(k): int(v) for k, v in enumerate(counts) if v}
    _remove_stale(out, {n for names in splits.values() for n in names})
    index = {"splits": splits, "chips": {s: len(plan[s]) for s in SPLITS}, "chip": spec.chip,
             "bands": BANDS, "classes": class_map.classes, "class_names": list(class_map.names),
             "ignore": IGNORE, "quantisation": QUANTISATION, "class_pixels": class_pixels, "params": asdict(spec),
             "tiles": [{"name": t["name"], "width": t["grid"].width, "height": t["grid"].height,
                        "crs": t["grid"].crs_wkt, "transform": list(t["grid"].transform),
                        "bottom_up": t["bottom_up"], "dtype": t["dtype"]} for t in tiles]}
    write_index(out, index)
    report = {"parcels": parcels.report, "class_names": list(class_map.names), "class_pixels": class_pixels,
              "chips": {s: len(plan[s]) for s in SPLITS},
              "tiles": {t["name"]: counts for t, counts in zip(tiles, per_tile)}}
    atomic_write_bytes(out / REPORT, json.dumps(report, indent=1).encode())
    return {"written": written, "skipped": skipped, "index": index, "report": report}


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Shards left by an earlier plan with more shards (e.g. other parameters)."""
    for manifest in out.glob("*-?????.json"):
        name = manifest.name[:-len(".json")]
        if name.split("-")[0] in SPLITS and name not in keep:
            for path in shard_files(out, name):
                path.unlink(missing_ok=True)
