"""One field's assessment: contract → polygon → window → masks → coverage → zonal means → smooth →
metrics → payout. A problem that belongs to the field raises FieldOutcome (see app.sure2.outcome) and
is written as the field's explained outcome; only the environment (season files, storage) raises
EnvironmentFailure / OSError.
"""

import math
import time

import numpy as np
import shapely
from affine import Affine
from rasterio.windows import Window

from app.sure2 import pixels, science, terms
from app.sure2._kernels import zonal_stats
from app.sure2.history import season_history, yearly_shortfalls
from app.sure2.outcome import ASSESSED, FieldOutcome
from app.sure2.output import Expected, output_path, summary_of, write_output
from app.sure2.payout import shortfall
from app.sure2.settings import Settings
from app.sure2.terms import day_number, payout_record
from app.sure2.version import code_version

MIN_INNER_PIXELS = 4  # below this the field is too small for an inner mask: use pixel centres
MIN_SMOOTH_DATES = 3  # the Whittaker system needs at least 3 observed dates
CONTRACT_COLUMNS = ("crop", "region_id", "sowing_date", "harvest_date", "insured_sum", "currency", "index")


def expected(season, field_id, settings: Settings) -> Expected:
    return Expected(field_id, season.n_rows(field_id), code_version(), season.fingerprint, settings)


def check_contract(f: dict) -> dict:
    """The field's contract terms (app.sure2.terms); FieldOutcome("bad_contract") unless they can be paid on."""
    return terms.check_contract(f, CONTRACT_COLUMNS, f"; import note: {f['note']}" if f.get("note") else "")


def field_polygon(season, f, stack):
    """The field's polygon in its stack's CRS; FieldOutcome for a missing stack or bad geometry."""
    if stack is None:
        raise FieldOutcome("no_stack", f.get("note") or "no NDVI stack covers the field")
    if f["geometry"] is None:
        raise FieldOutcome("invalid_geometry", f.get("note") or "no geometry")
    try:
        lonlat = shapely.from_wkb(f["geometry"])
    except shapely.errors.GEOSException as exc:
        raise FieldOutcome("invalid_geometry", f"unreadable WKB: {exc}") from None
    if lonlat.is_empty or lonlat.geom_type not in ("Polygon", "MultiPolygon"):
        raise FieldOutcome("invalid_geometry", f"{'empty' if lonlat.is_empty else lonlat.geom_type} geometry")
    if not lonlat.is_valid:
        raise FieldOutcome("invalid_geometry", shapely.is_valid_reason(lonlat))
    polygon = shapely.transform(lonlat, lambda xy: np.column_stack(stack.to_raster.transform(xy[:, 0], xy[:, 1])))
    if not np.isfinite(shapely.get_coordinates(polygon)).all():
        raise FieldOutcome("invalid_geometry", f"coordinates outside the domain of {stack.crs}")
    return polygon


def field_window(stack, polygon):
    """The polygon's whole pixel window (it may reach past the raster), its transform, and the part of
    it inside the raster as (window, row offset, column offset); FieldOutcome if nothing is inside."""
    minx, miny, maxx, maxy = polygon.bounds
    inv = ~stack.transform
    c0, r0 = inv @ (minx, maxy)
    c1, r1 = inv @ (maxx, miny)
    col0, row0, col1, row1 = math.floor(c0), math.floor(r0), max(math.ceil(c1), math.floor(c0) + 1), \
        max(math.ceil(r1), math.floor(r0) + 1)
    in_col0, in_row0 = max(0, col0), max(0, row0)
    in_col1, in_row1 = min(stack.width, col1), min(stack.height, row1)
    if in_col1 <= in_col0 or in_row1 <= in_row0:
        raise FieldOutcome("outside_raster", f"the field lies outside NDVI stack {stack.name}")
    t = stack.transform
    transform = Affine(t.a, t.b, t.c + col0 * t.a + row0 * t.b, t.d, t.e, t.f + col0 * t.d + row0 * t.e)
    inside = Window(in_col0, in_row0, in_col1 - in_col0, in_row1 - in_row0)
    return (row1 - row0, col1 - col0), transform, (inside, in_row0 - row0, in_col0 - col0)


def pixel_masks(polygon, transform, shape):
    """(centre mask, inner mask, inner kind) over the window, uint8.

    Centre: pixel centres inside the polygon (the field's pixels). Inner: centres inside the polygon
    shrunk by half a pixel diagonal, i.e. pixels wholly inside (mixed edge pixels blend field and
    neighbour); fields too small to keep MIN_INNER_PIXELS use the centre mask ("centre").
    """
    h, w = shape
    xs = transform.c + transform.a * (np.arange(w) + 0.5)
    ys = transform.f + transform.e * (np.arange(h) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    centre = shapely.contains_xy(polygon, gx, gy)
    half_diagonal = math.hypot(transform.a, transform.e) / 2
    shrunk = shapely.buffer(polygon, -half_diagonal)
    inner = shapely.contains_xy(shrunk, gx, gy) if not shrunk.is_empty else np.zeros(shape, bool)
    kind = "inner"
    if np.count_nonzero(inner) < MIN_INNER_PIXELS:
        inner, kind = centre, "centre"
    as_u8 = lambda m: np.ascontiguousarray(m, dtype=np.uint8)
    return as_u8(centre), as_u8(inner), kind


def read_window(stack, shape, inside):
    """All dates over the whole window; pixels outside the raster are nodata (never observed)."""
    window, dr, dc = inside
    part = stack.read(window)
    if part.shape[1:] == tuple(shape):
        return np.ascontiguousarray(part)
    full = np.full((stack.n_dates, *shape), stack.nodata, dtype=part.dtype)
    full[:, dr:dr + part.shape[1], dc:dc + part.shape[2]] = part
    return full


def assess(season, field_id, settings: Settings | None = None) -> dict:
    """Assess one field in memory: {"columns", "season_metrics", "events", "payout", "coverage", "damage",
    "damage_map"}.

    Raises FieldOutcome for a problem of this field (its `partial` holds what was measured so far).
    """
    settings = settings or Settings()
    f = season.field(field_id)
    contract = check_contract(f)
    stack = season.stack_of(field_id)
    polygon = field_polygon(season, f, stack)
    shape, transform, inside = field_window(stack, polygon)
    centre, mask, mask_kind = pixel_masks(polygon, transform, shape)
    n_centre, n_mask = int(centre.sum()), int(mask.sum())
    if n_centre == 0:
        raise FieldOutcome("no_pixel", f"no pixel centre inside the field ({shapely.area(polygon):.0f} m²)")
    window, dr, dc = inside
    covered = int(centre[dr:dr + window.height, dc:dc + window.width].sum())  # field pixels inside the stack
    data = read_window(stack, shape, inside)
    counts, means = zonal_stats(data, mask, stack.nodata)
    valid_fraction = counts / n_mask
    weights = science.observation_weights(valid_fraction, settings.min_coverage)
    observed = weights > 0
    ndvi_mean = np.where(observed, means, np.nan)
    coverage = {"stack": stack.name, "n_field_pixels": n_centre, "n_mask_pixels": n_mask, "mask": mask_kind,
                "raster_coverage": round(covered / n_centre, 6), "area_ha": float(f["area_ha"]),
                "observed_share": None}
    columns = {"date": stack.dates, "n_pixels": counts, "valid_fraction": valid_fraction,
               "ndvi_mean": ndvi_mean, "ndvi_smooth": None, "baseline_mean": None, "z": None}
    partial = {"columns": columns, "coverage": coverage}
    if coverage["raster_coverage"] < settings.min_field_coverage:
        raise FieldOutcome("partial_coverage", f"the NDVI stack covers {coverage['raster_coverage']:.1%} of the "
                           f"field's pixels (< {settings.min_field_coverage:.0%})", partial)
    base = season.baseline(f["region_id"], f["crop"], stack)
    days = stack.day_numbers
    sowing, harvest = day_number(f["sowing_date"]), day_number(f["harvest_date"])
    in_season = science.in_window(days, sowing, harvest)
    unit = f"region {f['region_id']} × crop {f['crop']}"
    if base is None:
        raise FieldOutcome("no_baseline", f"no baseline for {unit}", partial)
    base_mean, base_std = base
    if np.isnan(base_mean[in_season]).any() or np.isnan(base_std[in_season]).any():
        raise FieldOutcome("no_baseline", f"the baseline of {unit} does not cover the field's sowing→harvest dates",
                           partial)
    columns["baseline_mean"] = base_mean
    n_season, n_seen = int(in_season.sum()), int((observed & in_season).sum())
    coverage["observed_share"] = round(n_seen / n_season, 6) if n_season else 0.0
    needed = max(MIN_SMOOTH_DATES, math.ceil(settings.min_observed_share * n_season))
    if n_seen < needed or observed.sum() < MIN_SMOOTH_DATES:
        raise FieldOutcome("too_few_observations", f"{n_seen} of {n_season} sowing→harvest acquisitions observed "
                           f"(needs {needed})", partial)

    damage_map = None
    if settings.pixel_level:
        y, w = pixels.pixel_series(data, mask, stack.nodata)
        curves, lam, n_sampled = pixels.smooth_pixels(y, w, base_mean, settings.lam, settings.auto_lambda)
        smoothed = pixels.field_curve(curves)
        classes, first = pixels.damage(curves, y, w, base_mean, days, sowing, harvest, settings.damage_drop,
                                       settings.damage_z * np.maximum(base_std, science.MIN_STD))
        damage = pixels.damage_record(classes, first, float(f["area_ha"]), stack.dates, n_sampled)
        damage_map = pixels.map_patch(stack.name, window.row_off - dr, window.col_off - dc, mask, classes, first)
    else:
        smoothed, lam = science.smooth_field(ndvi_mean, weights, base_mean, settings.lam)
        damage = {"pixel_level": False}
    if np.isnan(smoothed[in_season]).any():
        raise FieldOutcome("too_few_observations", "no inner pixel is seen often enough to smooth", partial)
    z = science.z_scores(smoothed, base_mean, base_std)
    metrics = science.season_metrics(days, smoothed, sowing, harvest, stack.dates)
    metrics.update({"n_observed_dates": int(observed.sum()), "n_dates": stack.n_dates, "lambda": lam,
                    "lambda_mode": "auto" if settings.auto_lambda else "fixed", "pixel_level": settings.pixel_level})
    events = science.abrupt_drops(days, ndvi_mean, observed, base_mean, sowing, harvest, stack.dates)
    events += science.sustained_anomalies(days, z, sowing, harvest, stack.dates)
    if settings.pixel_level:
        events += pixels.damage_event(damage)
    history = yearly_shortfalls(season_history(str(season.data_dir)).get((f["region_id"], f["crop"])), f["index"],
                                stack.doy, days, base_mean, sowing, harvest)
    value = shortfall(f["index"], days, smoothed, base_mean, sowing, harvest)
    try:
        record = payout_record(contract, f["index"], value, history, f["insured_sum"], f["currency"], unit)
    except FieldOutcome as outcome:  # percentile terms the history cannot price
        raise FieldOutcome(outcome.reason, outcome.detail, partial) from None
    columns.update(ndvi_smooth=smoothed, z=z)
    return {"columns": columns, "season_metrics": metrics, "events": events, "payout": record,
            "coverage": coverage, "damage": damage, "damage_map": damage_map}


def _column_values(columns: dict, n_rows: int) -> dict:
    """Arrays for the output table: NaN → null, a column not measured (None) → all null."""
    out: dict[str, list] = {}
    for name, values in columns.items():
        if values is None:
            out[name] = [None] * n_rows
        elif name in ("date", "n_pixels"):
            out[name] = list(values)
        else:
            out[name] = [None if v is None or math.isnan(v) else float(v) for v in values]
    return out


def assess_to_file(season, field_id, out_dir, settings: Settings | None = None) -> dict:
    """Validate, assess, write out_dir/<field_id>.parquet atomically; return the CLI's summary line.

    A FieldOutcome is written as the field's explained outcome (status not_assessable or
    insufficient_data). Raises BadInput (bad/unknown id), EnvironmentFailure or OSError (ENOSPC/EDQUOT).
    """
    t0 = time.perf_counter()
    settings = settings or Settings()
    season.require(field_id)
    path = output_path(out_dir, field_id)
    want = expected(season, field_id, settings)
    try:
        result = assess(season, field_id, settings)
        status, reason = ASSESSED, ""
    except FieldOutcome as outcome:
        stack = season.stack_of(field_id)
        empty = {name: None for name in ("n_pixels", "valid_fraction", "ndvi_mean", "ndvi_smooth",
                                         "baseline_mean", "z")}
        columns = {"date": stack.dates if stack else [], **empty, **outcome.partial.get("columns", {})}
        result = {"columns": columns, "season_metrics": None, "events": [], "payout": None,
                  "coverage": {**outcome.partial.get("coverage", {}), "detail": outcome.detail}, "damage": None,
                  "damage_map": None}
        status, reason = outcome.status, outcome.reason
    write_output(path, _column_values(result["columns"], want.n_rows), want, status, reason, result)
    return {"field_id": field_id, "status": "ok", "path": str(path), "seconds": round(time.perf_counter() - t0, 4),
            **summary_of(status, reason, result["payout"], result["events"], result["coverage"], result["damage"])}
