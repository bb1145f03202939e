"""Area-unit contracts: one index and one payout per region × crop, priced on an area, not a field.

units.parquet (season directory, optional; the generator writes one): one row per insured unit with
region_id, crop, index (ndvi_integral | ndvi_peak), its terms (fixed trigger/exit, or percentiles of
the unit's history: app.sure2.terms), insured_sum, currency, sowing_date and harvest_date (the window
the unit's index is read over).

A unit's curve is the area-weighted mean of its assessed fields' smoothed curves (`ndvi_smooth` of
their outputs); each field's curve is interpolated linearly to the unit's dates (the union of its
fields' dates) and counts only inside its own dates. The baseline is the same weighted mean of the
fields' `baseline_mean`. The index, terms and money are exactly a field's (app.sure2.terms, history from
app.sure2.history). A unit whose assessed fields hold less than UNIT_MIN_AREA_SHARE of its fields' area
is insufficient_data: its curve would speak for too little of the area insured.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from app.errors import EnvironmentFailure
from app.sure2.history import season_history, yearly_shortfalls
from app.sure2.outcome import ASSESSED, FieldOutcome
from app.sure2.payout import shortfall
from app.sure2.terms import check_contract, day_number, payout_record

UNITS = "units.parquet"
UNIT_MIN_AREA_SHARE = 0.5
CONTRACT_COLUMNS = ("region_id", "crop", "index", "insured_sum", "currency", "sowing_date", "harvest_date")


@dataclass(frozen=True)
class FieldCurve:
    """What a unit takes from one assessed field's output."""

    field_id: str
    area_ha: float
    days: np.ndarray  # day numbers (proleptic ordinals) of the field's dates
    smooth: np.ndarray
    baseline: np.ndarray


def unit_id(region_id: str, crop: str) -> str:
    return f"{region_id}/{crop}"


def read_units(data_dir) -> list[dict]:
    """The season's unit contracts ([] when it has none); EnvironmentFailure if the file is unreadable."""
    path = Path(data_dir) / UNITS
    if not path.exists():
        return []
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:
        raise EnvironmentFailure(f"season {data_dir}: {UNITS} is not readable: {exc}") from exc


def field_curve(fid: str, area_ha, days, smooth, baseline) -> FieldCurve | None:
    """A field's FieldCurve from its output's columns (day numbers; NaN where null), on the dates with
    both a curve and a baseline; None when fewer than 2 such dates are left."""
    smooth, baseline = np.asarray(smooth, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    keep = np.isfinite(smooth) & np.isfinite(baseline)
    if keep.sum() < 2:
        return None
    return FieldCurve(fid, float(area_ha), np.asarray(days, dtype=np.float64)[keep], smooth[keep], baseline[keep])


def day_numbers(dates) -> np.ndarray:
    """Dates (date objects or numpy datetime64[D]) as day numbers (proleptic ordinals, float)."""
    as_days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    return (as_days + dt.date(1970, 1, 1).toordinal()).astype(np.float64)


def assess_units(season, curves: dict) -> list[dict]:
    """The result of every unit contract of the season ([] without units.parquet); `curves`: field_id →
    FieldCurve of the assessed fields (the others are counted in the unit's fields and area only)."""
    contracts = read_units(season.data_dir)
    if not contracts:
        return []
    cat = season.columns(("region_id", "crop", "area_ha"))
    members, n_fields, area = {}, {}, {}
    for fid, region, crop, area_ha in zip(season.field_ids, cat["region_id"], cat["crop"], cat["area_ha"]):
        key = (region, crop)
        n_fields[key] = n_fields.get(key, 0) + 1
        area[key] = area.get(key, 0.0) + float(area_ha or 0.0)
        if curves.get(fid) is not None:
            members.setdefault(key, []).append(curves[fid])
    history = season_history(str(season.data_dir))
    keys = [(c["region_id"], c["crop"]) for c in contracts]
    return [assess_unit(c, members.get(k, []), n_fields.get(k, 0), area.get(k, 0.0), history.get(k))
            for c, k in zip(contracts, keys)]


def unit_curve(members: list[FieldCurve]):
    """(days, area-weighted curve, area-weighted baseline, area weight per day) over the union of dates."""
    days = np.unique(np.concatenate([m.days for m in members]))
    total = np.zeros(len(days))
    curve = np.zeros(len(days))
    base = np.zeros(len(days))
    for m in members:
        inside = (days >= m.days[0]) & (days <= m.days[-1])
        total += m.area_ha * inside
        curve += m.area_ha * np.where(inside, np.interp(days, m.days, m.smooth), 0.0)
        base += m.area_ha * np.where(inside, np.interp(days, m.days, m.baseline), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return days, curve / total, base / total, total


def assess_unit(contract: dict, members: list[FieldCurve], n_fields: int, area_ha: float,
                history_entry) -> dict:
    """The unit's result: status, reason, detail, its curve, and the payout record when assessed.

    members: its assessed fields; n_fields, area_ha: all of its insured fields (assessed or not)."""
    uid = unit_id(contract["region_id"], contract["crop"])
    assessed_area = float(sum(m.area_ha for m in members))
    out = {"unit_id": uid, "region_id": contract["region_id"], "crop": contract["crop"], "n_fields": n_fields,
           "n_assessed": len(members), "area_ha": round(area_ha, 4), "assessed_area_ha": round(assessed_area, 4),
           "dates": [], "ndvi_smooth": [], "baseline_mean": [], "payout": None}
    try:
        terms = check_contract(contract, CONTRACT_COLUMNS)
        if not members:
            raise FieldOutcome("too_few_observations", "none of the unit's fields is assessed")
        if area_ha <= 0 or assessed_area < UNIT_MIN_AREA_SHARE * area_ha:
            raise FieldOutcome("partial_coverage", f"assessed fields hold {assessed_area:.1f} of {area_ha:.1f} ha "
                               f"(< {UNIT_MIN_AREA_SHARE:.0%})")
        days, curve, base, _ = unit_curve(members)
        out.update(dates=[dt.date.fromordinal(int(d)) for d in days], ndvi_smooth=curve.tolist(),
                   baseline_mean=base.tolist())
        sowing, harvest = day_number(contract["sowing_date"]), day_number(contract["harvest_date"])
        window = (days >= sowing) & (days <= harvest)
        if not window.any() or np.isnan(curve[window]).any():
            raise FieldOutcome("too_few_observations", "the fields' curves do not cover the unit's window")
        doy = np.array([dt.date.fromordinal(int(d)).timetuple().tm_yday for d in days], dtype=np.float64)
        value = shortfall(contract["index"], days, curve, base, sowing, harvest)
        history = yearly_shortfalls(history_entry, contract["index"], doy, days, base, sowing, harvest)
        out["payout"] = payout_record(terms, contract["index"], value, history, contract["insured_sum"],
                                      contract["currency"], f"unit {uid}")
        out.update(status=ASSESSED, reason="", detail="")
    except FieldOutcome as outcome:
        out.update(status=outcome.status, reason=outcome.reason, detail=outcome.detail)
    return out

