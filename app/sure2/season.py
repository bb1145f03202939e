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
  refused.parquet   (imported seasons) the insurer's rows the import could not take: source_id, row,
                    reason, detail, geometry (WKB lon/lat, nullable); absent = none refused

IDs: a field is named by its season `field_id` or by the ID the insurer wrote (`source_id`, e.g.
`3401-01/2` for `3401-01_2`): `resolve_id` takes either, and says so when the insurer's ID is one the
import refused.

Stacks are opened lazily, at a field's first read: a worker touches only the stacks its fields lie
in, and a stack file that hangs (a dead storage target) holds up only its own fields.

The catalogue stays in Arrow columns (a row becomes Python objects when it is read), and the spatial
order of the whole catalogue is worked out only when asked for (`field_ids`: the planner, the
reports); a chunk of IDs is put in that order from its own rows (`in_catalogue_order`). Every worker
and every container of a batch opens the season: at a national million fields that is a fraction of
a second and a few hundred MB, not seconds and gigabytes.
"""

import bisect
import datetime as dt
import json
import os
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
REFUSED = "refused.parquet"
REFUSED_SCHEMA = pa.schema([("source_id", pa.string()), ("row", pa.int64()), ("reason", pa.string()),
                            ("detail", pa.string()), ("geometry", pa.binary())])
MAX_SOURCE_ID = 256  # longer text is no one's ID: refused before any lookup
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

    def __init__(self, data_dir, manifest, fields: pa.Table, baseline, stacks):
        self.data_dir = Path(data_dir)
        self.manifest = manifest
        self.fingerprint = manifest["fingerprint"]
        self.stacks = stacks
        self._fields = fields
        self._baseline = baseline
        self._row = RowOfId(fields.column("field_id").combine_chunks())
        self._ids = self._row.ids
        codes = fields.column("stack").combine_chunks().dictionary_encode()
        self._stack_names = codes.dictionary.to_pylist()
        self._stack_code = pc.fill_null(codes.indices, -1).to_numpy()  # -1: stack null, none covers it
        self._datasets = ExitStack()
        self._env = None
        self._catalogue_rows: list | None = None  # the catalogue order, once asked for
        self._field_ids: list | None = None
        self._of_source: dict | None = None  # built at the first lookup by the insurer's ID
        self._refused: dict | None = None

    @classmethod
    def open(cls, data_dir) -> "Season":
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise EnvironmentFailure(f"season directory {data_dir} does not exist or is not a directory")
        try:
            manifest = json.loads((data_dir / MANIFEST).read_text())
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r} (rebuild the season)")
            fields = pq.read_table(data_dir / FIELDS)
            for name in ("field_id", "stack", "geometry"):
                if name not in fields.column_names:
                    raise ValueError(f"{FIELDS} has no {name!r} column")
            baseline = _read_baseline(data_dir / BASELINE)
            stacks = {name: _stack(data_dir, name, entry) for name, entry in manifest["stacks"].items()}
            season = cls(data_dir, manifest, fields, baseline, stacks)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            raise EnvironmentFailure(f"season {data_dir} is not readable: {exc}") from exc
        unknown = set(season._stack_names) - set(stacks)
        if unknown:
            raise EnvironmentFailure(f"season {data_dir}: {FIELDS} names stacks not in {MANIFEST}: {sorted(unknown)}")
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

    @property
    def field_ids(self) -> list:
        """Every field id in catalogue order (see _spatial_order), worked out at the first call."""
        if self._field_ids is None:
            self._field_ids = [self._ids[i] for i in self._catalogue_order()]
        return self._field_ids

    def _catalogue_order(self) -> list:
        if self._catalogue_rows is None:
            self._catalogue_rows = self._spatial_order(np.arange(len(self._ids)))
        return self._catalogue_rows

    def in_catalogue_order(self, field_ids) -> list:
        """Known field ids sorted as field_ids has them, from their own rows only."""
        rows = np.array([self._row[fid] for fid in field_ids], dtype=np.int64)
        return [self._ids[i] for i in self._spatial_order(rows)]

    def _spatial_order(self, rows: np.ndarray) -> list:
        """Rows by stack (by name), then along a Hilbert curve over the stack's tiles (then pixel row,
        column); rows without a stack last, by id. The curve spans the stack's whole tile grid, so any
        set of rows comes out in the order the whole catalogue has."""
        geoms = shapely.from_wkb(self._fields.column("geometry").take(rows).to_numpy(zero_copy_only=False))
        code = self._stack_code[rows]
        order = []
        for name in sorted(self.stacks):
            sel = np.flatnonzero(code == self._stack_names.index(name)) if name in self._stack_names else []
            if len(sel) == 0:
                continue
            st = self.stacks[name]
            b = shapely.bounds(geoms[sel])
            x, y = st.to_raster.transform((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
            col, row = ~st.transform @ (np.asarray(x), np.asarray(y))
            col = np.clip(np.nan_to_num(np.asarray(col)), 0, st.width - 1).astype(np.int64)
            row = np.clip(np.nan_to_num(np.asarray(row)), 0, st.height - 1).astype(np.int64)
            tx, ty = col // st.block, row // st.block
            bits = max(1, int(-(-max(st.width, st.height) // st.block)).bit_length())
            order += rows[sel[np.lexsort((col, row, hilbert_key(tx, ty, bits)))]].tolist()
        order += sorted(rows[code == -1].tolist(), key=self._ids.__getitem__)
        return order

    def require(self, field_id) -> str:
        """validate_field_id, then BadInput unless the id is in this season's catalogue."""
        validate_field_id(field_id)
        if field_id not in self._row:
            raise BadInput(f"unknown field id {field_id!r} (not in the season catalogue)")
        return field_id

    def resolve_id(self, text) -> str:
        """The field_id of a field named by its field_id or by the insurer's ID as written (`source_id`);
        BadInput (one line) for anything else: an ID the import refused (with why), an unknown ID (with
        the season's form when only that differs), or text that is no ID at all."""
        if not isinstance(text, str):
            raise BadInput(f"field id must be a string, got {type(text).__name__}")
        if text == "" or "\0" in text or len(text) > MAX_SOURCE_ID:
            validate_field_id(text[:MAX_SOURCE_ID + 1])  # the one-line reason (empty, NUL, too long)
        if text in self._row:
            return text
        of_source, refused = self._source_maps()
        if text in of_source:
            return of_source[text]
        stripped = text.strip()
        if stripped != text and stripped:
            return self.resolve_id(stripped)
        if text in refused:
            reason, detail = refused[text]
            raise BadInput(f"field {text!r} was refused by the season's import ({reason}): {detail}; "
                           "it has no assessment")
        raise BadInput(f"unknown field id {text!r} (not in the season catalogue, as a field_id or an insurer's ID)")

    def source_id(self, field_id) -> str:
        """The ID as the insurer wrote it (the field_id for seasons without a `source_id` column)."""
        if "source_id" not in self._fields.column_names:
            return field_id
        value = self._fields.column("source_id")[self._row[self.require(field_id)]].as_py()
        return field_id if value is None else value

    def _source_maps(self) -> tuple[dict, dict]:
        """({source_id: field_id} for IDs that differ from their field_id, {refused source_id: (reason, detail)})."""
        if self._of_source is None:
            of_source = {}
            if "source_id" in self._fields.column_names:
                sources = self._fields.column("source_id").combine_chunks()
                differ = pc.fill_null(pc.not_equal(sources, self._fields.column("field_id").combine_chunks()), False)
                rows = np.flatnonzero(differ.to_numpy(zero_copy_only=False))
                of_source = {sources[int(i)].as_py(): self._ids[int(i)] for i in rows}
            t = self.refused().select(["source_id", "reason", "detail"]).to_pydict()
            self._refused = {s: (r, d) for s, r, d in zip(t["source_id"], t["reason"], t["detail"]) if s is not None}
            self._of_source = of_source
        return self._of_source, self._refused or {}

    def refused(self) -> pa.Table:
        """The insurer's rows the import refused (REFUSED_SCHEMA; no rows for a season without the file)."""
        path = self.data_dir / REFUSED
        try:
            table = pq.read_table(path) if path.exists() else REFUSED_SCHEMA.empty_table()
            return table.select(REFUSED_SCHEMA.names).cast(REFUSED_SCHEMA)
        except (OSError, KeyError, pa.ArrowException) as exc:
            raise EnvironmentFailure(f"season {self.data_dir}: {REFUSED} is not readable: {exc}") from exc

    def field(self, field_id) -> dict:
        """One field's attributes (a row of fields.parquet)."""
        return self._fields.slice(self._row[self.require(field_id)], 1).to_pylist()[0]

    def columns(self, names) -> dict:
        """Catalogue columns, each a list in the order of field_ids (columns the file lacks: all None)."""
        rows = pa.array(self._catalogue_order(), type=pa.int64())
        present = self._fields.column_names
        return {n: self._fields.column(n).take(rows).to_pylist() if n in present else [None] * len(rows)
                for n in names}

    def stack_of(self, field_id) -> Stack | None:
        code = self._stack_code[self._row[self.require(field_id)]]
        return None if code < 0 else self.stacks[self._stack_names[code]]

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


class RowOfId:
    """field id -> its row in fields.parquet. The builders write the catalogue sorted by id: then a
    binary search in the id list answers (no million-entry dict to build when a worker or a container
    opens a national season); a catalogue in any other order gets a dict."""

    def __init__(self, ids: pa.Array):
        if ids.null_count:
            raise ValueError(f"{FIELDS} has {ids.null_count} row(s) without a field_id")
        self.ids = ids.to_pylist()
        n = len(self.ids)
        increasing = n < 2 or pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py()
        self._dict = None if increasing else {fid: i for i, fid in enumerate(self.ids)}

    def get(self, field_id):
        if self._dict is not None:
            return self._dict.get(field_id)
        i = bisect.bisect_left(self.ids, field_id)
        return i if i < len(self.ids) and self.ids[i] == field_id else None

    def __contains__(self, field_id) -> bool:
        return self.get(field_id) is not None

    def __getitem__(self, field_id) -> int:
        i = self.get(field_id)
        if i is None:
            raise KeyError(field_id)
        return i


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
