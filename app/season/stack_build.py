"""Build one NDVI stack (the GeoTIFF of the season contract) from its plan, resumably.

Scenes are read in parallel (one thread per physical core; GDAL decodes outside the GIL), each
giving NDVI pieces for the stack's blocks. Pieces are merged in (solar day, item id) order into a
scratch store on the temp dir (RAM or local disk, never Lustre: app.hpc.tempdir): every date of a
block side by side, so the GeoTIFF is then written tile by tile, pixel-interleaved, each tile once.
Within a solar day the first valid pixel wins (granules of one pass carry the same measurement).

Files, both atomic (app.hpc.atomic): `<stack>.tif` first, then `<stack>.json` (this stack's audit:
every scene used, its offset decision, blocks read; the hash of its inputs and the GeoTIFF's sha256).
A stack is VALID — and skipped by a rerun — when both exist, both name the same inputs hash (grid,
blocks, dates, scene files and sizes, masked classes, and the import code's
`code_digest("stack")`: stacks made by other import code are rebuilt), the GeoTIFF's sha256 is the one
recorded (a torn or altered copy is rebuilt) and it opens with the planned size, transform, dates and
nodata.
"""

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from app.code_digest import code_digest
from app.errors import EnvironmentFailure
from app.hpc.atomic import atomic_path, atomic_write_bytes, sha256_file
from app.hpc.cores import physical_cores
from app.hpc.tempdir import pick_temp_dir, temp_room
from app.season.scene_ndvi import read_scene
from app.season.stack_plan import BLOCK, NODATA
from app.sure2.season import DATES_TAG

INPUTS_TAG = "SEASON_STACK_INPUTS"


def audit_path(season_dir: Path, plan) -> Path:
    return season_dir / f"{Path(plan.file).stem}.json"


def stack_is_valid(season_dir: Path, plan, inputs_sha256: str) -> bool:
    tif, audit = season_dir / plan.file, audit_path(season_dir, plan)
    if not tif.is_file() or not audit.is_file():
        return False
    try:
        recorded = json.loads(audit.read_text())
        if recorded.get("inputs_sha256") != inputs_sha256 or recorded.get("sha256") != sha256_file(tif):
            return False
        with rasterio.open(tif) as ds:
            tags = ds.tags()
            return (ds.width, ds.height, ds.count, tuple(ds.transform)[:6], ds.nodata, tags.get(DATES_TAG),
                    tags.get(INPUTS_TAG)) == (plan.width, plan.height, len(plan.dates), tuple(plan.transform)[:6],
                                              NODATA, ",".join(d.isoformat() for d in plan.dates), inputs_sha256)
    except (OSError, ValueError, rasterio.errors.RasterioError):
        return False


def build_stack(season_dir: Path, plan, masked, workers: int | None = None, log=print) -> dict:
    """Build plan's stack into season_dir unless valid; returns its audit dict."""
    inputs = plan.inputs_sha256(masked, code_digest("stack"))
    if stack_is_valid(season_dir, plan, inputs):
        log(f"stack {plan.name}: valid, skipped ({plan.file})")
        return json.loads(audit_path(season_dir, plan).read_text())
    workers = workers or physical_cores()
    date_index = {d: k for k, d in enumerate(plan.dates)}
    shape = (len(plan.blocks), len(plan.dates), BLOCK, BLOCK)
    base = pick_temp_dir()
    need = 2 * int(np.prod(shape))  # the int16 scratch store: every block x every date
    room, bound = temp_room(base)
    if need > room:
        raise EnvironmentFailure(
            f"stack {plan.name}: its scratch store needs {need >> 20} MiB ({len(plan.blocks)} blocks x "
            f"{len(plan.dates)} dates x {BLOCK}x{BLOCK} int16) but the temp dir {base} has room for {room >> 20} MiB "
            f"({bound}): give the job more memory (--mem-per-cpu) or a larger temp dir (BIND_TMP)")
    with tempfile.TemporaryDirectory(prefix=f"season-{plan.name}-", dir=base) as scratch:
        mapped = np.lib.format.open_memmap(Path(scratch) / "store.npy", mode="w+", dtype=np.int16, shape=shape)
        store = mapped.view(np.ndarray)  # the same pages without memmap's Python-level slicing hooks
        store[:] = NODATA
        touched = np.zeros(shape[:2], dtype=bool)  # (block, date) already written by some scene
        scenes, skipped, decoded = [], [], 0
        read_start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for scene, result in _in_order(pool, plan, masked, 4 * workers):
                if isinstance(result, str):
                    skipped.append({"id": scene.id, "source": scene.source, "reason": result})
                    log(f"stack {plan.name}: scene {scene.id} skipped: {result}")
                    continue
                k = date_index[scene.solar_day]
                for b, rows, cols, ndvi in result.pieces:
                    target = store[b, k, rows, cols]
                    if touched[b, k]:  # another granule of this solar day came first: fill only its gaps
                        np.copyto(target, ndvi, where=target == NODATA)
                    else:
                        target[...] = ndvi  # nothing there yet: a plain copy
                        touched[b, k] = True
                scenes.append(result.audit)
                decoded += result.decoded_bytes
        log(f"stack {plan.name}: {len(scenes)} scenes read, {decoded / 1e6:.0f} MB decoded in "
            f"{time.perf_counter() - read_start:.2f} s ({workers} threads)")
        audit = {"stack": plan.name, "file": plan.file, "crs": plan.crs, "inputs_sha256": inputs,
                 "n_fields": plan.n_fields, "blocks": len(plan.blocks), "block": BLOCK,
                 "dates": [d.isoformat() for d in plan.dates],
                 "scenes_by_date": {d.isoformat(): [s["id"] for s in scenes if s["solar_day"] == d.isoformat()]
                                    for d in plan.dates},
                 "scenes": scenes, "skipped_scenes": plan.skipped_scenes + skipped}
        _write_tif(season_dir / plan.file, plan, store, inputs, workers)
        del store, mapped
        audit["sha256"] = sha256_file(season_dir / plan.file)
        atomic_write_bytes(audit_path(season_dir, plan), (json.dumps(audit, indent=1) + "\n").encode())
    log(f"stack {plan.name}: built {plan.file} ({len(plan.dates)} dates, {len(plan.blocks)} blocks, "
        f"{len(scenes)} scenes)")
    return audit


def _in_order(pool, plan, masked, ahead: int):
    """(scene, result) in plan order, at most `ahead` scenes in flight: the merge order (first valid
    wins) never depends on timing, and finished results wait in memory only briefly."""
    for start in range(0, len(plan.scenes), ahead):
        chunk = plan.scenes[start:start + ahead]
        yield from zip(chunk, pool.map(lambda s: _read(plan, s, masked), chunk))


def _read(plan, scene, masked):
    """The scene's pieces, or the reason it cannot be used (a broken file is that scene's problem)."""
    try:
        return read_scene(plan, scene, masked)
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        return f"unreadable: {' '.join(str(exc).split())}"


def _write_tif(path: Path, plan, store, inputs: str, workers: int) -> None:
    profile = dict(driver="GTiff", width=plan.width, height=plan.height, count=len(plan.dates), dtype="int16",
                   crs=plan.crs, transform=plan.transform, nodata=NODATA, tiled=True, blockxsize=BLOCK,
                   blockysize=BLOCK, compress="zstd", predictor=2, interleave="pixel", BIGTIFF="IF_SAFER",
                   SPARSE_OK=True, NUM_THREADS=str(workers))
    try:
        with atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.update_tags(**{DATES_TAG: ",".join(d.isoformat() for d in plan.dates), INPUTS_TAG: inputs},
                                UNITS="NDVI x 10000",
                                NODATA_MEANS="cloud, shadow, masked SCL class, no scene, or outside the field blocks")
                for band, d in enumerate(plan.dates, start=1):
                    dst.set_band_description(band, d.isoformat())
                for b in range(len(plan.blocks)):
                    r0, r1, c0, c1 = plan.block_window(b)
                    dst.write(store[b, :, :r1 - r0, :c1 - c0], window=Window(c0, r0, c1 - c0, r1 - r0))
    except rasterio.errors.RasterioError as exc:
        raise EnvironmentFailure(f"cannot write {path}: {exc}") from exc
