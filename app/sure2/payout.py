"""Index insurance: a loss index from the season, paid linearly between trigger and exit.

The money path is exact and reproducible from what an output records:
  fraction     = clip((index − trigger) / (exit − trigger), 0, 1), rounded to FRACTION_DIGITS decimals
                 ROUND_HALF_UP (the recorded `fraction`, a JSON number whose text is those digits);
  insured      = the insured sum in integer cents (ROUND_HALF_UP of sum × 100);
  amount_cents = insured × fraction, rounded ROUND_HALF_UP to a whole cent (decimal arithmetic, no float).
So `payout_cents(insured_sum_cents, recorded fraction)` reproduces `amount_cents` exactly.
"""

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from app.sure2.science import window_integral

INDEX_KINDS = ("ndvi_integral", "ndvi_peak")
FRACTION_DIGITS = 6
_FRACTION_QUANTUM = Decimal(1).scaleb(-FRACTION_DIGITS)


def shortfall(kind, days, smoothed, base_mean, sowing, harvest):
    """Signed relative shortfall against the baseline over the sowing→harvest window (0 = normal,
    negative = better than normal): a float, or one per row of a 2-D `smoothed` (curves on `days`).

    ndvi_integral: 1 − ∫NDVI / ∫baseline;  ndvi_peak: 1 − peak NDVI / baseline peak.
    A NaN (NaN in the curves) raises: it must never pass as "no loss".
    """
    smoothed = np.asarray(smoothed, dtype=np.float64)
    if kind == "ndvi_integral":
        field = window_integral(days, smoothed, sowing, harvest)
        normal = window_integral(days, base_mean, sowing, harvest)
    elif kind == "ndvi_peak":
        win = (days >= sowing) & (days <= harvest)
        if not win.any():
            return 0.0 if smoothed.ndim == 1 else np.zeros(smoothed.shape[0])
        field, normal = smoothed[..., win].max(axis=-1), float(base_mean[win].max())
    else:
        raise ValueError(f"unknown index {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
    if np.isnan(field).any() or math.isnan(normal):
        raise ValueError(f"{kind} index is NaN (a NaN in the smoothed series or the baseline)")
    if normal <= 0:
        return 0.0 if smoothed.ndim == 1 else np.zeros(smoothed.shape[0])
    out = 1.0 - field / normal
    return float(out) if smoothed.ndim == 1 else out


def loss_index(kind, days, smoothed, base_mean, sowing, harvest) -> float:
    """The shortfall floored at 0: a better-than-normal season is index 0 (fixed contract terms)."""
    return max(0.0, shortfall(kind, days, smoothed, base_mean, sowing, harvest))


def payout_fraction(index, trigger, exit) -> float:
    """0 up to trigger, 1 from exit on, linear between; rounded to FRACTION_DIGITS (ROUND_HALF_UP)."""
    if not exit > trigger:
        raise ValueError(f"contract exit ({exit}) must exceed trigger ({trigger})")
    if math.isnan(index):
        raise ValueError("loss index is NaN")
    raw = min(1.0, max(0.0, (index - trigger) / (exit - trigger)))
    return float(Decimal(repr(float(raw))).quantize(_FRACTION_QUANTUM, ROUND_HALF_UP))


def to_cents(amount) -> int:
    """An amount in currency units as integer cents (ROUND_HALF_UP)."""
    return int((Decimal(repr(float(amount))) * 100).quantize(Decimal(1), ROUND_HALF_UP))


def payout_cents(insured_sum_cents: int, fraction: float) -> int:
    """insured × fraction in whole cents, ROUND_HALF_UP, in decimal arithmetic."""
    return int((Decimal(int(insured_sum_cents)) * Decimal(repr(float(fraction)))).quantize(Decimal(1), ROUND_HALF_UP))


def payout(index, trigger, exit, insured_sum) -> dict:
    """The payout record of an output: fraction, amounts in cents and currency units."""
    fraction = payout_fraction(index, trigger, exit)
    insured = to_cents(insured_sum)
    cents = payout_cents(insured, fraction)
    return {"fraction": fraction, "insured_sum_cents": insured, "amount_cents": cents, "amount": cents / 100}
