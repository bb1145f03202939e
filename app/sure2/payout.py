"""Index insurance: a loss index from the season, paid linearly between trigger and exit."""

from app.sure2.science import window_integral

INDEX_KINDS = ("ndvi_integral", "ndvi_peak")


def loss_index(kind, days, smoothed, base_mean, sowing, harvest) -> float:
    """Relative shortfall against the baseline over the field's sowing→harvest window (0 = normal).

    ndvi_integral: 1 − ∫NDVI / ∫baseline;  ndvi_peak: 1 − peak NDVI / baseline peak.
    Never negative: a better-than-normal season is index 0.
    """
    if kind == "ndvi_integral":
        field = window_integral(days, smoothed, sowing, harvest)
        normal = window_integral(days, base_mean, sowing, harvest)
    elif kind == "ndvi_peak":
        win = (days >= sowing) & (days <= harvest)
        if not win.any():
            return 0.0
        field, normal = float(smoothed[win].max()), float(base_mean[win].max())
    else:
        raise ValueError(f"unknown index {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
    if normal <= 0:
        return 0.0
    return max(0.0, 1.0 - field / normal)


def payout_fraction(index, trigger, exit) -> float:
    """0 up to trigger, 1 from exit on, linear between."""
    if not exit > trigger:
        raise ValueError(f"contract exit ({exit}) must exceed trigger ({trigger})")
    return min(1.0, max(0.0, (index - trigger) / (exit - trigger)))


def payout_amount(index, trigger, exit, insured_sum) -> float:
    """Payout in the contract currency, capped at the insured sum, rounded to cents."""
    return round(insured_sum * payout_fraction(index, trigger, exit), 2)
