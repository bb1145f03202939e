"""A season on disk, opened once per process: catalogue, NDVI stacks, baseline, fingerprint.

Layout of a season directory (format sure2-season/2, documented in the README):
  season.json       format, `stacks` (name → file, CRS, transform, size, block, nodata, dates), sha256 per
                    file and the combined fingerprint (+ the build's audit trail for imported seasons)
  fields.parquet    the catalogue, one row per insured field; `stack` names the NDVI stack the field is
                    assessed in (null: no stack covers it, `note` says why)
  <stack file>.tif  one pixel-interleaved int16 NDVI stack per UTM zone (or tile); stacks may have
                    different acquisition dates: a field's output has one row per date of its stack
  baseline.parquet  per region_id × crop × day of year: ndvi_mean, ndvi_std (interpolated to each
                    stack's dates)

Stacks are opened lazily, at a field's first read: a worker touches only the stacks its fields lie
in, and a stack file that hangs (a dead storage target) holds up only its own fields.
"""

import datetime as dt
import json
import os
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer

from app.errors import BadInput, EnvironmentFailure
from app.sure2.ids import validate_field_id

FORMAT = "sure2-season/2"
MANIFEST = "season.json"
FIELDS = "fields.parquet"
BASELINE = "baseline.parquet"
DATES_TAG = "ACQUISITION_DATES"
FIELDS_CRS = "EPSG:4326"
NO_STACK = None  # a field's `stack` when no NDVI stack covers it
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


def stack_entry(file: str, crs: str, transform, width: int, height: int, block: int, nodata: int, dates) -> dict:
    """A stack's record in season.json (what writers of a season call)."""
    return {"file": file, "crs": crs, "transform": list(transform)[:6], "width": int(width),
            "height": int(height), "block": int(block), "nodata": int(nodata),
            "dates": [d.isoformat() for d in dates]}


@dataclass
class Stack:
    """One NDVI stack: its grid and dates from the manifest, the GeoTIFF opened on first use."""

    name: str
    path: Path
    crs: str
    transform: Affine
    width: int
    height: int
    block: int
    nodata: int
    dates: list
    _open: object = field(repr=False, default=None)  # callable(path) -> dataset, from the Season
    _dataset: object = field(repr=False, default=None)
    _lock: threading.Lock = field(repr=False, default_factory=threading.Lock)

    def __post_init__(self):
        self.n_dates = len(self.dates)
        self.day_numbers = np.array([d.toordinal() for d in self.dates], dtype=np.float64)
        self.doy = np.array([d.timetuple().tm_yday for d in self.dates], dtype=np.float64)
        # always_xy: GeoParquet coordinates are lon/lat whatever EPSG:4326's official axis order.
        self.to_raster = Transformer.from_crs(FIELDS_CRS, self.crs, always_xy=True)

    @property
    def dataset(self):
        with self._lock:
            if self._dataset is None:
                self._dataset = self._open(self)
            return self._dataset

    def read(self, window):
        """All dates of a window, (n_dates, h, w) int16: one call, every date of a tile at once."""
        try:
            return self.dataset.read(window=window)
        except rasterio.errors.RasterioError as exc:
            raise EnvironmentFailure(f"NDVI stack {self.path.name} is not readable: {exc}") from exc


class Season:
    """Open with Season.open(data_dir); use as a context manager or call close()."""

    def __init__(self, data_dir, manifest, fields, baseline, stacks):
        self.data_dir = Path(data_dir)
        self.manifest = manifest
        self.fingerprint = manifest["fingerprint"]
        self.stacks = stacks
        self._fields = fields
        self._baseline = baseline
        self._row = {fid: i for i, fid in enumerate(fields["field_id"])}
        self._datasets = ExitStack()
        self._env = None
        self.field_ids = self._spatial_order()

    @classmethod
    def open(cls, data_dir) -> "Season":
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise EnvironmentFailure(f"season directory {data_dir} does not exist or is not a directory")
        try:
            manifest = json.loads((data_dir / MANIFEST).read_text())
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r} (rebuild the season)")
            fields = pq.read_table(data_dir / FIELDS).to_pydict()
            if "stack" not in fields:
                raise ValueError(f"{FIELDS} has no 'stack' column")
            baseline = _read_baseline(data_dir / BASELINE)
            stacks = {name: _stack(data_dir, name, entry) for name, entry in manifest["stacks"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EnvironmentFailure(f"season {data_dir} is not readable: {exc}") from exc
        unknown = set(fields["stack"]) - set(stacks) - {NO_STACK}
        if unknown:
            raise EnvironmentFailure(f"season {data_dir}: {FIELDS} names stacks not in {MANIFEST}: {sorted(unknown)}")
        season = cls(data_dir, manifest, fields, baseline, stacks)
        for stack in stacks.values():
            stack._open = season._open_stack
        return season

    def _open_stack(self, stack: Stack):
        """Open a stack's GeoTIFF and check it is the one the manifest describes."""
        if self._env is None:
            cache_mb = int(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB))
            self._env = self._datasets.enter_context(rasterio.Env(GDAL_CACHEMAX=cache_mb))
        try:
            ds = self._datasets.enter_context(rasterio.open(stack.path))
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise EnvironmentFailure(f"season {self.data_dir}: {stack.path.name} is not usable: {exc}") from exc
        tagged = (ds.tags().get(DATES_TAG) or "").split(",")
        found = (ds.width, ds.height, ds.count, tuple(ds.transform)[:6], tagged)
        wanted = (stack.width, stack.height, stack.n_dates, tuple(stack.transform)[:6],
                  [d.isoformat() for d in stack.dates])
        if found != wanted or ds.nodata is None or int(ds.nodata) != stack.nodata:
            raise EnvironmentFailure(f"season {self.data_dir}: {stack.path.name} does not match {MANIFEST} "
                                     "(size, bands, transform, dates or nodata differ): rebuild the season")
        return ds

    def _spatial_order(self) -> list:
        """Field ids by stack, then along a Hilbert curve over the stack's tiles (then row, column)."""
        ids = self._fields["field_id"]
        stack_of = self._fields["stack"]
        geoms = shapely.from_wkb(self._fields["geometry"])
        order = []
        for name in sorted(self.stacks):
            sel = np.array([i for i, s in enumerate(stack_of) if s == name], dtype=np.int64)
            if len(sel) == 0:
                continue
            st = self.stacks[name]
            b = shapely.bounds(geoms[sel])
            x, y = st.to_raster.transform((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
            col, row = ~st.transform @ (np.asarray(x), np.asarray(y))
            col = np.clip(np.nan_to_num(np.asarray(col)), 0, st.width - 1).astype(np.int64)
            row = np.clip(np.nan_to_num(np.asarray(row)), 0, st.height - 1).astype(np.int64)
            tx, ty = col // st.block, row // st.block
            bits = max(1, int(max(tx.max(initial=0), ty.max(initial=0)) + 1).bit_length())
            order += sel[np.lexsort((col, row, hilbert_key(tx, ty, bits)))].tolist()
        order += sorted((i for i, s in enumerate(stack_of) if s is NO_STACK), key=lambda i: ids[i])
        return [ids[i] for i in order]

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

    def columns(self, names) -> dict:
        """Catalogue columns, each a list in the order of field_ids (columns the file lacks: all None)."""
        rows = [self._row[fid] for fid in self.field_ids]
        none = [None] * len(self._row)
        return {n: [self._fields.get(n, none)[i] for i in rows] for n in names}

    def stack_of(self, field_id) -> Stack | None:
        name = self._fields["stack"][self._row[self.require(field_id)]]
        return None if name is NO_STACK else self.stacks[name]

    def n_rows(self, field_id) -> int:
        """Rows of the field's output: one per acquisition date of its stack (0 without a stack)."""
        stack = self.stack_of(field_id)
        return 0 if stack is None else stack.n_dates

    def baseline(self, region_id, crop, stack: Stack):
        """(mean, std) at the stack's dates (NaN outside the baseline's days), or None if there is none."""
        entry = self._baseline.get((region_id, crop))
        if entry is None:
            return None
        doy, mean, std = entry
        return (np.interp(stack.doy, doy, mean, left=np.nan, right=np.nan),
                np.interp(stack.doy, doy, std, left=np.nan, right=np.nan))

    def close(self) -> None:
        self._datasets.close()
        for stack in self.stacks.values():
            stack._dataset = None
        self._env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _stack(data_dir: Path, name: str, entry: dict) -> Stack:
    path = data_dir / entry["file"]
    if os.sep in entry["file"] or not path.exists():  # exists(): a stat, never an open (see module doc)
        raise ValueError(f"stack {name}: file {entry['file']!r} is missing")
    return Stack(name, path, entry["crs"], Affine(*entry["transform"]), entry["width"], entry["height"],
                 entry["block"], entry["nodata"], [dt.date.fromisoformat(d) for d in entry["dates"]])


def _read_baseline(path) -> dict:
    """baseline.parquet → {(region_id, crop): (doy[k], mean[k], std[k])} ordered by day of year."""
    t = pq.read_table(path, columns=["region_id", "crop", "doy", "ndvi_mean", "ndvi_std"]).to_pydict()
    groups = {}
    for region, crop, doy, mean, std in zip(t["region_id"], t["crop"], t["doy"], t["ndvi_mean"], t["ndvi_std"]):
        groups.setdefault((region, crop), []).append((doy, mean, std))
    out = {}
    for key, rows in groups.items():
        rows.sort()
        out[key] = tuple(np.array([r[k] for r in rows], dtype=np.float64) for k in range(3))
    return out
