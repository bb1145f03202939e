"""The season's damage map for an adjuster: one GeoTIFF per NDVI stack, from the fields' outputs.

OUT/.batch/damage_<stack>.tif has the stack's CRS, transform and size; a valid Cloud-Optimized GeoTIFF
(tiled 256², deflate, overviews by nearest neighbour: QGIS draws a national map from the overviews); uint16:
  band 1 `damage_class`: 0 no data (outside assessed fields, edge pixels, pixels too rarely seen),
         1 undamaged, 2 damaged; nodata 0 and a colour table (green / red), so QGIS shows it as is;
  band 2 `damage_doy`: day of year of the pixel's damage date (0 = not damaged).
Each assessed output made with the pixel level carries its window of this map in its footer
(`damage_map`, app.sure2.pixels.map_patch), taken from the report's one read of each output
(app.batch.output_pass). The file is written one row of tiles at a time, so memory
stays one strip whatever the stack's size; a stack with no such output gets no map (an old one is
removed, so the maps always match the outputs the report counts).
"""

import os
import re

import numpy as np

from app.hpc.atomic import atomic_path

TILE = 256
# Cloud-Optimized GeoTIFF (GDAL's COG driver, copying the strip-written map): IFDs first, then tiles,
# overviews by nearest neighbour (classes and dates must stay what they are) down to one tile.
COG_OPTIONS = dict(blocksize=TILE, compress="DEFLATE", predictor=2, overviews="AUTO", overview_resampling="NEAREST",
                   resampling="NEAREST", BIGTIFF="IF_SAFER")
CLASS_COLOURS = {0: (0, 0, 0, 0), 1: (120, 190, 110, 255), 2: (215, 48, 39, 255)}
DESCRIPTIONS = ("damage_class: 0 no data, 1 undamaged, 2 damaged", "damage_doy: day of year of the damage (0 none)")


def map_path(layout, stack_name: str):
    return layout.root / f"damage_{re.sub(r'[^A-Za-z0-9_-]', '_', stack_name)}.tif"


def write_damage_maps(season, patches: dict, layout) -> str:
    """Write the maps from the assessed outputs' patches (stack -> [(row0, col0, classes, date index)], read
    once by app.batch.output_pass); return a note saying where they went."""
    written = []
    for name, stack in sorted(season.stacks.items()):
        path = map_path(layout, name)
        if not patches.get(name):
            path.unlink(missing_ok=True)
            continue
        write_stack_map(stack, patches[name], path)
        written.append(str(path))
    if not written:
        return "no damage map (no output of the pixel level)"
    return f"damage map(s) {', '.join(written)}"


def write_stack_map(stack, patches: list, path) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.shutil import copy as rio_copy

    doy_of = np.append(stack.doy.astype(np.uint16), np.uint16(0))  # date index → day of year; NO_DATE → 0
    profile = dict(driver="GTiff", width=stack.width, height=stack.height, count=2, dtype="uint16", crs=stack.crs,
                   transform=stack.transform, nodata=0, tiled=True, blockxsize=TILE, blockysize=TILE,
                   compress="deflate", predictor=2)
    top = np.array([p[0] for p in patches])
    bottom = top + np.array([p[2].shape[0] for p in patches])
    strips = f"/vsimem/damage_{os.getpid()}_{id(patches)}.tif"  # compressed in memory: mostly zeros
    try:
        with rasterio.open(strips, "w", **profile) as dst:
            for band, text in enumerate(DESCRIPTIONS, start=1):
                dst.set_band_description(band, text)
            dst.update_tags(CLASSES="0 no data, 1 undamaged, 2 damaged", DATES="day of year, 0 = none",
                            YEAR=str(stack.dates[0].year))
            for r0 in range(0, stack.height, TILE):
                r1 = min(stack.height, r0 + TILE)
                strip = np.zeros((2, r1 - r0, stack.width), dtype=np.uint16)
                for k in np.flatnonzero((top < r1) & (bottom > r0)):
                    _paste(strip, r0, patches[k], doy_of, stack.width)
                dst.write(strip, window=((r0, r1), (0, stack.width)))
            dst.write_colormap(1, CLASS_COLOURS)
        with atomic_path(path) as tmp:
            rio_copy(strips, tmp, driver="COG", **COG_OPTIONS)
    finally:
        if rasterio.shutil.exists(strips):
            rasterio.shutil.delete(strips)


def _paste(strip, r0, patch, doy_of, width) -> None:
    """Copy a patch's judged pixels (class != 0) into the strip: neighbours' empty pixels never erase."""
    row0, col0, classes, dates = patch
    h, w = classes.shape
    a0, a1 = max(row0, r0), min(row0 + h, r0 + strip.shape[1])
    b0, b1 = max(col0, 0), min(col0 + w, width)
    if a1 <= a0 or b1 <= b0:
        return
    cls = classes[a0 - row0:a1 - row0, b0 - col0:b1 - col0]
    idx = dates[a0 - row0:a1 - row0, b0 - col0:b1 - col0].astype(np.int64)
    judged = cls > 0
    target = (slice(a0 - r0, a1 - r0), slice(b0, b1))
    strip[0][target][judged] = cls[judged]
    strip[1][target][judged] = doy_of[np.minimum(idx, len(doy_of) - 1)][judged]
