"""Payout and loss index against hand-computed cases; the money path is exact in integer cents."""

import json
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from app.sure2.payout import loss_index, payout, payout_cents, payout_fraction, to_cents

# index, trigger, exit, insured sum → payout in cents (hand-computed)
CASES = [
    (0.00, 0.10, 0.50, 10_000, 0),  # no loss
    (0.10, 0.10, 0.50, 10_000, 0),  # exactly at trigger
    (0.20, 0.10, 0.50, 10_000, 250_000),  # a quarter of the way
    (0.30, 0.10, 0.50, 10_000, 500_000),  # half
    (0.50, 0.10, 0.50, 10_000, 1_000_000),  # at exit: the insured sum
    (0.90, 0.10, 0.50, 10_000, 1_000_000),  # beyond exit: capped
    (0.13, 0.12, 0.60, 48_000, 99_998),  # 0.01 / 0.48 = 0.0208333… → 0.020833 × 4 800 000 = 99 998.4
    (0.333, 0.15, 0.40, 1_234.56, 90_370),  # 0.183 / 0.25 = 0.732 → 0.732 × 123 456 = 90 369.792 → 90 370
    # half a cent: 0.5 × 101 cents = 50.5 → ROUND_HALF_UP → 51
    (0.30, 0.10, 0.50, 1.01, 51),
    # 10 M NOK: 0.123457 (6 decimals) × 1 000 000 000 cents = 123 457 000 exactly (no float drift)
    (0.10 + 0.123457 * 0.40, 0.10, 0.50, 10_000_000, 123_457_000),
    # an insured sum with fractions of a cent is first rounded to cents (half up): 0.005 NOK → 1 cent
    (0.50, 0.10, 0.50, 0.005, 1),
]


@pytest.mark.parametrize("index,trigger,exit_,insured,cents", CASES)
def test_payout_table(index, trigger, exit_, insured, cents):
    record = payout(index, trigger, exit_, insured)
    assert record["amount_cents"] == cents
    assert record["amount"] == cents / 100
    # the recorded fraction (as JSON text, as outputs store it) reproduces the amount exactly
    fraction = json.loads(json.dumps(record["fraction"]))
    expected = (Decimal(record["insured_sum_cents"]) * Decimal(str(fraction))).quantize(Decimal(1), ROUND_HALF_UP)
    assert payout_cents(record["insured_sum_cents"], fraction) == int(expected) == cents


def test_fraction_is_rounded_half_up_to_six_decimals():
    assert payout_fraction(0.10 + 0.0000125 * 0.4, 0.10, 0.50) == 0.000013  # 0.0000125 → 0.000013
    assert payout_fraction(-1.0, 0.1, 0.5) == 0.0
    assert payout_fraction(2.0, 0.1, 0.5) == 1.0
    assert to_cents(0.015) == 2 and to_cents(10_000_000) == 1_000_000_000


@pytest.mark.parametrize("raw, half_up", [(1.25e-05, 0.000013), (2.5e-06, 0.000003), (5e-07, 0.000001)])
def test_fraction_at_an_exact_tie_rounds_half_up(raw, half_up):
    """Ties exact in the float's shortest text (trigger 0, exit 1: the fraction is the index itself),
    where ROUND_HALF_EVEN would round down."""
    assert Decimal(repr(raw)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN) < Decimal(repr(half_up))
    assert payout_fraction(raw, 0.0, 1.0) == half_up


def test_cents_at_an_exact_tie_round_half_up():
    assert to_cents(0.025) == 3 and to_cents(0.125) == 13  # half-even: 2 and 12
    assert payout_cents(1, 0.5) == 1 and payout_cents(5, 0.5) == 3  # 0.5 → 1, 2.5 → 3 (half-even: 0, 2)


def test_contract_and_nan_checks():
    with pytest.raises(ValueError, match="exceed trigger"):
        payout_fraction(0.3, 0.5, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        payout_fraction(float("nan"), 0.1, 0.5)


DAYS = np.arange(0.0, 100.0, 5.0)


def test_integral_index_of_a_scaled_curve():
    base = np.full(len(DAYS), 0.8)
    # 0.6 over the whole window against 0.8: loss 1 - 0.6/0.8 = 0.25
    assert loss_index("ndvi_integral", DAYS, base * 0.75, base, 10.0, 80.0) == pytest.approx(0.25)
    # better than normal is no loss
    assert loss_index("ndvi_integral", DAYS, base * 1.1, base, 10.0, 80.0) == 0.0


def test_integral_index_counts_only_the_sowing_to_harvest_window():
    base = np.full(len(DAYS), 0.5)
    field = base.copy()
    field[DAYS > 50] = 0.0  # collapse after day 50, but the window ends at 50
    assert loss_index("ndvi_integral", DAYS, field, base, 0.0, 50.0) == pytest.approx(0.0)
    # window 0..90: field 0.5 on [0,50], linear to 0 on [50,55], 0 after → ∫ = 25 + 1.25 = 26.25 of 45
    assert loss_index("ndvi_integral", DAYS, field, base, 0.0, 90.0) == pytest.approx(1 - 26.25 / 45)


def test_peak_index():
    base = 0.2 + 0.6 * np.exp(-((DAYS - 50) / 20) ** 2)
    field = 0.2 + 0.45 * np.exp(-((DAYS - 50) / 20) ** 2)
    assert loss_index("ndvi_peak", DAYS, field, base, 0.0, 95.0) == pytest.approx(1 - 0.65 / 0.8)


def test_a_nan_index_is_an_error_not_a_silent_zero():
    base = np.full(len(DAYS), 0.8)
    field = base.copy()
    field[3] = np.nan
    for kind in ("ndvi_integral", "ndvi_peak"):
        with pytest.raises(ValueError, match="NaN"):
            loss_index(kind, DAYS, field, base, 0.0, 95.0)


def test_unknown_index_is_rejected():
    with pytest.raises(ValueError):
        loss_index("yield", DAYS, DAYS, DAYS, 0.0, 1.0)
