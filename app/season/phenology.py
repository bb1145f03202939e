"""Crop phenology of the generated seasons: double-logistic NDVI curves and injected damage.

Used by the generator only (the assessment knows crops solely through the baseline).
Times are day-of-year floats of the season's year.
"""

import numpy as np

# soil: bare-soil NDVI before green-up; peak: plateau NDVI; sow/harvest: mean day of year;
# up: days from sowing to half green-up, k_up its steepness; down: days before harvest of half
# senescence, k_down its steepness; stubble: NDVI after harvest. Winter wheat is sown the autumn before
# and starts the season already green ("start").
CROPS = {
    "barley":       dict(soil=0.16, start=0.16, peak=0.82, sow=125, harvest=232, up=30, k_up=0.15, down=16, k_down=0.16, stubble=0.24),
    "spring_wheat": dict(soil=0.16, start=0.16, peak=0.85, sow=121, harvest=244, up=32, k_up=0.14, down=18, k_down=0.14, stubble=0.24),
    "oats":         dict(soil=0.16, start=0.16, peak=0.80, sow=129, harvest=240, up=30, k_up=0.15, down=15, k_down=0.15, stubble=0.26),
    "potato":       dict(soil=0.14, start=0.14, peak=0.78, sow=134, harvest=260, up=40, k_up=0.11, down=24, k_down=0.10, stubble=0.18),
    "winter_wheat": dict(soil=0.16, start=0.42, peak=0.88, sow=-112, harvest=222, up=-2, k_up=0.10, down=20, k_down=0.14, stubble=0.24),
}
CROP_SHARE = {"barley": 0.34, "spring_wheat": 0.2, "oats": 0.22, "potato": 0.08, "winter_wheat": 0.16}
# Regions from south to north: later and slightly lower seasons further north.
REGIONS = {"NO-Vestfold": (0.0, 1.0), "NO-Romerike": (3.0, 0.99), "NO-Hedmarken": (6.0, 0.98),
           "NO-Trondelag": (10.0, 0.96)}
TIMING_SD = 2.5  # days: per-field jitter of sowing and harvest
PEAK_SD = 0.02  # per-field jitter of the plateau NDVI
# A history year's weather, shared by every field of a region x crop that year: the whole season
# shifted by a few days (a late spring) and the plateau scaled (a dry or a lush summer).
YEAR_TIMING_SD = 3.0
YEAR_PEAK_SD = 0.05
WINTER_GREENUP_DOY = 110  # half green-up of overwintered wheat


def _logistic(t, mid, k):
    return 1.0 / (1.0 + np.exp(-k * (t - mid)))


def draw_field_params(rng, crop, region, n):
    """n fields' (sowing, harvest, peak) days/values for one crop and region, healthy distribution."""
    c = CROPS[crop]
    shift, peak_factor = REGIONS[region]
    sow = c["sow"] + (shift if c["sow"] > 0 else 0.0) + rng.normal(0, TIMING_SD, n)
    harvest = c["harvest"] + shift + rng.normal(0, TIMING_SD, n)
    peak = c["peak"] * peak_factor + rng.normal(0, PEAK_SD, n)
    return sow, harvest, peak


def draw_year_effects(rng, n):
    """n history years' (timing shift in days, plateau factor) for one region x crop."""
    return rng.normal(0, YEAR_TIMING_SD, n), np.clip(rng.normal(1.0, YEAR_PEAK_SD, n), 0.7, 1.2)


def healthy_curve(crop, t, sow, harvest, peak, region):
    """NDVI of healthy fields at days t: arrays (n_fields, n_dates) for per-field sow/harvest/peak."""
    c = CROPS[crop]
    t = np.asarray(t, dtype=np.float64)[None, :]
    sow, harvest, peak = (np.asarray(a, dtype=np.float64)[:, None] for a in (sow, harvest, peak))
    if c["sow"] > 0:
        up = _logistic(t, sow + c["up"], c["k_up"])
        base = c["soil"]
    else:
        up = _logistic(t, WINTER_GREENUP_DOY + REGIONS[region][0], c["k_up"])
        base = c["start"]
    green = base + (peak - base) * up
    down = _logistic(t, harvest - c["down"], c["k_down"])
    ndvi = green - (green - c["soil"]) * down
    return np.where(t < harvest, ndvi, c["stubble"])


def hail_factor(t, t_hail, severity, recovery=0.35, tau=15.0):
    """Multiplier of the green part after hail at t_hail: lose `severity`, regain part slowly."""
    t = np.asarray(t, dtype=np.float64)
    since = np.maximum(t - t_hail, 0.0)
    loss = severity * (1.0 - recovery * (1.0 - np.exp(-since / tau)))
    return np.where(t >= t_hail, 1.0 - loss, 1.0)


DROUGHT_LEVELS = {1: 0.40, 2: 0.55, 3: 0.70}  # level → final loss of the green part
DROUGHT_RAMP_DAYS = 15.0


def drought_factor(t, t_onset, level):
    t = np.asarray(t, dtype=np.float64)
    return 1.0 - DROUGHT_LEVELS[level] * np.clip((t - t_onset) / DROUGHT_RAMP_DAYS, 0.0, 1.0)


def damaged_curve(healthy, soil, factor, t, harvest):
    """Apply a damage factor to the green part (above soil) before harvest."""
    t = np.asarray(t, dtype=np.float64)
    damaged = soil + (healthy - soil) * factor
    return np.where(t < harvest, damaged, healthy)
