"""Contract terms and the payout record: fixed loss fractions, or percentiles of the historical index.

A contract (a field's row of fields.parquet, or an area unit's row of units.parquet) gives exactly one pair:
  fixed       `trigger`, `exit`: loss-index fractions, 0 ≤ trigger < exit. Index = the shortfall against
              the baseline floored at 0 (app.sure2.payout.loss_index).
  percentile  `trigger_percentile`, `exit_percentile`, in percent, 0 ≤ exit_percentile < trigger_percentile
              ≤ 100 (e.g. 20 and 1, as NDVI index insurance in Kenya and Ethiopia prices it): pays when this
              season ranks below the trigger_percentile-th percentile of the region × crop's history years,
              in full at the exit_percentile-th. Ranks are by NDVI (low = bad). The index is the *signed*
              shortfall, since the history's percentiles may lie on either side of the baseline mean.

Percentiles are numpy's default linear interpolation between order statistics (Hyndman & Fan type 7)
over the history years' index for the same window. This season's percentile (recorded whenever the
history has the unit) is the inverse of that same piecewise-linear function, clipped to [0, 100], so
"percentile < trigger_percentile" and "index > trigger" are the same decision.

Money stays exact: derived trigger and exit are rounded to 6 decimals first and the payout is computed
from the rounded values (app.sure2.payout), so the record reproduces the amount.
"""

import datetime as dt
import math
from typing import Any

import numpy as np

from app.sure2.outcome import FieldOutcome
from app.sure2.payout import INDEX_KINDS, payout

FIXED, PERCENTILE = "fixed", "percentile"
FIXED_COLUMNS = ("trigger", "exit")
PERCENTILE_COLUMNS = ("trigger_percentile", "exit_percentile")
TERM_DIGITS = 6
MIN_HISTORY_YEARS = 5  # fewer years make the 1st or 20th percentile a guess (as `app.season baseline --min-years`)


def terms_of(row: dict) -> tuple[dict | None, list]:
    """(terms, problems): {"terms": fixed|percentile, ...the pair} or None with what is wrong."""
    fixed: list[Any] = [row.get(c) for c in FIXED_COLUMNS]
    pct: list[Any] = [row.get(c) for c in PERCENTILE_COLUMNS]
    given_fixed, given_pct = any(v is not None for v in fixed), any(v is not None for v in pct)
    if given_fixed and given_pct:
        return None, ["both fixed (trigger, exit) and percentile terms given: a contract has one pair"]
    if given_pct:
        if None in pct:
            return None, ["percentile terms need both trigger_percentile and exit_percentile"]
        trigger, exit_ = pct
        if not (all(map(math.isfinite, pct)) and 0 <= exit_ < trigger <= 100):
            return None, [f"trigger_percentile {trigger} and exit_percentile {exit_} must satisfy "
                          "0 <= exit_percentile < trigger_percentile <= 100"]
        return {"terms": PERCENTILE, "trigger_percentile": float(trigger), "exit_percentile": float(exit_)}, []
    if None in fixed:
        return None, [f"missing {', '.join(c for c, v in zip(FIXED_COLUMNS, fixed) if v is None)}"]
    trigger, exit_ = fixed
    if not (all(map(math.isfinite, fixed)) and 0 <= trigger < exit_):
        return None, [f"trigger {trigger} and exit {exit_} must satisfy 0 <= trigger < exit"]
    return {"terms": FIXED, "trigger": float(trigger), "exit": float(exit_)}, []


def check_contract(row: dict, required, note: str = "") -> dict:
    """The contract's terms; FieldOutcome("bad_contract") naming what is wrong (`note`: appended, e.g.
    the import's note). `required`: the columns the contract must fill besides its terms; the checks
    below need index, insured_sum, sowing_date and harvest_date among them."""
    missing = [c for c in required if row.get(c) is None]
    if missing:
        raise FieldOutcome("bad_contract", f"missing {', '.join(missing)}{note}")
    terms, problems = terms_of(row)
    if row["index"] not in INDEX_KINDS:
        problems.append(f"index {row['index']!r} is not one of {', '.join(INDEX_KINDS)}")
    insured = row["insured_sum"]
    if not (math.isfinite(insured) and insured > 0):
        problems.append(f"insured sum {insured} must be > 0")
    if day_number(row["sowing_date"]) >= day_number(row["harvest_date"]):
        problems.append(f"sowing {row['sowing_date']} is not before harvest {row['harvest_date']}")
    if problems or terms is None:
        raise FieldOutcome("bad_contract", "; ".join(problems) + note)
    return terms


def day_number(value) -> float:
    """A date (or ISO text) as its day number (proleptic ordinal, float), the assessment's time axis."""
    return float((value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))).toordinal())


def percentile_terms(history_shortfalls, trigger_percentile, exit_percentile) -> tuple[float, float]:
    """(trigger, exit) as shortfalls: the history's NDVI percentiles, turned into index values."""
    performance = -np.asarray(history_shortfalls, dtype=np.float64)
    trigger = -float(np.quantile(performance, trigger_percentile / 100))
    exit_ = -float(np.quantile(performance, exit_percentile / 100))
    return round(trigger, TERM_DIGITS), round(exit_, TERM_DIGITS)


def season_percentile(history_shortfalls, value) -> float:
    """Where this season's shortfall ranks among the history years, as an NDVI percentile (0 = worst)."""
    performance = np.sort(-np.asarray(history_shortfalls, dtype=np.float64))
    ranks = 100 * np.arange(len(performance)) / (len(performance) - 1)
    return float(np.interp(-value, performance, ranks))


def payout_record(terms: dict, index_kind: str, value: float, history, insured_sum, currency,
                  what: str) -> dict:
    """The output's payout record for a shortfall `value`; `history` = the history years' shortfalls
    for the same window (None when the season has no history for the unit).

    Raises FieldOutcome("no_baseline") when percentile terms cannot be priced on the history (`what`
    names the unit in the message)."""
    have_history = history is not None and len(history) >= 2
    if terms["terms"] == PERCENTILE:
        years = 0 if history is None else len(history)
        if years < MIN_HISTORY_YEARS:
            raise FieldOutcome("no_baseline", f"percentile terms need {MIN_HISTORY_YEARS} history years of {what} "
                               f"covering its window, history.parquet has {years}")
        trigger, exit_ = percentile_terms(history, terms["trigger_percentile"], terms["exit_percentile"])
        if not exit_ > trigger:
            raise FieldOutcome("no_baseline", f"the history of {what} does not separate the "
                               f"{terms['exit_percentile']:g}th and {terms['trigger_percentile']:g}th percentiles")
        index = value
    else:
        trigger, exit_, index = terms["trigger"], terms["exit"], max(0.0, value)
    money = payout(index, trigger, exit_, insured_sum)
    record = {"index": index_kind, "index_value": round(index, TERM_DIGITS), **terms, "trigger": trigger,
              "exit": exit_, **money, "insured_sum": insured_sum, "currency": currency,
              "percentile": round(season_percentile(history, value), 4) if have_history else None,
              "history_years": len(history) if history is not None else 0}
    return record
