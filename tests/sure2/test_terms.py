"""Contract terms from the historical index distribution, on hand-built histories (hand-computed)."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.sure2.history import read_history, yearly_shortfalls
from app.sure2.outcome import FieldOutcome
from app.sure2.terms import payout_record, percentile_terms, season_percentile, terms_of

# ten history years whose shortfall (index) is 0.00, 0.02, ..., 0.18
HISTORY = [0.02 * k for k in range(10)]


def test_percentile_terms_hand_computed():
    # NDVI ranks: performance = −shortfall, sorted −0.18 … 0.00; numpy's linear rule, h = (n − 1) p:
    # 20th: h = 1.8 → −0.16 + 0.8 × 0.02 = −0.144 → trigger 0.144;  1st: h = 0.09 → −0.1782 → exit 0.1782
    assert percentile_terms(HISTORY, 20, 1) == (0.144, 0.1782)
    assert percentile_terms(HISTORY[::-1], 20, 1) == (0.144, 0.1782)  # order of years does not matter
    assert percentile_terms(HISTORY, 50, 0) == (0.09, 0.18)


@pytest.mark.parametrize("value,percentile", [(0.144, 20.0), (0.18, 0.0), (0.25, 0.0), (-0.1, 100.0),
                                              (0.09, 50.0), (0.0, 100.0), (0.1782, 1.0)])
def test_season_percentile_hand_computed(value, percentile):
    assert season_percentile(HISTORY, value) == pytest.approx(percentile, abs=1e-9)


def test_pays_exactly_below_the_trigger_percentile():
    terms = {"terms": "percentile", "trigger_percentile": 20.0, "exit_percentile": 1.0}
    for value in np.linspace(-0.05, 0.25, 301):
        record = payout_record(terms, "ndvi_integral", float(value), HISTORY, 10_000, "NOK", "test unit")
        assert (record["fraction"] > 0) == (record["percentile"] < 20.0 and record["index_value"] > 0.144)


def test_percentile_payout_record_hand_computed():
    terms = {"terms": "percentile", "trigger_percentile": 20.0, "exit_percentile": 1.0}
    record = payout_record(terms, "ndvi_integral", 0.16, HISTORY, 10_000, "NOK", "test unit")
    # (0.16 − 0.144) / (0.1782 − 0.144) = 0.016 / 0.0342 = 0.46783625… → 0.467836 × 1 000 000 cents
    assert (record["trigger"], record["exit"], record["fraction"]) == (0.144, 0.1782, 0.467836)
    assert record["amount_cents"] == 467_836 and record["amount"] == 4678.36
    assert record["percentile"] == pytest.approx(100 / 9, abs=1e-4)  # 0.16 is the 2nd-worst of 10 years: rank 1 of 9
    assert record["history_years"] == 10 and record["terms"] == "percentile"
    # a better-than-normal season keeps its sign (percentile terms read the signed shortfall)
    assert payout_record(terms, "ndvi_integral", -0.03, HISTORY, 10_000, "NOK", "u")["index_value"] == -0.03


def test_fixed_terms_record_the_percentile_when_history_exists():
    terms = {"terms": "fixed", "trigger": 0.1, "exit": 0.5}
    record = payout_record(terms, "ndvi_peak", 0.3, HISTORY, 10_000, "NOK", "u")
    assert record["fraction"] == 0.5 and record["amount_cents"] == 500_000 and record["percentile"] == 0.0
    record = payout_record(terms, "ndvi_peak", -0.2, None, 10_000, "NOK", "u")
    assert record["index_value"] == 0.0 and record["percentile"] is None and record["history_years"] == 0


def test_percentile_terms_need_a_history_that_separates_them():
    terms = {"terms": "percentile", "trigger_percentile": 20.0, "exit_percentile": 1.0}
    with pytest.raises(FieldOutcome, match="5 history years") as short:
        payout_record(terms, "ndvi_integral", 0.1, HISTORY[:4], 1000, "NOK", "u")
    assert short.value.reason == "no_baseline"
    with pytest.raises(FieldOutcome, match="does not separate"):
        payout_record(terms, "ndvi_integral", 0.1, [0.05] * 10, 1000, "NOK", "u")
    with pytest.raises(FieldOutcome):
        payout_record(terms, "ndvi_integral", 0.1, None, 1000, "NOK", "u")


@pytest.mark.parametrize("row,problem", [
    ({"trigger": 0.1, "exit": 0.5, "trigger_percentile": 20.0, "exit_percentile": 1.0}, "both"),
    ({"trigger_percentile": 20.0}, "both trigger_percentile and exit_percentile"),
    ({"trigger_percentile": 1.0, "exit_percentile": 20.0}, "0 <= exit_percentile < trigger_percentile <= 100"),
    ({"trigger_percentile": 120.0, "exit_percentile": 1.0}, "<= 100"),
    ({"trigger": 0.5, "exit": 0.3}, "0 <= trigger < exit"),
    ({"trigger": 0.1}, "missing exit"),
    ({}, "missing trigger, exit"),
])
def test_bad_terms_are_named(row, problem):
    terms, problems = terms_of(row)
    assert terms is None and len(problems) == 1 and problem in problems[0]


def test_terms_of_a_valid_row():
    assert terms_of({"trigger": 0.1, "exit": 0.4, "trigger_percentile": None}) == (
        {"terms": "fixed", "trigger": 0.1, "exit": 0.4}, [])
    assert terms_of({"trigger_percentile": 20, "exit_percentile": 1}) == (
        {"terms": "percentile", "trigger_percentile": 20.0, "exit_percentile": 1.0}, [])


def test_history_file_gives_each_years_index_for_the_window(tmp_path):
    # baseline flat 0.5; year y's curve flat 0.5 × (1 − s_y): its integral shortfall is exactly s_y
    doy = np.arange(100, 200, 5)
    rows = [("R", "oats", 2015 + k, int(d), 0.5 * (1 - s)) for k, s in enumerate(HISTORY) for d in doy]
    rows += [("R", "oats", 2030, int(d), 0.1) for d in doy if d < 150]  # a year that misses the window's end
    rows += [("Q", "oats", 2015, 100, 0.3)]
    table = pa.table(list(zip(*rows)), names=["region_id", "crop", "year", "doy", "ndvi_mean"])
    pq.write_table(table, tmp_path / "history.parquet")
    history = read_history(tmp_path / "history.parquet")
    assert sorted(history) == [("Q", "oats"), ("R", "oats")]
    dates = [dt.date(2025, 4, 15) + dt.timedelta(days=5 * k) for k in range(15)]  # doy 105 … 175
    days = np.array([d.toordinal() for d in dates], dtype=float)
    stack_doy = np.array([d.timetuple().tm_yday for d in dates], dtype=float)
    base = np.full(len(days), 0.5)
    got = yearly_shortfalls(history[("R", "oats")], "ndvi_integral", stack_doy, days, base, days[2], days[-3])
    np.testing.assert_allclose(got, HISTORY, atol=1e-12)  # 2030 left out: its curve stops at doy 145
    peak = yearly_shortfalls(history[("R", "oats")], "ndvi_peak", stack_doy, days, base, days[2], days[5])
    np.testing.assert_allclose(peak, HISTORY + [0.8], atol=1e-12)  # the window ends before 2030's gap
    assert yearly_shortfalls(None, "ndvi_peak", stack_doy, days, base, days[0], days[-1]) is None
