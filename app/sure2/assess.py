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

from app.sure2 import pixels, science, terms, tiles
from app.sure2.history import season_history, yearly_shortfalls
from app.sure2.outcome import ASSESSED, FieldOutcome
from app.sure2.output import Expected, output_path, summary_of, write_output
from app.sure2.payout import shortfall
from app.sure2.settings import Settings
from app.sure2.terms import day_number, payout_record
from app.sure2.version import code_version

COVERAGE_EPSILON = 1e-9  # rounding of the exact area differences: a pixel covered less than this is outside
PURE_TOLERANCE = 1e-6  # a pixel whose computed coverage falls short of the threshold by less is pure
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


def coverage_fractions(polygon, transform, shape):
    """Share of each window pixel's area that lies inside the polygon, exactly (what exactextract
    computes): 1 where the pixel's centre lies more than half a pixel diagonal inside, 0 where it lies
    that far outside, else the area of pixel ∩ polygon (the pixels along the boundary; _area_below_left)."""
    h, w = shape
    xs = transform.c + transform.a * (np.arange(w) + 0.5)
    ys = transform.f + transform.e * (np.arange(h) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    half_diagonal = math.hypot(transform.a, transform.e) / 2
    shrunk = shapely.buffer(polygon, -half_diagonal)
    inner = shapely.contains_xy(shrunk, gx, gy) if not shrunk.is_empty else np.zeros(shape, bool)
    fraction = inner.astype(np.float64)
    rows, cols = np.nonzero(~inner & shapely.contains_xy(shapely.buffer(polygon, half_diagonal), gx, gy))
    x0, y1 = transform.c + transform.a * cols, transform.f + transform.e * rows  # a > 0, e < 0: north-up
    x1, y0 = x0 + transform.a, y1 + transform.e
    ox, oy = transform.c, transform.f  # a local origin: UTM's 10^6 m coordinates would cost digits
    edges = _edges(polygon) - np.array([ox, oy, ox, oy])
    area = lambda x, y: _area_below_left(edges, x - ox, y - oy)
    fraction[rows, cols] = (area(x1, y1) - area(x0, y1) - area(x1, y0) + area(x0, y0)) / (transform.a * -transform.e)
    return np.where(fraction < COVERAGE_EPSILON, 0.0, np.minimum(fraction, 1.0))


def _edges(polygon):
    """(x start, y start, x end, y end) of every ring edge, exteriors counter-clockwise, holes clockwise."""
    oriented = shapely.orient_polygons(polygon)
    rings = [oriented] if oriented.geom_type == "Polygon" else list(oriented.geoms)
    parts = []
    for part in rings:
        for ring in (part.exterior, *part.interiors):
            xy = np.asarray(ring.coords)
            parts.append(np.column_stack([xy[:-1], xy[1:]]))
    return np.vstack(parts)


def _area_below_left(edges, x, y):
    """Area of the polygon within {X <= x, Y <= y}, for arrays of corners (x, y), exactly.

    By Green's theorem the area of a counter-clockwise region is −∮ Y dX; cutting it at height y turns Y
    into min(Y, y) (on each vertical line the polygon's intervals are clipped at y), and cutting at x keeps
    the part of every edge with X <= x. Per edge the integral of min(Y, y) over X is that of Y less that of
    max(Y − y, 0), which for a straight edge with ends u, v above y is (u⁺² − v⁺²) / (2 (u − v)) per unit X.
    """
    xa, ya, xb, yb = (edges[:, k][None, :] for k in range(4))
    x, y = x[:, None], y[:, None]
    lo, hi = np.minimum(xa, xb), np.maximum(xa, xb)
    end = np.minimum(hi, x)
    length = np.maximum(end - lo, 0.0)
    slope = np.divide(yb - ya, xb - xa, out=np.zeros(np.broadcast_shapes(xa.shape)), where=xb != xa)
    y_lo = np.where(xa <= xb, ya, yb)
    u, v = y_lo - y, y_lo + slope * (end - lo) - y  # heights above the cut at both ends of the kept part
    up, vp = np.maximum(u, 0.0), np.maximum(v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        above = np.where(np.abs(u - v) > 1e-12, (up ** 2 - vp ** 2) / (2 * (u - v)), up)
    below = (u + v) / 2 + y - above  # mean of min(Y, y) over the kept part
    return -np.sum(np.sign(xb - xa) * length * below, axis=1)


def pure_mask(fraction, pure_fraction):
    """uint8 mask of the pixels at least `pure_fraction` inside the field (tolerance for rounding)."""
    return np.ascontiguousarray(fraction >= pure_fraction - PURE_TOLERANCE, dtype=np.uint8)


def zonal_means(data, fraction, mask, nodata):
    """Per date over the masked pixels: (valid pixel count, coverage-weighted valid share, coverage-
    weighted mean NDVI (NaN where none is valid))."""
    values = data[:, mask.astype(bool)]
    weight = fraction[mask.astype(bool)]
    seen = values != nodata
    seen_weight = seen @ weight
    total = np.where(seen, values, 0).astype(np.float64) @ weight
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(seen_weight > 0, total / seen_weight * 1e-4, np.nan)
    return seen.sum(axis=1).astype(np.int32), seen_weight / weight.sum(), means


def read_window(stack, shape, inside):
    """All dates over the whole window; pixels outside the raster are nodata (never observed)."""
    window, dr, dc = inside
    part = tiles.read(stack, window)
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
    fraction = coverage_fractions(polygon, transform, shape)
    field_pixels = float(fraction.sum())  # the field's area in pixels
    if field_pixels == 0:
        raise FieldOutcome("too_small", f"the field covers no pixel ({shapely.area(polygon):.0f} m²)")
    mask = pure_mask(fraction, settings.pure_fraction)
    n_mask = int(mask.sum())
    if n_mask < settings.min_pure_pixels:
        raise FieldOutcome("too_small", f"{n_mask} pure pixels (at least {settings.pure_fraction:.0%} inside the "
                           f"field), needs --min-pure-pixels {settings.min_pure_pixels:g}; the field covers "
                           f"{field_pixels:.1f} pixels: mixed edge pixels would carry its neighbours' signal")
    window, dr, dc = inside
    covered = float(fraction[dr:dr + window.height, dc:dc + window.width].sum())  # field area inside the stack
    data = read_window(stack, shape, inside)
    counts, valid_fraction, means = zonal_means(data, fraction, mask, stack.nodata)
    weights = science.observation_weights(valid_fraction, settings.min_coverage)
    observed = weights > 0
    ndvi_mean = np.where(observed, means, np.nan)
    coverage = {"stack": stack.name, "n_field_pixels": round(field_pixels, 3), "n_mask_pixels": n_mask,
                "mask": "pure", "raster_coverage": round(covered / field_pixels, 6), "area_ha": float(f["area_ha"]),
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
    # the field's own timing: the baseline moved by its green-up shift (app.sure2.science, Phenology)
    shift = science.phenology_shift(days, means, weights, base_mean, settings.max_shift_days)
    normal_mean, normal_std = base_mean, base_std  # unmoved: the history years are compared with it
    base_mean, base_std = (science.aligned(days, b, shift or 0.0) for b in (base_mean, base_std))
    judge_mean, judge_std = np.fmin(normal_mean, base_mean), np.fmax(normal_std, base_std)  # "below normal"
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
        classes, first = pixels.damage(curves, y, w, base_mean, days, sowing, harvest, settings.damage_drop,
                                       settings.damage_z * np.maximum(judge_std, science.MIN_STD), judge_mean)
        curves = pixels.resmooth_at_breaks(curves, y, w, base_mean, lam, settings.auto_lambda, classes, first)
        smoothed = pixels.field_curve(curves)
        damage = pixels.damage_record(classes, first, float(f["area_ha"]), stack.dates, n_sampled)
        damage_map = pixels.map_patch(stack.name, window.row_off - dr, window.col_off - dc, mask, classes, first)
    else:
        smoothed, lam = science.smooth_field(ndvi_mean, weights, base_mean, settings.lam)
        damage = {"pixel_level": False}
    if np.isnan(smoothed[in_season]).any():
        raise FieldOutcome("too_few_observations", "no inner pixel is seen often enough to smooth", partial)
    z = science.z_scores(smoothed, judge_mean, judge_std)
    metrics = science.season_metrics(days, smoothed, sowing, harvest, stack.dates)
    metrics.update({"n_observed_dates": int(observed.sum()), "n_dates": stack.n_dates, "lambda": lam,
                    "lambda_mode": "auto" if settings.auto_lambda else "fixed", "pixel_level": settings.pixel_level,
                    "phenology_shift_days": None if shift is None else round(shift, 2)})
    events = science.abrupt_drops(days, ndvi_mean, observed, base_mean, sowing, harvest, stack.dates)
    events += science.sustained_anomalies(days, z, sowing, harvest, stack.dates)
    if settings.pixel_level:
        events += pixels.damage_event(damage)
    history = yearly_shortfalls(season_history(str(season.data_dir)).get((f["region_id"], f["crop"])), f["index"],
                                stack.doy, days, normal_mean, sowing, harvest)
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
