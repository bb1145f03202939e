"""One field's assessment: polygon → window → inner mask → zonal means → smooth → metrics → payout."""

import datetime as dt
import math
import time

import numpy as np
import shapely
from affine import Affine
from rasterio.windows import Window

import app
from app.errors import EnvironmentFailure
from app.sure2 import science
from app.sure2._kernels import zonal_stats
from app.sure2.output import output_path, write_output
from app.sure2.payout import loss_index, payout_amount, payout_fraction

MIN_INNER_PIXELS = 4  # below this the field is too small for an inner mask: use pixel centres


class Settings:
    """Run-time knobs; their values are recorded in every output."""

    def __init__(self, lam=science.DEFAULT_LAMBDA, min_coverage=science.DEFAULT_MIN_COVERAGE):
        if not lam >= 0:
            raise ValueError("lambda must be >= 0")
        if not 0 < min_coverage <= 1:
            raise ValueError("coverage threshold must be in (0, 1]")
        self.lam = float(lam)
        self.min_coverage = float(min_coverage)


def field_window(season, polygon):
    """Pixel window (clipped to the raster) covering the projected polygon, and its transform."""
    minx, miny, maxx, maxy = polygon.bounds
    inv = ~season.transform
    c0, r0 = inv @ (minx, maxy)
    c1, r1 = inv @ (maxx, miny)
    col0, row0 = max(0, math.floor(c0)), max(0, math.floor(r0))
    col1 = min(season.dataset.width, math.ceil(c1))
    row1 = min(season.dataset.height, math.ceil(r1))
    if col1 <= col0 or row1 <= row0:
        raise EnvironmentFailure("field lies outside the NDVI raster")
    t = season.transform
    window_transform = Affine(t.a, t.b, t.c + col0 * t.a + row0 * t.b, t.d, t.e, t.f + col0 * t.d + row0 * t.e)
    return Window(col0, row0, col1 - col0, row1 - row0), window_transform


def inner_mask(polygon, transform, shape):
    """Pixels wholly inside the polygon: centres inside the polygon shrunk by half a pixel diagonal.

    Mixed edge pixels would blend field and neighbour; fields too small to keep MIN_INNER_PIXELS
    fall back to pixels whose centre is inside. Returns (uint8 mask, "inner" | "centre").
    """
    h, w = shape
    xs = transform.c + transform.a * (np.arange(w) + 0.5)
    ys = transform.f + transform.e * (np.arange(h) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    half_diagonal = math.hypot(transform.a, transform.e) / 2
    shrunk = shapely.buffer(polygon, -half_diagonal)
    mask = shapely.contains_xy(shrunk, gx, gy) if not shrunk.is_empty else np.zeros(shape, bool)
    kind = "inner"
    if np.count_nonzero(mask) < MIN_INNER_PIXELS:
        mask, kind = shapely.contains_xy(polygon, gx, gy), "centre"
    return np.ascontiguousarray(mask, dtype=np.uint8), kind


def assess(season, field_id, settings=None) -> dict:
    """Assess one field in memory: {"columns": ..., "season_metrics", "events", "payout"}."""
    settings = settings or Settings()
    f = season.field(field_id)
    lonlat = shapely.from_wkb(f["geometry"])
    polygon = shapely.transform(lonlat, lambda xy: np.column_stack(season.to_raster.transform(xy[:, 0], xy[:, 1])))
    window, transform = field_window(season, polygon)
    stack = season.dataset.read(window=window)  # (n_dates, h, w): one call, all dates per tile
    mask, mask_kind = inner_mask(polygon, transform, stack.shape[1:])
    n_mask = int(mask.sum())
    if n_mask == 0:
        raise EnvironmentFailure(f"field {field_id} covers no pixel centre of the NDVI raster")
    counts, means = zonal_stats(stack, mask, season.nodata)
    valid_fraction = counts / n_mask
    weights = science.observation_weights(valid_fraction, settings.min_coverage)
    observed = weights > 0
    ndvi_mean = np.where(observed, means, np.nan)
    smoothed = science.smooth(ndvi_mean, weights, settings.lam)
    base_mean, base_std = season.baseline(f["region_id"], f["crop"])
    if len(base_mean) != season.n_dates:
        raise EnvironmentFailure(f"baseline has {len(base_mean)} dates, the NDVI stack {season.n_dates}")
    z = science.z_scores(smoothed, base_mean, base_std)
    days = season.day_numbers
    sowing, harvest = _day(f["sowing_date"]), _day(f["harvest_date"])

    metrics = science.season_metrics(days, smoothed, sowing, harvest, season.dates)
    metrics.update({"n_mask_pixels": n_mask, "mask": mask_kind, "n_observed_dates": int(observed.sum()),
                    "n_dates": season.n_dates, "lambda": settings.lam, "min_coverage": settings.min_coverage})
    events = science.abrupt_drops(days, ndvi_mean, observed, base_mean, sowing, harvest, season.dates)
    if not np.isnan(smoothed).all():
        events += science.sustained_anomalies(days, z, sowing, harvest, season.dates)
        index = loss_index(f["index"], days, smoothed, base_mean, sowing, harvest)
    else:
        index = 0.0  # nothing observed: no evidence of loss, and the output says so (n_observed_dates)
    payout = {"index": f["index"], "index_value": round(index, 6), "trigger": f["trigger"],
              "exit": f["exit"], "fraction": round(payout_fraction(index, f["trigger"], f["exit"]), 6),
              "amount": payout_amount(index, f["trigger"], f["exit"], f["insured_sum"]),
              "insured_sum": f["insured_sum"], "currency": f["currency"]}
    columns = {"date": season.dates, "n_pixels": counts, "valid_fraction": valid_fraction,
               "ndvi_mean": [None if math.isnan(v) else float(v) for v in ndvi_mean],
               "ndvi_smooth": smoothed, "baseline_mean": base_mean, "z": z}
    return {"columns": columns, "season_metrics": metrics, "events": events, "payout": payout}


def _day(value) -> float:
    return float(value.toordinal() if isinstance(value, dt.date) else dt.date.fromisoformat(value).toordinal())


def assess_to_file(season, field_id, out_dir, settings=None) -> dict:
    """Validate, assess, write out_dir/<field_id>.parquet atomically; return the CLI's summary line.

    Raises BadInput (bad/unknown id), EnvironmentFailure, or OSError (ENOSPC/EDQUOT unchanged).
    """
    t0 = time.perf_counter()
    season.require(field_id)
    path = output_path(out_dir, field_id)
    result = assess(season, field_id, settings)
    write_output(path, result["columns"], field_id, app.__version__, season.fingerprint, result)
    payout = result["payout"]
    return {"field_id": field_id, "status": "ok", "path": str(path), "payout": payout["amount"],
            "currency": payout["currency"], "index_value": payout["index_value"],
            "n_events": len(result["events"]), "n_observed_dates": result["season_metrics"]["n_observed_dates"],
            "seconds": round(time.perf_counter() - t0, 4)}
