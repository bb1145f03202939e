"""Payout and loss index against hand-computed cases."""

import numpy as np
import pytest

from app.sure2.payout import loss_index, payout_amount, payout_fraction

# index, trigger, exit, insured sum → payout (hand-computed)
CASES = [
    (0.00, 0.10, 0.50, 10_000, 0.00),  # no loss
    (0.10, 0.10, 0.50, 10_000, 0.00),  # exactly at trigger
    (0.20, 0.10, 0.50, 10_000, 2_500.00),  # a quarter of the way
    (0.30, 0.10, 0.50, 10_000, 5_000.00),  # half
    (0.50, 0.10, 0.50, 10_000, 10_000.00),  # at exit: the insured sum
    (0.90, 0.10, 0.50, 10_000, 10_000.00),  # beyond exit: capped
    (0.13, 0.12, 0.60, 48_000, 1_000.00),  # 0.01 / 0.48 of 48 000
    (0.333, 0.15, 0.40, 1_234.56, 903.70),  # 0.183 / 0.25 = 0.732 → 903.698... → cents
]


@pytest.mark.parametrize("index,trigger,exit_,insured,expected", CASES)
def test_payout_table(index, trigger, exit_, insured, expected):
    assert payout_amount(index, trigger, exit_, insured) == pytest.approx(expected, abs=0.005)


def test_payout_fraction_bounds_and_contract_check():
    assert payout_fraction(-1.0, 0.1, 0.5) == 0.0
    assert payout_fraction(2.0, 0.1, 0.5) == 1.0
    with pytest.raises(ValueError):
        payout_fraction(0.3, 0.5, 0.5)


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


def test_unknown_index_is_rejected():
    with pytest.raises(ValueError):
        loss_index("yield", DAYS, DAYS, DAYS, 0.0, 1.0)
