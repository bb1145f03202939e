"""Stack reads by whole tiles, each tile decoded once while it stays in a small per-stack cache.

A stack is tiled (block × block, pixel-interleaved: one tile holds every date), and fields taken in
catalogue (spatial) order share tiles with their neighbours. Reading a field's window through GDAL
copies it band by band out of GDAL's block cache, which was most of a field's read time; here a
window is assembled from cached tiles (numpy slices), and a tile is read from the file once — one
aligned block read — for all the fields it serves. The cache keeps the most recently used
MAX_TILES tiles (SURE2_TILE_CACHE; a 37-date 128² int16 tile is 1.2 MB).
"""

import os
import threading
from collections import OrderedDict

import numpy as np
from rasterio.windows import Window

CACHE_ENV = "SURE2_TILE_CACHE"
DEFAULT_TILES = 64


class TileReader:
    def __init__(self, stack, max_tiles: int):
        self.stack, self.max_tiles = stack, max(1, max_tiles)
        self._tiles = OrderedDict()
        self._lock = threading.Lock()

    def tile(self, row: int, col: int) -> np.ndarray:
        key = (row, col)
        with self._lock:
            if key in self._tiles:
                self._tiles.move_to_end(key)
                return self._tiles[key]
        st, b = self.stack, self.stack.block
        data = st.read(Window(col * b, row * b, min(b, st.width - col * b), min(b, st.height - row * b)))
        with self._lock:
            self._tiles[key] = data
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)
        return data

    def read(self, window: Window) -> np.ndarray:
        """All dates of a window inside the raster, (n_dates, h, w), assembled from whole tiles."""
        b = self.stack.block
        r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        out = None
        for tr in range(r0 // b, (r0 + h - 1) // b + 1):
            for tc in range(c0 // b, (c0 + w - 1) // b + 1):
                tile = self.tile(tr, tc)
                if out is None:
                    out = np.empty((tile.shape[0], h, w), dtype=tile.dtype)
                y0, y1 = max(r0, tr * b), min(r0 + h, tr * b + tile.shape[1])
                x0, x1 = max(c0, tc * b), min(c0 + w, tc * b + tile.shape[2])
                out[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0] = tile[:, y0 - tr * b:y1 - tr * b, x0 - tc * b:x1 - tc * b]
        assert out is not None, "an empty window"  # callers ask for windows of at least one pixel
        return out


def read(stack, window: Window) -> np.ndarray:
    """stack.read(window), through the stack's tile cache (made at its first read)."""
    reader = stack.__dict__.get("_tile_reader")
    if reader is None:
        reader = TileReader(stack, int(os.environ.get(CACHE_ENV, DEFAULT_TILES)))
        stack.__dict__["_tile_reader"] = reader
    return reader.read(window)
