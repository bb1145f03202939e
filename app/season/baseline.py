"""`python -m app.season baseline`: the baseline of a season, from past seasons or from a user table.

    baseline --seasons DIR [DIR ...] --out OUT [--min-years 5] [--lambda 10]
    baseline --table FILE.csv|FILE.parquet --out OUT

From past seasons (each a season directory built by `app.season build` from that year's scenes):
every field with a stack, a crop and a region is measured as the assessment measures it (inner
pixel mask, dates with < 50 % valid inner pixels missing, weighted Whittaker smoothing, λ = 10), its
smoothed curve interpolated to every 5th day of year inside that season's acquisitions. Then:
  - history.parquet: region_id, crop, year, doy, ndvi_mean (the unit's mean curve that year), n_fields;
  - baseline.parquet: region_id, crop, doy, ndvi_mean, ndvi_std (over all field-years), n_samples —
    only for region × crop units seen in at least `--min-years` distinct years (default 5: a shorter
    history makes a z-score of one dry year meaningless); the other units are listed in
    baseline.json and their fields get the assessment's `no_baseline` outcome.
The year of a season is the year of most of its acquisition dates.

From a table (CSV or Parquet): the columns region_id, crop, doy, ndvi_mean, ndvi_std, n_samples are
checked (crop one of the five, doy 1–366, NDVI in [−1, 1], std ≥ 0); any bad row refuses the table
(BadInput, exit 2, naming the row), nothing written. `--history FILE` (region_id, crop, year, doy,
ndvi_mean: each unit's mean curve per past year, checked alike) becomes history.parquet beside it,
for percentile terms.
"""

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.errors import BadInput
from app.hpc.atomic import atomic_path, atomic_write_bytes
from app.season.builder import BASELINE_COLUMNS
from app.season.mapping import CROPS

DOY_STEP = 5
DEFAULT_MIN_YEARS = 5
HISTORY = "history.parquet"
BASELINE = "baseline.parquet"
REPORT = "baseline.json"
HISTORY_COLUMNS = {"region_id": pa.string(), "crop": pa.string(), "year": pa.int32(), "doy": pa.int32(),
                   "ndvi_mean": pa.float64()}


def season_curves(season_dir, lam: float, min_coverage: float):
    """(region_id, crop, year, doy grid, smoothed NDVI on it) per measurable field of one season."""
    from app.sure2 import science
    from app.sure2._kernels import zonal_stats
    from app.sure2.assess import field_polygon, field_window, pixel_masks, read_window
    from app.sure2.outcome import FieldOutcome
    from app.sure2.season import Season

    with Season.open(season_dir) as season:
        years = Counter(d.year for st in season.stacks.values() for d in st.dates)
        if not years:
            return
        year = years.most_common(1)[0][0]
        for fid in season.field_ids:
            f = season.field(fid)
            stack = season.stack_of(fid)
            if stack is None or f["crop"] is None or f["region_id"] is None:
                continue
            try:
                polygon = field_polygon(season, f, stack)
                shape, transform, inside = field_window(stack, polygon)
            except FieldOutcome:
                continue
            _, mask, _ = pixel_masks(polygon, transform, shape)
            if mask.sum() == 0:
                continue
            counts, means = zonal_stats(read_window(stack, shape, inside), mask, stack.nodata)
            weights = science.observation_weights(counts / mask.sum(), min_coverage)
            smoothed = science.smooth(np.where(weights > 0, means, 0.0), weights, lam)
            if np.isnan(smoothed).any():
                continue
            grid = np.arange(math.ceil(stack.doy[0] / DOY_STEP) * DOY_STEP, stack.doy[-1] + 1, DOY_STEP)
            yield f["region_id"], f["crop"], year, grid, np.interp(grid, stack.doy, smoothed)


def from_seasons(season_dirs, out_dir, min_years: int = DEFAULT_MIN_YEARS, lam: float = 10.0,
                 min_coverage: float = 0.5) -> dict:
    samples = {}  # (region, crop) -> {year: {doy: [values]}}
    for d in season_dirs:
        for region, crop, year, grid, curve in season_curves(d, lam, min_coverage):
            per_doy = samples.setdefault((region, crop), {}).setdefault(year, {})
            for doy, v in zip(grid.tolist(), curve.tolist()):
                per_doy.setdefault(int(doy), []).append(v)
    history, rows, excluded = [], [], []
    for (region, crop), years in sorted(samples.items()):
        for year, per_doy in sorted(years.items()):
            history += [{"region_id": region, "crop": crop, "year": year, "doy": doy,
                         "ndvi_mean": float(np.mean(v)), "n_fields": len(v)} for doy, v in sorted(per_doy.items())]
        if len(years) < min_years:
            excluded.append({"region_id": region, "crop": crop, "years": sorted(years),
                             "reason": f"{len(years)} year(s) of history, fewer than {min_years}"})
            continue
        pooled = {}
        for per_doy in years.values():
            for doy, v in per_doy.items():
                pooled.setdefault(doy, []).extend(v)
        rows += [{"region_id": region, "crop": crop, "doy": doy, "ndvi_mean": float(np.mean(v)),
                  "ndvi_std": float(np.std(v, ddof=1)), "n_samples": len(v)}
                 for doy, v in sorted(pooled.items()) if len(v) >= 2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / HISTORY, history, {**HISTORY_COLUMNS, "n_fields": pa.int64()})
    _write(out / BASELINE, rows, BASELINE_COLUMNS)
    report = {"source": "past seasons", "seasons": [str(Path(d).resolve()) for d in season_dirs],
              "min_years": min_years, "lambda": lam, "units": len({(r["region_id"], r["crop"]) for r in rows}),
              "excluded_units": excluded}
    atomic_write_bytes(out / REPORT, (json.dumps(report, indent=1) + "\n").encode())
    return {"out": str(out), "units": report["units"], "excluded_units": len(excluded), "rows": len(rows)}


def from_table(path, out_dir, history=None) -> dict:
    path = Path(path)
    rows = _read_table(path, BASELINE_COLUMNS, "baseline")
    for i, r in enumerate(rows, start=1):
        problem = _row_problem(r)
        if problem:
            raise BadInput(f"baseline table {path.name}, row {i}: {problem}")
    clean = [{"region_id": str(r["region_id"]), "crop": r["crop"], "doy": int(float(r["doy"])),
              "ndvi_mean": float(r["ndvi_mean"]), "ndvi_std": float(r["ndvi_std"]),
              "n_samples": int(float(r["n_samples"]))} for r in rows]
    past = _history_rows(Path(history)) if history is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / BASELINE, clean, BASELINE_COLUMNS)
    if past is not None:
        _write(out / HISTORY, past, HISTORY_COLUMNS)
    units = len({(r["region_id"], r["crop"]) for r in clean})
    atomic_write_bytes(out / REPORT, (json.dumps({"source": "table", "table": str(path.resolve()), "units": units})
                                      + "\n").encode())
    return {"out": str(out), "units": units, "rows": len(clean)}


def _history_rows(path: Path) -> list:
    """A user's history table (region_id, crop, year, doy, ndvi_mean: each unit's mean curve per past
    year), checked like the baseline table; what percentile terms are priced on."""
    rows = _read_table(path, HISTORY_COLUMNS, "history")
    clean = []
    for i, r in enumerate(rows, start=1):
        problem = _row_problem({**r, "ndvi_std": 0, "n_samples": 0})
        try:
            year = float(r["year"])
        except (TypeError, ValueError):
            year = float("nan")
        if problem is None and not (year.is_integer() and 1900 <= year <= 2100):
            problem = f"year {r['year']!r} is not a year"
        if problem:
            raise BadInput(f"history table {path.name}, row {i}: {problem}")
        clean.append({"region_id": str(r["region_id"]), "crop": r["crop"], "year": int(year),
                      "doy": int(float(r["doy"])), "ndvi_mean": float(r["ndvi_mean"])})
    return clean


def _read_table(path: Path, columns, what: str) -> list:
    if not path.is_file():
        raise BadInput(f"{what} table {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            rows = pq.read_table(path).to_pylist()
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowInvalid) as exc:
        raise BadInput(f"{what} table {path.name} is not readable: {exc}") from None
    if not rows:
        raise BadInput(f"{what} table {path.name} has no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise BadInput(f"{what} table {path.name} lacks column(s) {', '.join(missing)}")
    return rows


def _row_problem(r) -> str | None:
    if r["crop"] not in CROPS:
        return f"crop {r['crop']!r} is not one of {', '.join(CROPS)}"
    if not str(r["region_id"] or "").strip():
        return "empty region_id"
    try:
        doy, mean, std, n = float(r["doy"]), float(r["ndvi_mean"]), float(r["ndvi_std"]), float(r["n_samples"])
    except (TypeError, ValueError):
        return "doy, ndvi_mean, ndvi_std and n_samples must be numbers"
    if not (doy.is_integer() and 1 <= doy <= 366):
        return f"doy {r['doy']} is not a day of year (1-366)"
    if not (math.isfinite(mean) and -1 <= mean <= 1):
        return f"ndvi_mean {r['ndvi_mean']} is not an NDVI in [-1, 1]"
    if not (math.isfinite(std) and std >= 0):
        return f"ndvi_std {r['ndvi_std']} must be >= 0"
    if not (n.is_integer() and n >= 0):
        return f"n_samples {r['n_samples']} must be a count"
    return None


def _write(path: Path, rows: list, schema: dict) -> None:
    table = pa.table({k: pa.array([r[k] for r in rows], t) for k, t in schema.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
