"""A season on disk, opened once per process: catalogue, NDVI stack, baseline, fingerprint.

Layout of a season directory (written by `python -m app.sure2 synth`, documented in the README):
fields.parquet, ndvi.tif, baseline.parquet, season.json (per-file sha256 + the combined fingerprint).
"""

import datetime as dt
import json
import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely
from pyproj import Transformer

from app.errors import BadInput, EnvironmentFailure
from app.sure2.ids import validate_field_id

MANIFEST = "season.json"
FIELDS = "fields.parquet"
NDVI = "ndvi.tif"
BASELINE = "baseline.parquet"
DATES_TAG = "ACQUISITION_DATES"
FIELDS_CRS = "EPSG:4326"
# GDAL block cache: big enough to hold the tiles of a band of neighbouring fields, so each tile is
# decompressed once per process when fields are taken in catalogue (spatial) order.
CACHE_ENV = "SURE2_GDAL_CACHEMAX_MB"
DEFAULT_CACHE_MB = 512


def hilbert_key(x, y, order: int) -> np.ndarray:
    """Hilbert-curve index of integer grid points (x, y) in [0, 2**order)^2, vectorised."""
    x = np.asarray(x, dtype=np.int64).copy()
    y = np.asarray(y, dtype=np.int64).copy()
    d = np.zeros_like(x)
    s = 1 << (order - 1)
    while s > 0:
        rx = ((x & s) > 0).astype(np.int64)
        ry = ((y & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the curve stays continuous
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


class Season:
    """Open with Season.open(data_dir); use as a context manager or call close()."""

    def __init__(self, data_dir, manifest, fields, baseline, dataset, stack):
        self.data_dir = Path(data_dir)
        self.fingerprint = manifest["fingerprint"]
        self._stack = stack
        self.dataset = dataset
        self.nodata = int(dataset.nodata)
        self.transform = dataset.transform
        self.dates = [dt.date.fromisoformat(s) for s in dataset.tags()[DATES_TAG].split(",")]
        self.n_dates = len(self.dates)
        if self.n_dates != dataset.count:
            raise EnvironmentFailure(f"{NDVI}: {dataset.count} bands but {self.n_dates} dates in its tags")
        self.day_numbers = np.array([d.toordinal() for d in self.dates], dtype=np.float64)
        # always_xy: GeoParquet coordinates are lon/lat whatever EPSG:4326's official axis order.
        self.to_raster = Transformer.from_crs(FIELDS_CRS, dataset.crs.to_wkt(), always_xy=True)
        self._fields = fields
        self._baseline = baseline
        self.field_ids = self._spatial_order()
        self._row = {fid: i for i, fid in enumerate(fields["field_id"])}

    @classmethod
    def open(cls, data_dir) -> "Season":
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise EnvironmentFailure(f"season directory {data_dir} does not exist or is not a directory")
        try:
            manifest = json.loads((data_dir / MANIFEST).read_text())
            fields = pq.read_table(data_dir / FIELDS).to_pydict()
            baseline = _read_baseline(data_dir / BASELINE)
        except (OSError, ValueError, KeyError) as exc:
            raise EnvironmentFailure(f"season {data_dir} is not readable: {exc}") from exc
        stack = ExitStack()
        try:
            cache_mb = int(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB))
            stack.enter_context(rasterio.Env(GDAL_CACHEMAX=cache_mb))
            dataset = stack.enter_context(rasterio.open(data_dir / NDVI))
            return cls(data_dir, manifest, fields, baseline, dataset, stack)
        except (rasterio.errors.RasterioError, OSError, KeyError, ValueError) as exc:
            stack.close()
            raise EnvironmentFailure(f"season {data_dir}: {NDVI} is not usable: {exc}") from exc
        except BaseException:
            stack.close()
            raise

    def _spatial_order(self) -> list:
        """Field ids along a Hilbert curve over raster tiles (then row, column inside a tile)."""
        geoms = shapely.from_wkb(self._fields["geometry"])
        b = shapely.bounds(geoms)
        x, y = self.to_raster.transform((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
        col, row = ~self.transform @ (np.asarray(x), np.asarray(y))
        col = np.clip(np.asarray(col), 0, self.dataset.width - 1).astype(np.int64)
        row = np.clip(np.asarray(row), 0, self.dataset.height - 1).astype(np.int64)
        block_h, block_w = self.dataset.block_shapes[0]
        tx, ty = col // block_w, row // block_h
        order = max(1, int(max(tx.max(initial=0), ty.max(initial=0)) + 1).bit_length())
        keys = np.lexsort((col, row, hilbert_key(tx, ty, order)))
        ids = self._fields["field_id"]
        return [ids[i] for i in keys]

    def require(self, field_id) -> str:
        """validate_field_id, then BadInput unless the id is in this season's catalogue."""
        validate_field_id(field_id)
        if field_id not in self._row:
            raise BadInput(f"unknown field id {field_id!r} (not in the season catalogue)")
        return field_id

    def field(self, field_id) -> dict:
        """One field's attributes (a row of fields.parquet)."""
        i = self._row[self.require(field_id)]
        return {name: values[i] for name, values in self._fields.items()}

    def baseline(self, region_id, crop):
        """(mean, std) arrays over the season's dates for this region and crop."""
        try:
            return self._baseline[(region_id, crop)]
        except KeyError:
            raise EnvironmentFailure(f"baseline has no entry for region {region_id} crop {crop}") from None

    def close(self) -> None:
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_baseline(path) -> dict:
    """baseline.parquet → {(region_id, crop): (mean[n_dates], std[n_dates])} ordered by date."""
    t = pq.read_table(path, columns=["region_id", "crop", "date", "ndvi_mean", "ndvi_std"]).to_pydict()
    groups = {}
    for region, crop, date, mean, std in zip(
        t["region_id"], t["crop"], t["date"], t["ndvi_mean"], t["ndvi_std"]
    ):
        groups.setdefault((region, crop), []).append((date, mean, std))
    out = {}
    for key, rows in groups.items():
        rows.sort()
        out[key] = (np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
    return out
