"""From per-date field means to a season: weights, smoothing, metrics, z-scores and damage events.

Times are day numbers (proleptic ordinals, as float) so windows and integrals are in days.

Smoothing. A fixed λ smooths the NDVI series itself (as every assessment before automatic λ did).
With automatic λ the V-curve (app.sure2._kernels.whittaker_vcurve, grid LOG10_LAMBDA_GRID) chooses λ
for the series' *departure from the baseline* and that departure is smoothed; the curve is the
baseline plus the smoothed departure. Why the departure: the V-curve balances fit against roughness,
and the roughness of an NDVI curve is mostly its phenology, not noise. On near noise-free field means
it then picks λ of 10^2–10^3 and flattens the peak (seed-7 season, its 389 fields that are not
cloud-heavy: 58 payout decisions wrong, against 9 with λ = 10); the departure's roughness is noise
and damage, which is what λ is for.
"""

import numpy as np

from app.sure2._kernels import whittaker, whittaker_vcurve
from app.sure2.settings import AUTO

# log10 λ from 10^-2 to 10^4 in steps of 0.1 (61 points; the chosen λ is a midpoint between two)
LOG10_LAMBDA_GRID = np.round(np.arange(-2.0, 4.0 + 1e-9, 0.1), 10)

DROP_THRESHOLD = 0.12  # NDVI fall of the anomaly between two observations that counts as abrupt
DROP_MAX_GAP = 4  # acquisitions between the two clear views that bracket a drop, at most (20 days)
HARVEST_GUARD_DAYS = 10  # drops this close to harvest are the harvest, not damage
ANOMALY_Z = -2.0  # smoothed z at or below this is anomalous
ANOMALY_MIN_DATES = 3  # a sustained anomaly lasts at least this many acquisitions
MIN_STD = 0.02  # floor of the baseline std so a quiet date does not give huge z


def observation_weights(valid_fraction, min_coverage):
    """Whittaker weight per date: the valid fraction itself, or 0 below the coverage threshold."""
    vf = np.asarray(valid_fraction, dtype=np.float64)
    return np.where(vf >= min_coverage, vf, 0.0)


def smooth(ndvi_mean, weights, lam):
    """Weighted Whittaker; with fewer than 3 observed dates there is nothing to smooth: all NaN."""
    if np.count_nonzero(weights > 0) < 3:
        return np.full(len(weights), np.nan)
    return whittaker(np.ascontiguousarray(ndvi_mean, dtype=np.float64), np.ascontiguousarray(weights), lam)


def departure(values, weights, base):
    """(values − base, weights) with the dates the baseline does not cover unobserved (weight 0)."""
    known = np.isfinite(base) & (weights > 0)
    return np.where(known, values - np.where(known, base, 0.0), 0.0), np.where(known, weights, 0.0)


def smooth_auto(ndvi_mean, weights, base):
    """(curve, λ): the V-curve's λ for the departure from the baseline; curve = base + smoothed departure
    (NaN where the baseline is NaN)."""
    dep, w = departure(np.asarray(ndvi_mean, dtype=np.float64), np.asarray(weights, dtype=np.float64), base)
    smoothed, log10_lam = whittaker_vcurve(dep, w, LOG10_LAMBDA_GRID)
    return base + smoothed, 10.0 ** log10_lam


def smooth_field(ndvi_mean, weights, base, lam):
    """(curve, λ) of the field-mean series: lam a number (fixed) or AUTO."""
    if lam == AUTO:
        return smooth_auto(ndvi_mean, weights, base)
    return smooth(ndvi_mean, weights, lam), lam


def window_integral(days, values, start, end):
    """Integral (NDVI x day) of the piecewise-linear curve through (days, values) over [start, end]:
    a float, or one per row when `values` is 2-D (curves on the same days).

    The window is clipped to the observed season; outside it the integral is not extrapolated.
    """
    values = np.asarray(values, dtype=np.float64)
    start, end = max(start, days[0]), min(end, days[-1])
    if end <= start:
        return 0.0 if values.ndim == 1 else np.zeros(values.shape[0])
    inner = np.flatnonzero((days > start) & (days < end))
    x = np.concatenate(([start], days[inner], [end]))
    y = np.concatenate((_at(days, values, start), values[..., inner], _at(days, values, end)), axis=-1)
    total = np.sum((y[..., 1:] + y[..., :-1]) * np.diff(x), axis=-1) / 2
    return float(total) if values.ndim == 1 else total


def _at(days, values, t):
    """values linearly interpolated at day t (days[0] <= t <= days[-1]), kept as a last axis of length 1."""
    j = int(np.clip(np.searchsorted(days, t, "right") - 1, 0, len(days) - 2))
    f = (t - days[j]) / (days[j + 1] - days[j])
    return values[..., j:j + 1] + f * (values[..., j + 1:j + 2] - values[..., j:j + 1])


def in_window(days, start, end):
    return (days >= start) & (days <= end)


def season_metrics(days, smoothed, sowing, harvest, dates) -> dict:
    """Peak value/date, start and end of season (50 % amplitude crossings), sowing→harvest integral."""
    win = np.flatnonzero(in_window(days, sowing, harvest))
    out: dict[str, float | str | None] = {"peak_ndvi": None, "peak_date": None, "sos_date": None, "eos_date": None,
                                          "integral_ndvi_days": None}
    if len(win) == 0 or np.isnan(smoothed).all():
        return out
    ipk = win[np.argmax(smoothed[win])]
    out["peak_ndvi"] = float(smoothed[ipk])
    out["peak_date"] = dates[ipk].isoformat()
    before, after = win[win <= ipk], win[win >= ipk]
    thr_up = smoothed[before].min() + 0.5 * (smoothed[ipk] - smoothed[before].min())
    thr_down = smoothed[after].min() + 0.5 * (smoothed[ipk] - smoothed[after].min())
    out["sos_date"] = dates[before[np.argmax(smoothed[before] >= thr_up)]].isoformat()
    out["eos_date"] = dates[after[np.flatnonzero(smoothed[after] >= thr_down)[-1]]].isoformat()
    out["integral_ndvi_days"] = window_integral(days, smoothed, sowing, harvest)
    return out


def z_scores(smoothed, base_mean, base_std):
    return (smoothed - base_mean) / np.maximum(base_std, MIN_STD)


def abrupt_drops(days, ndvi_mean, observed, base_mean, sowing, harvest, dates) -> list:
    """Falls of the observed anomaly (observation − baseline) between consecutive observed dates.

    Using the anomaly keeps the normal senescence out; drops seen within HARVEST_GUARD_DAYS of harvest
    are the harvest itself and are ignored. Clouds can hide the moment of damage, so an event is dated
    by its bracket: `date` is the first acquisition after the last clear view (the earliest the damage
    can have been visible), `observed_date` the first clear view that shows it.
    """
    events = []
    idx = np.flatnonzero(observed & in_window(days, sowing, harvest - HARVEST_GUARD_DAYS))
    anomaly = ndvi_mean - base_mean
    for j, i in zip(idx[:-1], idx[1:]):
        fall = anomaly[j] - anomaly[i]
        if i - j <= DROP_MAX_GAP and fall >= DROP_THRESHOLD:
            events.append({"type": "abrupt_drop", "date": dates[j + 1].isoformat(), "date_index": int(j + 1),
                           "observed_date": dates[i].isoformat(), "observed_index": int(i),
                           "ndvi_before": float(ndvi_mean[j]), "ndvi_after": float(ndvi_mean[i]),
                           "anomaly_drop": float(fall)})
    return events


def sustained_anomalies(days, z, sowing, harvest, dates) -> list:
    """Runs of at least ANOMALY_MIN_DATES consecutive in-season dates with smoothed z <= ANOMALY_Z."""
    low = in_window(days, sowing, harvest) & (z <= ANOMALY_Z)
    events, i, n = [], 0, len(low)
    while i < n:
        if not low[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and low[j + 1]:
            j += 1
        if j - i + 1 >= ANOMALY_MIN_DATES:
            events.append({"type": "sustained_anomaly", "start_date": dates[i].isoformat(),
                           "end_date": dates[j].isoformat(), "start_index": int(i), "end_index": int(j),
                           "n_dates": int(j - i + 1), "min_z": float(z[i:j + 1].min())})
        i = j + 1
    return events
