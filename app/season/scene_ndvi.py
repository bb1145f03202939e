"""One scene → NDVI (int16 × 10000) over the stack blocks it touches, reading only the COG blocks that
intersect them.

Reads are aligned to the red (or ndvi) asset's own internal blocks, so each compressed block is
decoded once. SCL (20 m) is read over the same ground with `out_shape` at 10 m and nearest
resampling (each 20 m class covers its 2 × 2 pixels exactly). A pixel is nodata when red or NIR is
0 (the product's nodata), its SCL class is masked, or NIR + red ≤ 0 after the offset; NDVI is
(NIR − red) / (NIR + red) of (DN − offset) × scale, clipped to [−1, 1]. The offset is decided after
all blocks are read (app.season.offset), from the evidence they carry. Both per-pixel passes are
compiled (app.season._scene_kernels) and read a real product's 20 m SCL at its own resolution.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from app.season._scene_kernels import ndvi_int16
from app.season.offset import Evidence, decide
from app.season.stack_plan import BLOCK, NODATA

DEFAULT_MASKED = (0, 1, 3, 8, 9, 10)
MAX_READ_PX = 2048  # a read covers at most this many pixels along each side (whole COG blocks)


@dataclass
class ScenePieces:
    """What a scene contributes: pieces (block index, row slice, col slice, int16 NDVI) + its audit,
    and how many bytes its COG blocks decoded to."""

    scene_id: str
    pieces: list
    audit: dict
    decoded_bytes: int = 0


def blocks_to_read(plan, scene, block_shape):
    """(windows, COG blocks in them, dr, dc): scene-pixel windows, aligned to the COG's blocks and
    covering those that intersect the plan's needed blocks, as few rectangles as they form. The one
    block selection: the build reads these windows, and `app.season fetch` fetches their blocks."""
    t = Affine(*scene.transform)
    dc = round((plan.transform.c - t.c) / t.a)  # stack pixel (r, c) = scene pixel (r - dr, c - dc)
    dr = round((t.f - plan.transform.f) / t.a)
    bh, bw = block_shape
    wanted = set()
    for b in range(len(plan.blocks)):
        r0, r1, c0, c1 = plan.block_window(b)
        # in scene pixels
        sr0, sr1, sc0, sc1 = max(0, r0 + dr), min(scene.height, r1 + dr), max(0, c0 + dc), min(scene.width, c1 + dc)
        if sr1 <= sr0 or sc1 <= sc0:
            continue
        for rb in range(sr0 // bh, (sr1 - 1) // bh + 1):
            for cb in range(sc0 // bw, (sc1 - 1) // bw + 1):
                wanted.add((rb, cb))
    windows = []
    for (rb0, rb1), (cb0, cb1) in _rectangles(wanted, max(1, MAX_READ_PX // bh), max(1, MAX_READ_PX // bw)):
        windows.append((rb0 * bh, min(scene.height, rb1 * bh), cb0 * bw, min(scene.width, cb1 * bw)))
    return windows, len(wanted), dr, dc


def _rectangles(blocks: set, max_rows: int, max_cols: int) -> list:
    """The (row, col) blocks as few rectangles of at most max_rows × max_cols blocks,
    [((rb0, rb1), (cb0, cb1)), ...] (ends exclusive): runs along each block row, grown down while the
    next row has the same run. Every block once; one read per rectangle costs far less per block than
    a read per block, and the cap bounds a read's temporaries (a ready-NDVI asset is turned to float64)."""
    runs_of_row = {}
    for rb, cb in sorted(blocks):
        runs = runs_of_row.setdefault(rb, [])
        if runs and runs[-1][1] == cb and cb - runs[-1][0] < max_cols:
            runs[-1][1] = cb + 1
        else:
            runs.append([cb, cb + 1])
    rectangles, growing = [], {}  # growing: column run -> [first row, end row]
    for rb, runs in sorted(runs_of_row.items()):
        spans = [tuple(r) for r in runs]
        for span, (first, end) in list(growing.items()):
            if end != rb or span not in spans or end - first == max_rows:
                rectangles.append(((first, end), span))
                del growing[span]
        for span in spans:
            growing.setdefault(span, [rb, rb])[1] = rb + 1
    rectangles += [(tuple(rows), span) for span, rows in growing.items()]
    return sorted(rectangles)


def _scatter(plan, window, dr, dc, ndvi, pieces):
    """Cut one decoded scene window into the stack blocks it overlaps."""
    row0, row1, col0, col1 = window[0] - dr, window[1] - dr, window[2] - dc, window[3] - dc  # stack pixels
    for br in range(max(0, row0) // BLOCK, (min(plan.height, row1) - 1) // BLOCK + 1):
        for bc in range(max(0, col0) // BLOCK, (min(plan.width, col1) - 1) // BLOCK + 1):
            b = plan.block_index.get((br, bc))
            if b is None:
                continue
            r0, r1, c0, c1 = plan.block_window(b)
            ir0, ir1, ic0, ic1 = max(r0, row0), min(r1, row1), max(c0, col0), min(c1, col1)
            if ir1 > ir0 and ic1 > ic0:
                part = ndvi[ir0 - row0:ir1 - row0, ic0 - col0:ic1 - col0]
                pieces.append((b, slice(ir0 - r0, ir1 - r0), slice(ic0 - c0, ic1 - c0), part))


def class_lut(classes) -> np.ndarray:
    """A 256-entry lookup: lut[scl] is 1 for the given SCL classes (much faster than np.isin)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(classes)] = 1
    return lut


def ready_ndvi(values, nodata, scale: float, scl, masked_lut) -> np.ndarray:
    """int16 NDVI × 10000 from a ready ndvi asset (float NDVI, or integers × scale)."""
    v = values.astype(np.float64)
    ok = np.isfinite(v)
    if nodata is not None and not np.isnan(nodata):
        ok &= values != nodata
    if scl is not None:
        ok &= masked_lut[scl] == 0
    ndvi = np.clip(np.where(ok, v * scale, 0.0), -1.0, 1.0)
    return np.where(ok, np.rint(ndvi * 10000), NODATA).astype(np.int16)


def scl_window(scl_transform, scl_width: int, scl_height: int, t, w):
    """(window in SCL pixels, step, boundless) that the SCL read of 10 m window w covers. Where the
    20 m grid is the 10 m grid's own (same origin, half the resolution, window on even pixels: real S2
    products) the 20 m classes themselves, step 2: each covers its 2 × 2 pixels, exactly what nearest
    resampling gives; otherwise a (fractional) window for GDAL's nearest resampling onto w, step 1.
    The fetch asks for the SCL blocks under this same window (app.season.fetch_plan)."""
    row0, row1, col0, col1 = w
    s = scl_transform
    aligned = (s.a == 2 * t.a and s.e == 2 * t.e and s.c == t.c and s.f == t.f and row0 % 2 == 0 and col0 % 2 == 0)
    if aligned:
        win = Window(col0 // 2, row0 // 2, (col1 - col0 + 1) // 2, (row1 - row0 + 1) // 2)
        if win.col_off + win.width <= scl_width and win.row_off + win.height <= scl_height:
            return win, 2, False
    x0, y1 = t * (col0, row0)
    x1, y0 = t * (col1, row1)
    sw = rasterio.windows.from_bounds(x0, y0, x1, y1, transform=s)
    outside = (sw.col_off < 0 or sw.row_off < 0 or sw.col_off + sw.width > scl_width + 1e-6
               or sw.row_off + sw.height > scl_height + 1e-6)
    return sw, 1, outside


def _scl_for(scl_ds, t, w):
    """(SCL, step) over a 10 m window (see scl_window)."""
    win, step, outside = scl_window(scl_ds.transform, scl_ds.width, scl_ds.height, t, w)
    if step == 2:
        return scl_ds.read(1, window=win), 2
    return scl_ds.read(1, window=win, out_shape=(w[1] - w[0], w[3] - w[2]), resampling=Resampling.nearest,
                       boundless=outside, fill_value=0), 1


def read_scene(plan, scene, masked=DEFAULT_MASKED) -> ScenePieces:
    """Read, decide the offset, compute NDVI; raises rasterio/OS errors for an unreadable scene."""
    grid = "red" if scene.kind == "reflectance" else "ndvi"
    bands = [grid] + (["nir"] if grid == "red" else [])
    with rasterio.Env(GDAL_CACHEMAX=64):
        datasets = {b: rasterio.open(scene.assets[b].path) for b in bands}
        scl_ds = rasterio.open(scene.assets["scl"].path) if "scl" in scene.assets else None
        try:
            windows, n_blocks, dr, dc = blocks_to_read(plan, scene, datasets[grid].block_shapes[0])
            t = datasets[grid].transform
            raw, evidence = [], Evidence()
            for w in windows:
                row0, row1, col0, col1 = w
                win = Window(col0, row0, col1 - col0, row1 - row0)
                arrays = {b: ds.read(1, window=win) for b, ds in datasets.items()}
                scl, step = _scl_for(scl_ds, t, w) if scl_ds is not None else (None, 1)
                if grid == "red":
                    evidence.add(arrays["red"], scl, step)
                raw.append((w, arrays, scl, step))
            ndvi_nodata = datasets[grid].nodata
        finally:
            for ds in datasets.values():
                ds.close()
            if scl_ds is not None:
                scl_ds.close()
    audit: dict[str, Any] = {"id": scene.id, "source": scene.source, "solar_day": scene.solar_day.isoformat(),
             "acquired": scene.acquired.isoformat(), "kind": scene.kind, "catalogue": scene.catalogue,
             "processing_baseline": scene.processing_baseline,
             "boa_offset_applied_flag": scene.offset_applied_flag, "scl": "scl" in scene.assets,
             "cog_blocks_read": n_blocks, "reads": len(windows), "files": {b: str(a.path) for b, a in scene.assets.items()}}
    pieces = []
    masked = class_lut(masked)
    if grid == "red":
        decision = decide(scene, evidence)
        audit["offset"] = decision.record()
        for w, arrays, scl, step in raw:
            ndvi = ndvi_int16(arrays["red"], arrays["nir"], scl, step, decision.offset_dn, masked, NODATA)
            _scatter(plan, w, dr, dc, ndvi, pieces)
    else:
        asset = scene.assets["ndvi"]
        dtype_float = raw and raw[0][1]["ndvi"].dtype.kind == "f"
        scale = asset.scale if asset.scale is not None else (1.0 if dtype_float else 1e-4)
        nodata = asset.nodata if asset.nodata is not None else ndvi_nodata
        audit["offset"] = {"offset_dn": 0, "reason": f"ready ndvi asset (scale {scale:g}): no BOA offset applies"}
        for w, arrays, scl, step in raw:
            full = None if scl is None else np.repeat(np.repeat(scl, step, axis=0), step, axis=1)[:w[1] - w[0], :w[3] - w[2]]
            _scatter(plan, w, dr, dc, ready_ndvi(arrays["ndvi"], nodata, scale, full, masked), pieces)
    audit["valid_pixels"] = int(np.sum([np.count_nonzero(p[3] != NODATA) for p in pieces]))
    decoded = sum(a.nbytes for _, arrays, _, _ in raw for a in arrays.values())
    decoded += sum(scl.nbytes for _, _, scl, _ in raw if scl is not None)
    return ScenePieces(scene.id, pieces, audit, decoded)
