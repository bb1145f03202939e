"""The pixel level: every pure pixel smoothed in one compiled call, damage per pixel with its date,
the field's damaged area, and the field's patch of the season's damage map.

Series: each pure pixel's own clear views (weight 1; cloud and nodata weight 0).
λ: a fixed λ smooths every pixel's NDVI. Automatic λ (app.sure2.science explains why it works on the
departure from the baseline): the V-curve's λ for the departures of up to PIXEL_SAMPLE pixels spread
evenly over the field's pure pixels seen on at least SAMPLE_MIN_DATES dates, their lower median;
every pixel's departure is then smoothed with that λ. One λ per field (its pixels share sensor,
noise and crop; a V-curve per pixel costs ~60 solves each). All pixels go through one batched call
(app.sure2._kernels.whittaker_batch, 8 series solved side by side).
The field's curve is the mean of its pixels' curves: each pixel's gaps are filled from its own views,
so cloud over part of a field does not tilt the field's curve toward the part in view.

Damage rule, per pixel, on its smoothed curve over the damage window (sowing → harvest −
DAMAGE_GUARD_DAYS; from then on a fall is ripening, not damage):
  anomaly a(t) = curve(t) − baseline(t); pre-event level p(t) = max of a over the window's earlier dates;
  damaged at t when a(t) <= p(t) − damage_drop        (it fell that far below its own earlier standing)
              and   curve(t) − baseline(t) <= −damage_z × σ(t)   (and lies that far below normal; σ the
                                                      baseline's std, floored at science.MIN_STD)
  on DAMAGE_SUSTAIN consecutive window dates. Date: from the pixel's clear views around that detection
  (see damage()).
After the damage rule, every damaged pixel is smoothed again with a break at its fall
(resmooth_at_breaks; in the middle of the cloudy gap the fall happened in): the roughness penalty no
longer links the dates before the fall to those after it, so the smoother cannot round the fall's
corner. Without the break a smoothed step starts to fall before the event and lowers the pre-event
peak: on generated hail fields the ndvi_peak index stood 0.04 (median; 0.11 at the 90th percentile)
above the true loss, while the integral index (which the smoother's conserved weighted sum keeps) was
unbiased.
The first test tells damage from a field that is poorer or later than normal all season long; the
second keeps a field that falls back to normal after a lush start undamaged. A pixel with fewer than
3 clear views has no curve and no class (no data).
Damaged-area fraction = damaged / classified pure pixels; damaged hectares = fraction × the field's
area (pure pixels stand for the whole field).
"""

import base64
import zlib
from collections import Counter

import numpy as np

from app.sure2._kernels import whittaker_batch, whittaker_vcurve
from app.sure2.science import LOG10_LAMBDA_GRID, departure, in_window

PIXEL_SAMPLE = 16
SAMPLE_MIN_DATES = 8
DAMAGE_GUARD_DAYS = 20
DAMAGE_SUSTAIN = 2
DATE_SEARCH = 3  # acquisitions around the smoothed detection searched for the first clear view that shows it
NO_DATA, UNDAMAGED, DAMAGED = 0, 1, 2
NO_DATE = 65535  # date index of a pixel that is not damaged (uint16 in the map patch)
BREAK_MIN_VIEWS = 2  # clear views a damaged pixel needs on each side of its break to be smoothed with it
EVENT_MIN_PIXELS = 4  # a field reports a pixel_damage event from this many damaged pixels on


def pixel_series(window, mask, nodata):
    """(y, w): one row per pure pixel (raster order), NDVI (0 where unseen) and 0/1 weights."""
    values = window[:, mask.astype(bool)].T
    seen = values != nodata
    return np.where(seen, values * 1e-4, 0.0), seen.astype(np.float64)


def sample_rows(w, k=PIXEL_SAMPLE, min_dates=SAMPLE_MIN_DATES):
    """Up to k row indices spread evenly over the rows seen on at least min_dates dates."""
    eligible = np.flatnonzero((w > 0).sum(axis=1) >= min_dates)
    if len(eligible) == 0:
        return eligible
    return np.unique(eligible[np.linspace(0, len(eligible) - 1, min(k, len(eligible))).round().astype(int)])


def smooth_pixels(y, w, base, lam, auto: bool):
    """(curves (n_pixels, n_dates; NaN rows: too few views), λ, pixels sampled for λ)."""
    if not auto:
        return whittaker_batch(np.ascontiguousarray(y), np.ascontiguousarray(w), lam), lam, 0
    dep, w = departure(y, w, base[None, :])
    rows = sample_rows(w)
    if len(rows) == 0:  # no pixel seen often enough to judge its noise: the grid's middle
        log10_lam = float(np.median(LOG10_LAMBDA_GRID))
    else:
        chosen = sorted(whittaker_vcurve(dep[r], w[r], LOG10_LAMBDA_GRID)[1] for r in rows)
        log10_lam = chosen[(len(chosen) - 1) // 2]  # lower median: a λ of the V-curve's own choices
    lam = 10.0 ** log10_lam
    return base[None, :] + whittaker_batch(np.ascontiguousarray(dep), np.ascontiguousarray(w), lam), lam, len(rows)


def field_curve(curves):
    """Mean of the pixels' curves per date (pixels without a curve left out)."""
    has = ~np.isnan(curves).all(axis=1)
    return curves[has].mean(axis=0) if has.any() else np.full(curves.shape[1], np.nan)


def damage(curves, y, w, base, days, sowing, harvest, drop, below, floor=None):
    """(class per pixel (uint8), damage date index per pixel (NO_DATE if none)) by the rule above.

    below: per date, how far under the baseline a damaged pixel lies (array or scalar); `floor`: the line
    it must lie that far under (default the baseline; the assessment passes the lower of the moved and
    the unmoved baseline, app.sure2.science, Phenology). The date comes
    from the pixel's own clear views, since a smoothed curve starts to fall before the event: the first
    clear view within DATE_SEARCH acquisitions of the smoothed detection that is already down by `drop`
    from the pre-event level shows it (the detection itself when none does), and, as for field-mean
    drops, the date is the first acquisition after the last clear view before that one (the earliest
    the damage can have been visible)."""
    n_pix = curves.shape[0]
    classes = np.where(np.isnan(curves).all(axis=1), NO_DATA, UNDAMAGED).astype(np.uint8)
    first = np.full(n_pix, NO_DATE, dtype=np.uint16)
    cols = np.flatnonzero(in_window(days, sowing, harvest - DAMAGE_GUARD_DAYS))
    if len(cols) <= DAMAGE_SUSTAIN or n_pix == 0:
        return classes, first
    anomaly = curves[:, cols] - base[cols][None, :]
    level = np.maximum.accumulate(anomaly, axis=1)  # level[:, j]: the pre-event level up to date j
    below = np.broadcast_to(np.asarray(below, dtype=np.float64), base.shape)[cols]
    under = curves[:, cols] - (base if floor is None else floor)[cols][None, :]
    low = np.zeros_like(anomaly, dtype=bool)
    low[:, 1:] = (anomaly[:, 1:] <= level[:, :-1] - drop) & (under[:, 1:] <= -below[None, 1:])
    run = low[:, :len(cols) - DAMAGE_SUSTAIN + 1].copy()
    for k in range(1, DAMAGE_SUSTAIN):
        run &= low[:, k:len(cols) - DAMAGE_SUSTAIN + 1 + k]
    hit = np.flatnonzero(run.any(axis=1) & (classes == UNDAMAGED))
    classes[hit] = DAMAGED
    start = np.argmax(run[hit], axis=1)  # position in cols of the smoothed detection (>= 1)
    pre = level[hit, start - 1]
    seen = w[np.ix_(hit, cols)] > 0
    down = seen & (y[np.ix_(hit, cols)] - base[cols][None, :] <= (pre - drop)[:, None])
    pos = np.arange(len(cols))[None, :]
    down &= (np.abs(pos - start[:, None]) <= DATE_SEARCH) & (pos >= 1)
    shown = np.where(down.any(axis=1), np.argmax(down, axis=1), start)
    before = seen & (pos < shown[:, None])
    last_clear = np.where(before.any(axis=1), len(cols) - 1 - np.argmax(before[:, ::-1], axis=1), shown - 1)
    first[hit] = cols[last_clear + 1]
    return classes, first


def resmooth_at_breaks(curves, y, w, base, lam, auto: bool, classes, first):
    """curves with each damaged pixel smoothed again with a break at its fall (see the module doc):
    in the middle of the cloudy gap between the last clear view before the fall and the first after
    it (on a seed-101 generated season the earliest end of the gap left the hail index +0.002 above the
    truth on average, +0.010 at p90; the middle, −0.001 and +0.006); a pixel keeps its curve when either side of the break has fewer than BREAK_MIN_VIEWS
    clear views. Same λ and same series (departure from the baseline under automatic λ) as
    smooth_pixels; dense solves batched per break date (damaged pixels are a few hundred per field)."""
    out = curves.copy()
    n = curves.shape[1]
    series = departure(y, w, base[None, :]) if auto else (y, w)
    values, weights = series
    hit = np.flatnonzero((classes == DAMAGED) & (first != NO_DATE))
    start = first[hit].astype(np.int64)  # the first acquisition after the last clear view before the fall
    after = (weights[hit] > 0) & (np.arange(n)[None, :] >= start[:, None])
    shown = np.where(after.any(axis=1), np.argmax(after, axis=1), start)  # the first clear view after it
    breaks = (start + shown + 1) // 2  # the fall happened somewhere in the cloudy gap: break in its middle
    for b in np.unique(breaks):
        rows = hit[breaks == b]
        rows = rows[((weights[rows, :b] > 0).sum(axis=1) >= BREAK_MIN_VIEWS)
                    & ((weights[rows, b:] > 0).sum(axis=1) >= BREAK_MIN_VIEWS)]
        if len(rows) == 0:
            continue
        d = np.diff(np.eye(n), 2, axis=0)
        d = d[(np.arange(n - 2) + 2 < b) | (np.arange(n - 2) >= b)]  # no second difference spans the break
        a = lam * (d.T @ d)[None] + weights[rows][:, :, None] * np.eye(n)[None]
        fit = np.linalg.solve(a, (weights[rows] * values[rows])[:, :, None])[:, :, 0]
        out[rows] = base[None, :] + fit if auto else fit
    return out


def damage_record(classes, first, area_ha, dates, n_sampled: int) -> dict:
    """The output's damage blob (no per-pixel arrays: those are the map patch)."""
    classified = int(np.count_nonzero(classes != NO_DATA))
    damaged = int(np.count_nonzero(classes == DAMAGED))
    fraction = damaged / classified if classified else None
    when = Counter(first[classes == DAMAGED].tolist()).most_common(1)
    return {"pixel_level": True, "n_classified": classified, "n_damaged": damaged,
            "damaged_fraction": None if fraction is None else round(fraction, 6),
            "damaged_ha": None if fraction is None else round(fraction * area_ha, 4),
            "main_damage_date": dates[when[0][0]].isoformat() if when else None,
            "main_damage_index": int(when[0][0]) if when else None, "lambda_sampled_pixels": n_sampled}


def damage_event(record: dict) -> list:
    """[pixel_damage event] when enough pixels are damaged (dated by their most common damage date)."""
    if record["n_damaged"] < EVENT_MIN_PIXELS:
        return []
    return [{"type": "pixel_damage", "date": record["main_damage_date"], "date_index": record["main_damage_index"],
             "damaged_fraction": record["damaged_fraction"], "damaged_ha": record["damaged_ha"]}]


def map_patch(stack_name, row0, col0, mask, classes, first) -> dict:
    """The field's window of the damage map (class, damage date index), compressed for the footer."""
    grid_classes = np.zeros(mask.shape, dtype=np.uint8)
    grid_dates = np.full(mask.shape, NO_DATE, dtype=np.uint16)
    inner = mask.astype(bool)
    grid_classes[inner], grid_dates[inner] = classes, first
    pack = lambda a: base64.b64encode(zlib.compress(a.tobytes(), 6)).decode()
    return {"stack": stack_name, "row0": int(row0), "col0": int(col0), "height": int(mask.shape[0]),
            "width": int(mask.shape[1]), "classes": pack(grid_classes), "date_index": pack(grid_dates)}


def read_patch(patch: dict):
    """(row0, col0, classes (h, w) uint8, date index (h, w) uint16) of a map patch."""
    shape = (patch["height"], patch["width"])
    unpack = lambda text, dtype: np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).reshape(shape)
    return patch["row0"], patch["col0"], unpack(patch["classes"], np.uint8), unpack(patch["date_index"], np.uint16)
