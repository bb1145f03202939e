"""Area-unit contracts: one index and payout per region × crop from its fields' curves (hand-computed)."""

import datetime as dt

import numpy as np
import pytest

from app.sure2.units import FieldCurve, assess_unit, unit_curve

START = dt.date(2025, 6, 1)
DATES = [START + dt.timedelta(days=10 * k) for k in range(5)]  # 1 Jun … 11 Jul
DAYS = np.array([d.toordinal() for d in DATES], dtype=float)
CONTRACT = {"region_id": "NO-Test", "crop": "oats", "index": "ndvi_integral", "trigger": 0.05, "exit": 0.25,
            "insured_sum": 40_000.0, "currency": "NOK", "sowing_date": DATES[0], "harvest_date": DATES[-1]}


def _field(fid, area, value, days=DAYS, base=0.5):
    return FieldCurve(fid, area, days, np.full(len(days), value), np.full(len(days), base))


def test_hand_computed_unit():
    # A: 1 ha at NDVI 0.6, B: 3 ha at 0.4, baseline 0.5 → unit curve (0.6 + 3 × 0.4) / 4 = 0.45,
    # index 1 − 0.45 / 0.5 = 0.1; fraction (0.1 − 0.05) / (0.25 − 0.05) = 0.25 of 40 000 NOK = 10 000 NOK
    members = [_field("A", 1.0, 0.6), _field("B", 3.0, 0.4)]
    result = assess_unit(CONTRACT, members, n_fields=2, area_ha=4.0, history_entry=None)
    assert result["status"] == "assessed" and result["unit_id"] == "NO-Test/oats"
    np.testing.assert_allclose(result["ndvi_smooth"], 0.45)
    pay = result["payout"]
    assert pay["index_value"] == pytest.approx(0.1, abs=1e-12)
    assert (pay["fraction"], pay["amount_cents"], pay["amount"]) == (0.25, 1_000_000, 10_000.0)
    assert (result["n_assessed"], result["assessed_area_ha"], result["dates"]) == (2, 4.0, DATES)


def test_fields_on_other_dates_count_where_they_have_dates():
    # C is observed on days 5 later than A: the unit takes the union of dates, each field interpolated
    # inside its own dates only (C's first and A's last date have one field each)
    a = FieldCurve("A", 1.0, DAYS, np.array([0.2, 0.4, 0.6, 0.8, 1.0]), np.full(5, 0.5))
    c = FieldCurve("C", 1.0, DAYS + 5, np.array([0.3, 0.5, 0.7, 0.9, 1.1]), np.full(5, 0.5))
    days, curve, base, weight = unit_curve([a, c])
    assert len(days) == 10 and weight.tolist() == [1, 2, 2, 2, 2, 2, 2, 2, 2, 1]
    np.testing.assert_allclose(curve, [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1])
    np.testing.assert_allclose(base, 0.5)


def test_percentile_unit_on_a_hand_built_history():
    # history years flat at 0.5 × (1 − s), s = 0, 0.02, …, 0.18 (days of year of the dates): the 20th and
    # 1st percentiles are the shortfalls 0.144 and 0.1782 (tests/sure2/test_terms.py); unit index 0.1 → no pay,
    # NDVI percentile: between the years at 0.10 (rank 4 of 9 from the worst) and 0.08 → exactly rank 4
    doy = np.array([d.timetuple().tm_yday for d in DATES], dtype=float)
    shortfalls = [0.02 * k for k in range(10)]
    entry = (np.arange(2015, 2025), doy, np.array([[0.5 * (1 - s)] * 5 for s in shortfalls]))
    contract = {**CONTRACT, "trigger": None, "exit": None, "trigger_percentile": 20.0, "exit_percentile": 1.0}
    members = [_field("A", 1.0, 0.6), _field("B", 3.0, 0.4)]
    result = assess_unit(contract, members, 2, 4.0, entry)
    pay = result["payout"]
    assert (pay["trigger"], pay["exit"], pay["amount_cents"]) == (0.144, 0.1782, 0)
    assert pay["percentile"] == pytest.approx(100 * 4 / 9, abs=1e-4)
    poor = assess_unit(contract, [_field("A", 4.0, 0.42)], 1, 4.0, entry)["payout"]  # index 0.16
    assert (poor["fraction"], poor["amount_cents"]) == (0.467836, 1_871_344)  # 0.467836 × 4 000 000 cents


def test_unit_outcomes():
    members = [_field("A", 1.0, 0.6)]
    few = assess_unit(CONTRACT, members, n_fields=3, area_ha=4.0, history_entry=None)
    assert (few["status"], few["reason"]) == ("insufficient_data", "partial_coverage")  # 1 of 4 ha assessed
    assert few["payout"] is None
    none = assess_unit(CONTRACT, [], 2, 4.0, None)
    assert (none["status"], none["reason"]) == ("insufficient_data", "too_few_observations")
    bad = assess_unit({**CONTRACT, "trigger": 0.3}, members, 1, 1.0, None)
    assert (bad["status"], bad["reason"]) == ("not_assessable", "bad_contract")
    pct = {**CONTRACT, "trigger": None, "exit": None, "trigger_percentile": 20.0, "exit_percentile": 1.0}
    no_history = assess_unit(pct, members, 1, 1.0, None)
    assert (no_history["status"], no_history["reason"]) == ("not_assessable", "no_baseline")
