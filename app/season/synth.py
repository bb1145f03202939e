"""Deterministic season generator with ground truth: `python -m app.season synth --fields N --seed S --out DIR`.

Writes the season contract (fields.parquet, one NDVI stack ndvi.tif, baseline.parquet, history.parquet,
units.parquet, season.json) plus the ground truth: truth.parquet (per field), truth_units.parquet (per
area unit) and truth_damage.tif (per pixel: 0 no field, 1 undamaged, 2 damaged; the stack's grid).
Fields are irregular polygons shelf-packed on a 10 m UTM 32N canvas with gaps between them; each date
has spatially coherent cloud blobs (nodata), sensor noise, and mixed edge pixels that blend a field with
its surroundings by the exact share of the pixel it covers; THIN_SHARE of fields are narrow strips
(8–45 m wide) along a band of bare soil or water, whose signal mixes into the strip's edge pixels. Damage is injected and recorded, with the
payout its noise-free curve implies under the field's own terms: drought (3 levels) over the whole
field; hail in a swath across part of the field (or all of it), so damage has a truth per pixel.
History: HISTORY_YEARS past years per region x crop, each with its own weather (timing, plateau) and
HISTORY_FIELDS fields; the baseline pools every field-year, history.parquet keeps each year's mean
curve (what percentile terms are priced on). This season itself is a normal year.
Truth is the index of each field's noise-free curve itself against the mean noise-free healthy curve
moved to the field's own green-up (phenology_shift_days: its sowing's offset from the unit's, plus the
shift of the PHENOLOGY_SHIFTED_SHARE of healthy fields whose whole season runs −14 … +21 days off the
unit's timing): no smoothing (no λ) is built into it, so the truth favours no smoothing setting of the
assessment. truth.parquet keeps each field's noise-free curve (`true_curve`, area-mixed over a hail
swath) so a test can recompute the truth by its own formula.
"""

import datetime as dt
import hashlib
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
import shapely.affinity
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize

import app
from app.hpc.atomic import atomic_path, atomic_write_bytes, sha256_file
from app.hpc.cores import physical_cores
from app.season import phenology as ph
from app.sure2.history import HISTORY, yearly_shortfalls
from app.sure2.payout import shortfall
from app.sure2.season import BASELINE, DATES_TAG, FIELDS, FORMAT, MANIFEST, stack_entry
from app.sure2.terms import payout_record, terms_of
from app.sure2.units import UNITS, unit_id

YEAR = 2025
FIRST_DATE = dt.date(YEAR, 4, 1)
N_DATES = 37  # every 5 days, 1 April – 27 September
STEP_DAYS = 5
CRS = "EPSG:32632"  # UTM 32N: south-eastern Norway
STACK, NDVI = "ndvi", "ndvi.tif"  # the one NDVI stack of a generated season
ORIGIN = (560_000.0, 6_760_000.0)  # upper-left corner of the canvas (easting, northing)
PIXEL = 10.0
TILE = 128
NODATA = -32768
GAP_M = 30.0  # at least three pixels between neighbouring fields' bounding boxes
CLOUD_CELL = 24  # pixels per cell of the coarse noise that makes cloud blobs
HISTORY_YEARS, HISTORY_FIELDS = 10, 30  # baseline per region x crop: years x fields per year
PIXEL_NOISE, PIXEL_HETEROGENEITY = 0.015, 0.02  # NDVI sd: per pixel and date / static per pixel
DAMAGE_SHARE = {"healthy": 0.70, "hail": 0.15, "drought": 0.15}
HAIL_WHOLE_FIELD = 0.25  # share of hail fields the swath covers entirely
HAIL_BEFORE_HARVEST = 40  # days: the last hail date before harvest (ripening starts ~35 days before)
HAIL_SHARE = (0.2, 0.8)  # otherwise the share of the field's area it hits, uniform in this range
PERCENTILE_SHARE = 0.2  # fields whose contract gives percentile terms (trigger 20th or 10th, exit 1st)
UNIT_TERMS = (20.0, 1.0)  # area-unit contracts: pay below the 20th percentile of history, in full at the 1st
TRUTH_PIXELS, TRUTH_UNITS = "truth_damage.tif", "truth_units.parquet"
PHENOLOGY_SHIFTED_SHARE = 0.2  # healthy fields sown (or greening up) off their unit's usual timing
PHENOLOGY_SHIFT_DAYS = (-14.0, 21.0)  # their whole curve moved by this many days, uniform
SHIFT_STREAM = 6  # the shifts have a random stream of their own: the rest of a seed's season is unchanged
THIN_SHARE = 0.05  # fields that are narrow strips, each along a contrasting neighbour (bare soil or water)
THIN_WIDTH_M, THIN_LENGTH_M = (8.0, 45.0), (150.0, 350.0)  # a strip's width and length, uniform
NEIGHBOUR_M = 20.0  # width of the contrasting band along one long side of a strip
NEIGHBOUR_NDVI = {"bare soil": 0.12, "water": -0.25}
THIN_STREAM = 5  # the strips have a random stream of their own (see SHIFT_STREAM)
CLOUD_HEAVY_SHARE = 0.03  # healthy fields seen through much more cloud than the rest
CLOUD_HEAVY_DATES = 0.6  # share of dates such a field is fully clouded
INSURED_PER_HA = {"barley": 9000, "spring_wheat": 11000, "oats": 8000, "potato": 30000, "winter_wheat": 12000}


def season_dates():
    return [FIRST_DATE + dt.timedelta(days=STEP_DAYS * k) for k in range(N_DATES)]


def _doy(dates):
    return np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)


def _date_of_doy(doy: float) -> dt.date:
    return dt.date(YEAR, 1, 1) + dt.timedelta(days=int(round(doy)) - 1)


def field_polygon(rng, area_m2):
    """Irregular star-shaped polygon (5–9 vertices) of the given area, centred on (0, 0), in metres."""
    n = int(rng.integers(5, 10))
    step = 2 * np.pi / n  # jittered by less than half a step: vertices stay in order, polygon simple
    angles = np.arange(n) * step + rng.uniform(-0.35, 0.35, n) * step
    radii = 1.0 + rng.uniform(-0.2, 0.2, n)
    stretch = rng.uniform(1.0, 1.8)  # fields are often longer than wide
    x, y = radii * np.cos(angles) * stretch, radii * np.sin(angles)
    rot = rng.uniform(0, np.pi)
    x, y = x * np.cos(rot) - y * np.sin(rot), x * np.sin(rot) + y * np.cos(rot)
    poly = shapely.Polygon(np.column_stack([x, y]))
    return shapely.affinity.scale(poly, *(2 * [math.sqrt(area_m2 / poly.area)]), origin=(0, 0))


def shelf_pack(rng, polys, attached=None):
    """Place polygons left to right in rows on a canvas: (placed polygons, {index: placed attached
    polygon}, canvas width, height in pixels). attached: {index: polygon} moved with polys[index] (a
    contrasting neighbour band), the pair's joint footprint kept clear of the others."""
    attached = attached or {}
    footprint = [shapely.union(p, attached[k]) if k in attached else p for k, p in enumerate(polys)]
    bounds = shapely.bounds(footprint)
    widths, heights = bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]
    canvas_w = math.ceil(math.sqrt(np.sum((widths + GAP_M) * (heights + GAP_M)) * 1.25) / (TILE * PIXEL)) * TILE * PIXEL
    placed, moves, x, y_top, row_h = [], [], GAP_M, GAP_M, 0.0
    for poly, (minx, _, _, maxy), w, h in zip(polys, bounds, widths, heights):
        if x + w + GAP_M > canvas_w:
            x, y_top, row_h = GAP_M, y_top + row_h + GAP_M, 0.0
        jitter = rng.uniform(0, GAP_M)
        # canvas coordinates: x east from the left edge, y south from the top edge (metres)
        dx, dy = ORIGIN[0] + x - minx, ORIGIN[1] - (y_top + jitter) - maxy
        placed.append(shapely.affinity.translate(poly, dx, dy))
        moves.append((dx, dy))
        x += w + GAP_M + jitter
        row_h = max(row_h, h + jitter)
    canvas_h = math.ceil((y_top + row_h + GAP_M) / (TILE * PIXEL)) * TILE * PIXEL
    moved = {k: shapely.affinity.translate(band, *moves[k]) for k, band in attached.items()}
    return placed, moved, int(canvas_w / PIXEL), int(canvas_h / PIXEL)


def thin_strip(rng, width):
    """A strip `width` metres wide (length from THIN_LENGTH_M, any direction) centred on (0, 0), and a
    band of a contrasting surface along one of its long sides, touching it: (strip, (band, NDVI))."""
    length = rng.uniform(*THIN_LENGTH_M)
    side = 1 if rng.random() < 0.5 else -1
    strip = shapely.box(-length / 2, -width / 2, length / 2, width / 2)
    band = shapely.box(-length / 2, side * width / 2, length / 2, side * (width / 2 + NEIGHBOUR_M))
    angle = rng.uniform(0, 180)
    surface = str(rng.choice(list(NEIGHBOUR_NDVI)))
    turn = lambda g: shapely.affinity.rotate(g, angle, origin=(0, 0))
    return turn(strip), (turn(band), NEIGHBOUR_NDVI[surface])


def edge_fractions(polys, labels, inner, transform):
    """Share of each boundary pixel (touched, not wholly inside) covered by its field, exactly."""
    frac = inner.astype(np.float32)
    rows, cols = np.nonzero((labels > 0) & ~inner)
    lab = labels[rows, cols]
    order = np.argsort(lab, kind="stable")
    rows, cols, lab = rows[order], cols[order], lab[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    ends = np.r_[starts[1:], len(lab)]
    for s, e in zip(starts, ends):
        x0 = transform.c + cols[s:e] * PIXEL
        y1 = transform.f - rows[s:e] * PIXEL
        boxes = shapely.box(x0, y1 - PIXEL, x0 + PIXEL, y1)
        frac[rows[s:e], cols[s:e]] = shapely.area(shapely.intersection(boxes, polys[lab[s] - 1])) / PIXEL**2
    return frac


def _upsampler(n_fine, cell):
    """(n_fine, n_coarse) bilinear interpolation matrix from a coarse grid of `cell`-pixel cells."""
    n_coarse = n_fine // cell + 2
    pos = (np.arange(n_fine) + 0.5) / cell
    i0 = np.floor(pos).astype(int)
    w1 = (pos - i0).astype(np.float32)
    m = np.zeros((n_fine, n_coarse), dtype=np.float32)
    m[np.arange(n_fine), i0] = 1 - w1
    m[np.arange(n_fine), i0 + 1] = w1
    return m


def cloud_cover(rng, n):
    """Per-date cloud share: mostly clear, some partly cloudy, a few overcast-ish dates."""
    kind = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    return np.select([kind == 0, kind == 1], [rng.uniform(0, 0.08, n), rng.uniform(0.08, 0.35, n)],
                     rng.uniform(0.35, 0.65, n))


def hail_swath(rng, poly):
    """A hail swath across part of a field: (swath polygon, share of the field's area it covers).

    A band of random direction; in HAIL_WHOLE_FIELD of cases it covers the whole field, otherwise one
    of its edges (or both) crosses the field so that a share drawn from HAIL_SHARE is hit.
    """
    minx, miny, maxx, maxy = poly.bounds
    pad = 2 * max(maxx - minx, maxy - miny)
    if rng.random() < HAIL_WHOLE_FIELD:
        return shapely.box(minx - pad, miny - pad, maxx + pad, maxy + pad), 1.0
    target = rng.uniform(*HAIL_SHARE)
    angle = rng.uniform(0, 180)
    centre = poly.centroid
    turned = shapely.affinity.rotate(poly, -angle, origin=centre)
    x0, y0, x1, y1 = turned.bounds
    one_edge = rng.random() < 0.5  # the swath's edge cuts the field, or the whole swath lies across it
    mid = x0 + rng.uniform(0.3, 0.7) * (x1 - x0)

    def band(size):
        lo, hi = (x0 - pad, x0 + size) if one_edge else (mid - size / 2, mid + size / 2)
        return shapely.box(lo, y0 - pad, hi, y1 + pad)

    lo, hi = 0.0, 2 * (x1 - x0)
    for _ in range(40):  # bisection on the band's width: area share is monotone in it
        size = (lo + hi) / 2
        lo, hi = (size, hi) if shapely.area(shapely.intersection(band(size), turned)) < target * turned.area else (lo, size)
    swath = shapely.affinity.rotate(band((lo + hi) / 2), angle, origin=centre)
    return swath, float(shapely.area(shapely.intersection(swath, poly)) / poly.area)


def history_years(rng, crop, region, doy):
    """Simulated history of one region x crop: (years, per-year mean curves, all field-year curves).

    Every year has its own weather (app.season.phenology.draw_year_effects) and HISTORY_FIELDS fields.
    """
    shifts, factors = ph.draw_year_effects(rng, HISTORY_YEARS)
    yearly, pooled = [], []
    for shift, factor in zip(shifts, factors):
        s, h, p = ph.draw_field_params(rng, crop, region, HISTORY_FIELDS)
        curves = ph.healthy_curve(crop, doy - shift, s, h, p * factor, region)
        yearly.append(curves.mean(axis=0))
        pooled.append(curves)
    return np.arange(YEAR - HISTORY_YEARS, YEAR), np.array(yearly), np.vstack(pooled)


def generate(n_fields: int, seed: int, out_dir) -> dict:
    """Write a season of n_fields to out_dir (created); returns a summary dict."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dates = season_dates()
    doy = _doy(dates)

    # Fields: size, crop, shape, place, region (south → north by canvas row).
    area_ha = np.clip(rng.lognormal(np.log(2.0), 0.8, n_fields), 0.5, 50.0)
    crops = rng.choice(list(ph.CROP_SHARE), size=n_fields, p=list(ph.CROP_SHARE.values()))
    shapes = [field_polygon(rng, a * 1e4) for a in area_ha]
    thin_rng = np.random.default_rng([seed, THIN_STREAM])
    thin = thin_rng.random(n_fields) < THIN_SHARE
    strip_width = np.where(thin, thin_rng.uniform(*THIN_WIDTH_M, n_fields), np.nan)
    neighbours = {}  # field index → (contrasting band next to it, its NDVI)
    for i in np.flatnonzero(thin).tolist():
        shapes[i], neighbours[i] = thin_strip(thin_rng, strip_width[i])
        area_ha[i] = shapes[i].area / 1e4
    polys, bands, width, height = shelf_pack(rng, shapes, {i: band for i, (band, _) in neighbours.items()})
    neighbours = {i: (bands[i], ndvi) for i, (_, ndvi) in neighbours.items()}
    polys = np.array(polys, dtype=object)
    transform = Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
    north = (ORIGIN[1] - shapely.bounds(polys)[:, 3]) / (height * PIXEL)  # 0 top (north) .. 1 bottom
    region_names = list(ph.REGIONS)
    regions = np.array(region_names)[np.clip((1 - north) * len(region_names), 0, len(region_names) - 1).astype(int)]
    field_ids = [f"NO25-{k:05d}" for k in range(n_fields)]

    # Healthy curves, then damage: `curves` is what a field's pixels show outside a hail swath,
    # `swath_curves` inside it, `true_curves` the field's mean (mixed by the swath's exact area share).
    sow, harvest, peak = np.zeros(n_fields), np.zeros(n_fields), np.zeros(n_fields)
    curves = np.zeros((n_fields, N_DATES))
    for crop in ph.CROPS:
        for region in ph.REGIONS:
            sel = np.flatnonzero((crops == crop) & (regions == region))
            if len(sel):
                sow[sel], harvest[sel], peak[sel] = ph.draw_field_params(rng, crop, region, len(sel))
                curves[sel] = ph.healthy_curve(crop, doy, sow[sel], harvest[sel], peak[sel], region)
    damage = rng.choice(list(DAMAGE_SHARE), size=n_fields, p=list(DAMAGE_SHARE.values()))
    damage_index = np.full(n_fields, -1)
    severity = np.zeros(n_fields)
    drought_level = np.zeros(n_fields, dtype=int)
    cloud_heavy = np.zeros(n_fields, dtype=bool)
    damaged_share = np.zeros(n_fields)
    swath_curves = curves.copy()
    swaths = {}  # field index → swath polygon
    for i in range(n_fields):
        soil = ph.CROPS[crops[i]]["soil"]
        if damage[i] == "hail":
            # hail falls in summer on a green canopy: from 40 days after sowing until ripening begins
            # (later hail barely changes NDVI: the canopy is going anyway, an adjuster's case)
            candidates = np.flatnonzero((doy >= max(sow[i] + 40, 152)) & (doy <= harvest[i] - HAIL_BEFORE_HARVEST))
            if len(candidates) == 0:
                damage[i] = "healthy"
                continue
            d = int(rng.choice(candidates))
            severity[i] = rng.uniform(0.4, 0.65)
            factor = ph.hail_factor(doy, doy[d] - rng.uniform(0.5, 4.5), severity[i])
            swath_curves[i] = ph.damaged_curve(curves[i], soil, factor, doy, harvest[i])
            swaths[i], damaged_share[i] = hail_swath(rng, polys[i])
        elif damage[i] == "drought":
            drought_level[i] = int(rng.integers(1, 4))
            severity[i] = ph.DROUGHT_LEVELS[drought_level[i]]
            onset = (sow[i] if sow[i] > 0 else 95) + rng.uniform(20, 30)
            d = int(np.argmax(doy >= onset))
            curves[i] = swath_curves[i] = ph.damaged_curve(curves[i], soil, ph.drought_factor(doy, onset, drought_level[i]),
                                                           doy, harvest[i])
            damaged_share[i] = 1.0
        else:
            cloud_heavy[i] = rng.random() < CLOUD_HEAVY_SHARE / DAMAGE_SHARE["healthy"]
            continue
        damage_index[i] = d
    # Healthy fields off their unit's timing: the whole curve moved; the sowing date written in the
    # contract moves with it (what the farmer did), the harvest date (the cover's end) does not.
    shift_rng = np.random.default_rng([seed, SHIFT_STREAM])
    phase = np.zeros(n_fields)
    moved = (damage == "healthy") & (shift_rng.random(n_fields) < PHENOLOGY_SHIFTED_SHARE)
    phase[moved] = shift_rng.uniform(*PHENOLOGY_SHIFT_DAYS, int(moved.sum()))
    for i in np.flatnonzero(moved).tolist():
        curves[i] = swath_curves[i] = ph.healthy_curve(crops[i], doy - phase[i], sow[i:i + 1], harvest[i:i + 1],
                                                       peak[i:i + 1], regions[i])[0]
    contract_sow = np.where(sow > 0, sow + phase, sow)  # winter wheat: sown the autumn before, greens up off time
    nominal_sow = np.array([ph.CROPS[c]["sow"] + ph.REGIONS[r][0] for c, r in zip(crops, regions)])
    green_up_shift = phase + np.where(sow > 0, sow - nominal_sow, 0.0)  # the field's green-up vs its unit's
    true_curves = (1 - damaged_share[:, None]) * curves + damaged_share[:, None] * swath_curves

    # Baseline and per-year history from simulated past seasons (noise-free curves).
    base_rows, history_rows, base_mean, history = [], [], {}, {}
    for crop in ph.CROPS:
        for region in ph.REGIONS:
            years, yearly, pooled = history_years(rng, crop, region, doy)
            mean, std = pooled.mean(axis=0), pooled.std(axis=0, ddof=1)
            base_mean[(region, crop)] = mean
            history[(region, crop)] = (years, doy, yearly)
            for k, date in enumerate(dates):
                base_rows.append((region, crop, date, int(doy[k]), float(mean[k]), float(std[k]), len(pooled)))
            history_rows += [(region, crop, int(y), int(doy[k]), float(curve[k]), HISTORY_FIELDS)
                             for y, curve in zip(years, yearly) for k in range(N_DATES)]

    # Contracts (fixed or percentile terms) and the payout the noise-free curve implies.
    index_kind = rng.choice(["ndvi_integral", "ndvi_peak"], size=n_fields, p=[0.6, 0.4])
    percentile = rng.random(n_fields) < PERCENTILE_SHARE
    trigger = np.where(percentile, np.nan, rng.choice([0.10, 0.12, 0.15], size=n_fields))
    exit_ = np.where(percentile, np.nan, rng.choice([0.40, 0.50, 0.60], size=n_fields))
    trigger_pct = np.where(percentile, rng.choice([20.0, 10.0], size=n_fields), np.nan)
    exit_pct = np.where(percentile, 1.0, np.nan)
    insured = np.array([round(a * INSURED_PER_HA[c], -2) for a, c in zip(area_ha, crops)])
    days = np.array([d.toordinal() for d in dates], dtype=np.float64)
    to_day = days[0] - doy[0]  # day of year → day number
    # Truth: against the baseline moved to the field's own green-up, over the contract's window as written
    # (whole days): a field sown late is not a damaged field.
    true_records = [
        _true_payout(index_kind[i], trigger[i], exit_[i], trigger_pct[i], exit_pct[i], insured[i], days, doy,
                     true_curves[i], base_mean[(regions[i], crops[i])], history[(regions[i], crops[i])],
                     np.round(contract_sow[i]) + to_day, np.round(harvest[i]) + to_day, green_up_shift[i])
        for i in range(n_fields)]
    true_index = np.array([r["index_value"] for r in true_records])
    true_payout = np.array([r["amount"] for r in true_records])

    # Raster: labels (touched pixels), wholly-inside pixels, exact edge shares, hail swaths.
    shapes = list(zip(polys, range(1, n_fields + 1)))
    labels = rasterize(shapes, out_shape=(height, width), transform=transform, all_touched=True, dtype="int32")
    half_diag = PIXEL * math.sqrt(2) / 2
    shrunk = [(shapely.buffer(p, -half_diag), 1) for p in polys]
    inner = rasterize([s for s in shrunk if not s[0].is_empty], out_shape=(height, width),
                      transform=transform, dtype="uint8").astype(bool)
    frac = edge_fractions(polys, labels, inner, transform)
    # a pixel is in a field's swath when its centre is (the swath clipped near its own field)
    near = [(shapely.intersection(swath, shapely.buffer(polys[i], PIXEL)), i + 1) for i, swath in swaths.items()]
    swath_label = rasterize([s for s in near if not s[0].is_empty], out_shape=(height, width), transform=transform,
                            dtype="int32") if near else np.zeros((height, width), np.int32)
    in_swath = (swath_label == labels) & (labels > 0)
    contrast = rasterize([(band, ndvi) for band, ndvi in neighbours.values()], out_shape=(height, width),
                         transform=transform, fill=np.nan, all_touched=True, dtype="float32") if neighbours \
        else np.full((height, width), np.nan, np.float32)
    _write_ndvi(out / NDVI, rng, seed, dates, doy, curves, swath_curves, crops, labels, frac, in_swath, cloud_heavy,
                transform, contrast)
    damaged_pixel = in_swath | np.isin(labels, np.flatnonzero(damage == "drought") + 1)
    _write_truth_pixels(out / TRUTH_PIXELS, labels, damaged_pixel, transform)
    del labels, inner, frac, swath_label, in_swath, damaged_pixel

    # Tables.
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    lonlat = shapely.transform(polys, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
    field_area = np.round(shapely.area(polys) / 1e4, 4)
    nullable = lambda a: pa.array(a, mask=np.isnan(a))
    fields = pa.table({
        "field_id": field_ids, "crop": crops.tolist(), "geometry": shapely.to_wkb(lonlat).tolist(),
        "area_ha": field_area, "sowing_date": [_date_of_doy(s) for s in contract_sow],
        "harvest_date": [_date_of_doy(h) for h in harvest], "region_id": regions.tolist(),
        "insured_sum": insured, "currency": ["NOK"] * n_fields, "index": index_kind.tolist(),
        "trigger": nullable(trigger), "exit": nullable(exit_), "trigger_percentile": nullable(trigger_pct),
        "exit_percentile": nullable(exit_pct), "stack": [STACK] * n_fields,
        "note": pa.nulls(n_fields, pa.string()), "source_id": field_ids,
    })
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}}}  # no crs = OGC:CRS84
    fields = fields.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    truth = pa.table({
        "field_id": field_ids, "damage": damage.tolist(),
        "damage_date_index": damage_index,
        "damage_date": [dates[d] if d >= 0 else None for d in damage_index],
        "severity": severity, "drought_level": drought_level, "cloud_heavy": cloud_heavy,
        "damaged_fraction": damaged_share, "damaged_ha": np.round(damaged_share * field_area, 4),
        "terms": np.where(percentile, "percentile", "fixed").tolist(),
        "true_index": true_index, "true_payout": true_payout,
        "expected_payout_sign": (true_payout > 0).astype(np.int8),
        "phenology_shift_days": np.round(green_up_shift, 3), "shifted": moved,
        "strip_width_m": nullable(np.round(strip_width, 2)),
        "true_curve": pa.array(list(true_curves), type=pa.list_(pa.float64())),
    })
    units, unit_truth = _units(regions, crops, field_area, true_curves, base_mean, history, days, doy)
    baseline = pa.table(list(zip(*base_rows)), names=["region_id", "crop", "date", "doy", "ndvi_mean",
                                                     "ndvi_std", "n_samples"])
    history_table = pa.table(list(zip(*history_rows)), names=["region_id", "crop", "year", "doy", "ndvi_mean",
                                                              "n_fields"])
    for name, table in ((FIELDS, fields), (BASELINE, baseline), (HISTORY, history_table), (UNITS, units),
                        ("truth.parquet", truth), (TRUTH_UNITS, unit_truth)):
        with atomic_path(out / name) as tmp:
            pq.write_table(table, tmp)
    files = {name: sha256_file(out / name) for name in (FIELDS, NDVI, BASELINE, HISTORY, UNITS)}
    fingerprint = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    stacks = {STACK: stack_entry(NDVI, CRS, transform, width, height, TILE, NODATA, dates)}
    manifest = {"format": FORMAT, "generator": f"app.season.synth {app.__version__}",
                "seed": seed, "n_fields": n_fields, "n_dates": N_DATES, "stacks": stacks,
                "files": files, "fingerprint": fingerprint}
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return {"out": str(out), "n_fields": n_fields, "n_dates": N_DATES, "raster_size": [width, height],
            "bytes": sum((out / n).stat().st_size for n in files), "fingerprint": fingerprint}


def _true_payout(kind, trigger, exit_, trigger_pct, exit_pct, insured, days, doy, curve, base, history, sowing,
                 harvest, shift=0.0) -> dict:
    """The payout record the noise-free curve implies, under the contract's own terms, against the
    baseline moved by `shift` days (the field's own green-up; the history years are not moved)."""
    row = {"trigger": trigger, "exit": exit_, "trigger_percentile": trigger_pct, "exit_percentile": exit_pct}
    terms, problems = terms_of({k: None if np.isnan(v) else float(v) for k, v in row.items()})
    if terms is None:
        raise ValueError(f"generated contract terms are invalid: {problems}")
    value = shortfall(kind, days, curve, np.interp(days - shift, days, base), sowing, harvest)
    past = yearly_shortfalls(history, kind, doy, days, base, sowing, harvest)
    return payout_record(terms, kind, value, past, insured, "NOK", "the generated unit")


def _units(regions, crops, area, true_curves, base_mean, history, days, doy):
    """Area-unit contracts (one per region x crop with fields: percentile terms on the integral
    index) and their truth (the area-weighted noise-free curve's payout)."""
    rows, truth = [], []
    to_day = days[0] - doy[0]
    for region in ph.REGIONS:
        for crop, c in ph.CROPS.items():
            sel = np.flatnonzero((regions == region) & (crops == crop))
            if len(sel) == 0:
                continue
            shift = ph.REGIONS[region][0]
            sowing = c["sow"] + (shift if c["sow"] > 0 else 0.0)
            harvest = c["harvest"] + shift
            contract = {"unit_id": unit_id(region, crop), "region_id": region, "crop": crop, "index": "ndvi_integral",
                        "trigger": None, "exit": None, "trigger_percentile": UNIT_TERMS[0],
                        "exit_percentile": UNIT_TERMS[1],
                        "insured_sum": float(round(area[sel].sum() * INSURED_PER_HA[crop], -2)), "currency": "NOK",
                        "sowing_date": _date_of_doy(sowing), "harvest_date": _date_of_doy(harvest)}
            weights = area[sel] / area[sel].sum()
            curve = weights @ true_curves[sel]
            true = _true_payout("ndvi_integral", np.nan, np.nan, *UNIT_TERMS, contract["insured_sum"], days, doy,
                                curve, base_mean[(region, crop)], history[(region, crop)], sowing + to_day,
                                harvest + to_day)
            rows.append(contract)
            truth.append({"unit_id": contract["unit_id"], "region_id": region, "crop": crop, "n_fields": len(sel),
                          "area_ha": float(area[sel].sum()), "true_index": true["index_value"],
                          "true_payout": true["amount"]})
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(truth)


def _write_truth_pixels(path, labels, damaged, transform):
    """truth_damage.tif: per pixel 0 = no field, 1 = field pixel undamaged, 2 = damaged (centre rule)."""
    height, width = labels.shape
    classes = np.where(labels > 0, np.where(damaged, 2, 1), 0).astype(np.uint8)
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs=CRS, transform=transform,
                   nodata=0, tiled=True, blockxsize=TILE * 2, blockysize=TILE * 2, compress="deflate")
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(classes, 1)
            dst.update_tags(CLASSES="0 no field, 1 field pixel undamaged, 2 damaged (hail swath or drought)")


def _write_ndvi(path, rng, seed, dates, doy, curves, swath_curves, crops, labels, frac, in_swath, cloud_heavy,
                transform, contrast):
    """Write the stack in tile rows; each strip has its own seeded generator (deterministic).
    contrast: NDVI of a contrasting surface (bare soil, water) where a thin field's neighbour band
    touches a pixel, NaN elsewhere: there it replaces the meadow as what mixes into edge pixels."""
    height, width = labels.shape
    n_fields = len(curves)
    ups_x = _upsampler(width, CLOUD_CELL).T.copy()  # (n_coarse_x, width)
    ups_y = _upsampler(height, CLOUD_CELL)  # (height, n_coarse_y)
    cover = cloud_cover(rng, N_DATES)
    coarse = rng.random((N_DATES, ups_y.shape[1], ups_x.shape[0])).astype(np.float32)
    # Threshold each date's smooth field at the quantile that leaves `cover` of it cloudy.
    smooth_coarse = np.stack([ups_y[::CLOUD_CELL] @ c @ ups_x[:, ::CLOUD_CELL] for c in coarse])
    thresholds = np.array([np.quantile(s, 1 - c) for s, c in zip(smooth_coarse, cover)], dtype=np.float32)
    background_offset = (rng.random((ups_y.shape[1], ups_x.shape[0])).astype(np.float32) - 0.5) * 0.3
    background = 0.45 + 0.3 * np.exp(-((doy - 190) / 45) ** 2)  # meadow and forest around the fields
    heavy_dates = rng.random((n_fields + 1, N_DATES)) < CLOUD_HEAVY_DATES
    heavy_dates[1:][~cloud_heavy] = False
    heavy_dates[0] = False
    field_curves = np.vstack([np.zeros(N_DATES), curves]).astype(np.float32)  # label 0 = background
    hail_curves = np.vstack([np.zeros(N_DATES), swath_curves]).astype(np.float32)
    profile = dict(driver="GTiff", width=width, height=height, count=N_DATES, dtype="int16", crs=CRS,
                   transform=transform, nodata=NODATA, tiled=True, blockxsize=TILE, blockysize=TILE,
                   compress="zstd", predictor=2, interleave="pixel", BIGTIFF="IF_SAFER",
                   NUM_THREADS=str(physical_cores()))
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.update_tags(**{DATES_TAG: ",".join(d.isoformat() for d in dates)},
                            UNITS="NDVI x 10000", NODATA_MEANS="cloud or cloud shadow")
            for b, d in enumerate(dates, start=1):
                dst.set_band_description(b, d.isoformat())
            for r0 in range(0, height, TILE):
                r1 = min(height, r0 + TILE)
                strip_rng = np.random.default_rng([seed, r0])
                lab, fr = labels[r0:r1], frac[r0:r1]
                # only a few coarse rows feed this strip: slice them so the products stay small
                c0, c1 = (r0 + 0.5) // CLOUD_CELL, (r1 - 0.5) // CLOUD_CELL + 2
                c0, c1 = int(c0), int(c1)
                uy = ups_y[r0:r1, c0:c1]
                bg = background[:, None, None] + (uy @ background_offset[c0:c1] @ ups_x)[None]
                bg = np.where(np.isnan(contrast[r0:r1]), bg, contrast[r0:r1])
                field = np.where(in_swath[r0:r1, :, None], hail_curves[lab], field_curves[lab]).transpose(2, 0, 1)
                field += strip_rng.normal(0, PIXEL_HETEROGENEITY, lab.shape).astype(np.float32)
                ndvi = fr * field + (1 - fr) * bg
                # Sensor noise on field pixels; the surroundings stay smooth so the stack compresses well.
                ndvi += strip_rng.normal(0, PIXEL_NOISE, ndvi.shape).astype(np.float32) * (fr > 0)
                data = np.rint(np.clip(ndvi, -1, 1) * 10000).astype(np.int16)
                for k in range(N_DATES):
                    cloud = (uy @ coarse[k, c0:c1] @ ups_x) > thresholds[k]
                    cloud |= heavy_dates[lab, k] & (lab > 0)
                    data[k][cloud] = NODATA
                dst.write(data, window=((r0, r1), (0, width)))

