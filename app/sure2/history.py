"""The per-year history of each region × crop: what percentile contract terms are priced on.

history.parquet, in the season directory, next to baseline.parquet (written by `app.season baseline
--seasons` and by the generator): region_id, crop, year, doy, ndvi_mean — the unit's mean smoothed NDVI
curve of that year on a grid of days of year (other columns, e.g. n_fields, are ignored). A season
without the file has no history: percentile terms then give the field the no_baseline outcome.

A history year's index for a window is computed exactly as this season's: its curve interpolated to
the stack's days of year, then the same index function over the same sowing→harvest days. A year whose
curve does not reach every date the index reads is left out.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from app.errors import EnvironmentFailure
from app.sure2.payout import shortfall

HISTORY = "history.parquet"
COLUMNS = ("region_id", "crop", "year", "doy", "ndvi_mean")


def read_history(path) -> dict:
    """{(region_id, crop): (years[k], doy[m], ndvi[k, m])}, NaN where a year lacks a day of year."""
    t = pq.read_table(path, columns=list(COLUMNS)).to_pydict()
    units = {}
    for region, crop, year, doy, value in zip(*(t[c] for c in COLUMNS)):
        if value is not None:
            units.setdefault((region, crop), {}).setdefault(int(year), {})[int(doy)] = float(value)
    out = {}
    for key, years in units.items():
        doys = sorted({d for per_year in years.values() for d in per_year})
        ys = sorted(years)
        grid = np.full((len(ys), len(doys)), np.nan)
        col = {d: j for j, d in enumerate(doys)}
        for i, y in enumerate(ys):
            for d, v in years[y].items():
                grid[i, col[d]] = v
        out[key] = (np.array(ys), np.array(doys, dtype=np.float64), grid)
    return out


@lru_cache(maxsize=4)
def season_history(data_dir: str) -> dict:
    """The history of a season directory, read once per process ({} when the season has none)."""
    path = Path(data_dir) / HISTORY
    if not path.exists():
        return {}
    try:
        return read_history(path)
    except (OSError, ValueError, KeyError) as exc:
        raise EnvironmentFailure(f"season {data_dir}: {HISTORY} is not readable: {exc}") from exc


def index_support(days, start, end):
    """The dates an index over [start, end] reads: those inside plus the neighbour on each side."""
    inside = (days >= start) & (days <= end)
    support = inside.copy()
    lo, hi = np.searchsorted(days, start, "right") - 1, np.searchsorted(days, end, "left")
    support[max(lo, 0)] = support[min(hi, len(days) - 1)] = True
    return support


def yearly_shortfalls(entry, kind, stack_doy, days, base_mean, sowing, harvest):
    """Each history year's shortfall for this window (array; years that do not cover it left out)."""
    if entry is None:
        return None
    _, doy, curves = entry
    support = index_support(days, sowing, harvest)
    at = []
    for curve in curves:
        seen = ~np.isnan(curve)
        if seen.sum() >= 2:
            at.append(np.interp(stack_doy, doy[seen], curve[seen], left=np.nan, right=np.nan))
    at = np.array([a for a in at if not np.isnan(a[support]).any()]).reshape(-1, len(days))
    if len(at) == 0:
        return np.array([])
    return shortfall(kind, days, np.where(support, at, 0.0), base_mean, sowing, harvest)
