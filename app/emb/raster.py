"""One embedding raster, seen north-up and in the published int8 form, whatever its storage.

- Bands: 64, int8 in the published quantisation (app.emb.quant; kept byte for byte) or float
  (a float32 export: quantised on read by the same rule, NaN or the nodata value in every band →
  nodata). Anything else is bad input.
- Orientation: one public mirror stores its COGs bottom-up (positive y pixel size: row 0 is the
  southern edge). Every reader here sees the north-up equivalent: `transform` has a negative y pixel
  size and `read` returns rows north first, so chips, labels and predictions never depend on the
  storage order. Predictions are written north-up with that transform (the same ground, the same
  pixel centres).
- Nodata: -128 in all bands (published rule), plus a per-dataset mask or alpha band where the file
  has one. `read` returns int8 with nodata pixels set to -128 in every band.
- Grid: a projected CRS (UTM for the published tiles), square pixels, no rotation.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.emb import BANDS
from app.emb.quant import NODATA, quantise
from app.errors import BadInput


@dataclass(frozen=True)
class Grid:
    """A raster's north-up georeferencing: what prepare's plan and predict's output need."""

    width: int
    height: int
    crs_wkt: str
    transform: tuple  # (a, b, c, d, e, f) of the north-up view: e < 0

    @property
    def pixel_m(self) -> float:
        return self.transform[0]

    def window_transform(self, row: int, col: int) -> tuple:
        """The affine (a, b, c, d, e, f) of a window whose top-left (north-west) pixel is (row, col)."""
        a, b, c, d, e, f = self.transform
        return (a, b, c + col * a, d, e, f + row * e)


class EmbeddingRaster:
    """An open embedding GeoTIFF; use as a context manager."""

    def __init__(self, path):
        import rasterio
        from rasterio.enums import MaskFlags

        self.path = Path(path)
        try:
            self.ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise BadInput(f"cannot read {self.path.name}: {str(exc).splitlines()[0]}") from None
        try:
            self.grid = self._check()
        except BadInput:
            self.ds.close()
            raise
        ds = self.ds
        self.bottom_up = ds.transform.e > 0
        self.is_float = ds.dtypes[0].startswith("float")
        self.has_mask = any(f in (MaskFlags.per_dataset, MaskFlags.alpha) for f in ds.mask_flag_enums[0])

    def _check(self) -> Grid:
        ds, name = self.ds, self.path.name
        if ds.count != BANDS:
            raise BadInput(f"{name} has {ds.count} bands, expected {BANDS}")
        if len(set(ds.dtypes)) != 1 or not (ds.dtypes[0] == "int8" or ds.dtypes[0].startswith("float")):
            raise BadInput(f"{name}: embeddings must be int8 (published quantisation) or float, got {ds.dtypes[0]}")
        if ds.crs is None or not ds.crs.is_projected:
            raise BadInput(f"{name} has no projected CRS (expected UTM)")
        t = ds.transform
        if t.b or t.d:
            raise BadInput(f"{name} is rotated; only north-up or bottom-up rasters are supported")
        if t.a <= 0 or abs(abs(t.e) - t.a) > 1e-9 * t.a:
            raise BadInput(f"{name} must have square pixels and columns running east (got {t.a} x {t.e})")
        e, f = -abs(t.e), t.f if t.e < 0 else t.f + t.e * ds.height
        return Grid(ds.width, ds.height, ds.crs.to_wkt(), (t.a, 0.0, t.c, 0.0, e, f))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.ds.close()

    @property
    def crs(self):
        return self.ds.crs

    def _window(self, row, col, height, width):
        from rasterio.windows import Window

        if self.bottom_up:  # north-up rows [row, row+h) are storage rows [H-row-h, H-row), reversed
            row = self.grid.height - row - height
        return Window(col, row, width, height)

    def _oriented(self, data):
        return data[..., ::-1, :] if self.bottom_up else data

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """int8 [64, height, width] of the north-up window at (row, col); nodata = -128 in all bands."""
        ds = self.ds
        window = self._window(row, col, height, width)
        data = ds.read(window=window)
        if self.is_float:
            missing = np.isnan(data).any(axis=0)
            if ds.nodata is not None and not np.isnan(ds.nodata):
                missing |= (data == ds.nodata).all(axis=0)
            q = quantise(data)
        else:
            q, missing = data, None
        if self.has_mask:
            outside = ds.dataset_mask(window=window) == 0
            missing = outside if missing is None else missing | outside
        if missing is not None:
            q[:, missing] = NODATA
        return np.ascontiguousarray(self._oriented(q))

    def valid_rows(self, row: int, height: int) -> np.ndarray:
        """bool [height, W]: pixels of the north-up rows [row, row+height) that hold data.

        Reads band 1 only (published nodata is -128 in every band, and no valid component
        quantises to -128), plus the mask where the file has one: cheap on band-interleaved files.
        """
        ds = self.ds
        window = self._window(row, 0, height, self.grid.width)
        band = ds.read(1, window=window)
        if self.is_float:
            valid = ~np.isnan(band)
            if ds.nodata is not None and not np.isnan(ds.nodata):
                valid &= band != ds.nodata
        else:
            valid = band != NODATA
        if self.has_mask:
            valid &= ds.dataset_mask(window=window) != 0
        return np.ascontiguousarray(self._oriented(valid))

