"""Payout decisions pinned on two generated seasons, against a truth computed here.

The truth is recomputed in this file from each field's noise-free curve (truth.parquet `true_curve`), the
season's baseline moved to the field's green-up (`phenology_shift_days`), the history years and the
contract as written (fields.parquet), by the formulas below — not by the product's payout functions,
so a change of those cannot move the yardstick with it. The product's wrong decisions (paid though
nothing is due, due but not paid) must stay inside a small band on seed 7 (the tests' season, conftest)
and on seed 11 (a season no setting was tuned on). Also: healthy fields whose season runs −14 … +21
days off their unit's are neither damaged nor paid, and their shift is measured; thin strips along
bare soil or water are never paid on their neighbour's signal.
"""

import datetime as dt

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.season.synth import generate
from app.sure2.assess import assess
from app.sure2.outcome import FieldOutcome
from app.sure2.season import Season

# measured with the defaults (pixel level, automatic λ, breaks at damage dates, phenology alignment, pure
# pixels): seed 7 2 wrong (2 false, 0 missed), seed 11 2 (1 false, 1 missed); the assessment before them
# (commit 8b87913) had 17 (16 false, 1 missed) and 16 (15 false, 1 missed) on these seasons
WRONG_BAND = {7: (0, 4), 11: (0, 4)}
SECOND_SEED, SECOND_N = 11, 400


def _day(d: dt.date) -> float:
    return float(d.toordinal())


def _integral(days, values, start, end):
    """Exact integral of the piecewise-linear curve through (days, values) over [start, end] ∩ [days]."""
    start, end = max(start, days[0]), min(end, days[-1])
    x = np.concatenate(([start], days[(days > start) & (days < end)], [end]))
    y = np.interp(x, days, values)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def _shortfall(kind, days, curve, base, start, end):
    if kind == "ndvi_integral":
        return 1 - _integral(days, curve, start, end) / _integral(days, base, start, end)
    inside = (days >= start) & (days <= end)
    return 1 - curve[inside].max() / base[inside].max()


def truth_due(season_dir) -> dict:
    """field_id → True when the noise-free curve is owed a payout under the field's contract."""
    fields = pq.read_table(season_dir / "fields.parquet").to_pylist()
    truth = {r["field_id"]: r for r in pq.read_table(season_dir / "truth.parquet").to_pylist()}
    base, history = {}, {}
    for r in pq.read_table(season_dir / "baseline.parquet").to_pylist():
        base.setdefault((r["region_id"], r["crop"]), []).append((_day(r["date"]), r["ndvi_mean"]))
    for r in pq.read_table(season_dir / "history.parquet").to_pylist():
        history.setdefault((r["region_id"], r["crop"]), {}).setdefault(r["year"], []).append((r["doy"], r["ndvi_mean"]))
    due = {}
    for f in fields:
        t, unit = truth[f["field_id"]], (f["region_id"], f["crop"])
        days, normal = (np.array(v) for v in zip(*sorted(base[unit])))
        moved = np.interp(days - t["phenology_shift_days"], days, normal)
        start, end = _day(f["sowing_date"]), _day(f["harvest_date"])
        loss = _shortfall(f["index"], days, np.array(t["true_curve"]), moved, start, end)
        if f["trigger"] is not None:
            due[f["field_id"]] = max(loss, 0.0) > f["trigger"] + 1e-9
        else:  # this season ranks below the trigger_percentile-th percentile of the history years
            years = [_shortfall(f["index"], days, np.array([v for _, v in sorted(rows)]), normal, start, end)
                     for rows in history[unit].values()]
            due[f["field_id"]] = loss > np.percentile(years, 100 - f["trigger_percentile"]) + 1e-9
    return due


def _assess_all(season_dir) -> dict:
    out = {}
    with Season.open(season_dir) as season:
        for fid in season.field_ids:
            try:
                out[fid] = assess(season, fid)
            except FieldOutcome as outcome:
                out[fid] = outcome
    return out


@pytest.fixture(scope="module")
def second_season(tmp_path_factory):
    out = tmp_path_factory.mktemp("season11")
    generate(SECOND_N, SECOND_SEED, out)
    return out, _assess_all(out)


def _wrong(due, outcomes):
    paid = {fid: o["payout"]["amount"] > 0 for fid, o in outcomes.items() if not isinstance(o, FieldOutcome)}
    false = sorted(fid for fid, p in paid.items() if p and not due[fid])
    missed = sorted(fid for fid, p in paid.items() if due[fid] and not p)
    return false, missed


@pytest.mark.parametrize("seed", [7, SECOND_SEED])
def test_payout_decisions_within_band(seed, season_dir, outcomes, second_season):
    directory, results = (season_dir, outcomes) if seed == 7 else second_season
    due = truth_due(directory)
    recorded = {r["field_id"]: r["true_payout"] > 0 for r in pq.read_table(directory / "truth.parquet").to_pylist()}
    assert sum(due[f] != recorded[f] for f in due) <= 1  # the generator's truth says the same
    assert 0.1 * len(due) < sum(due.values()) < 0.5 * len(due)  # both decisions are well represented
    false, missed = _wrong(due, results)
    print(f"\nseed {seed}: {len(false)} false payouts, {len(missed)} missed of {len(results)} fields")
    low, high = WRONG_BAND[seed]
    assert low <= len(false) + len(missed) <= high, (false, missed)


def test_shifted_healthy_fields_not_damaged_nor_paid(season_dir, truth, assessed):
    shifted = [fid for fid in assessed if truth[fid]["shifted"]]
    assert len(shifted) >= 30
    assert {round(truth[f]["phenology_shift_days"]) for f in shifted} & set(range(-14, -7))  # early ones
    assert {round(truth[f]["phenology_shift_days"]) for f in shifted} & set(range(12, 22))  # late ones
    for fid in shifted:
        a = assessed[fid]
        assert a["payout"]["amount"] == 0 or truth[fid]["true_payout"] > 0, fid
        assert not [e for e in a["events"] if e["type"] == "pixel_damage"], (fid, a["events"])
        assert a["damage"]["damaged_fraction"] <= 0.05, (fid, a["damage"])
    err = [abs(assessed[f]["season_metrics"]["phenology_shift_days"] - truth[f]["phenology_shift_days"])
           for f in shifted]
    assert np.median(err) <= 1.5 and np.mean(np.array(err) <= 4) >= 0.9, sorted(err)[-5:]


def test_thin_fields_never_paid_on_their_neighbours_signal(season_dir, truth, outcomes):
    """Strips 8–45 m wide along bare soil or water: assessed from pure pixels with the truth's decision,
    or too_small — always too_small where the import's sliver note would flag them."""
    from app.season.fields_import import HALF_PIXEL_M, MIN_PIXELS

    strips = {fid: t["strip_width_m"] for fid, t in truth.items() if t["strip_width_m"] is not None}
    assert len(strips) >= 10
    assessed, refused = [], []
    for fid, width in strips.items():
        o, t = outcomes[fid], truth[fid]
        if isinstance(o, FieldOutcome):
            assert o.reason == "too_small", (fid, o)
            refused.append(width)
            continue
        assert (o["payout"]["amount"] > 0) == (t["true_payout"] > 0), (fid, o["payout"], t["true_index"])
        assert abs(o["payout"]["index_value"] - t["true_index"]) <= 0.03, (fid, o["payout"], t["true_index"])
        assessed.append(width)
        assert o["coverage"]["n_field_pixels"] >= MIN_PIXELS, fid  # the import's other sliver rule
    assert assessed and refused
    assert all(w >= 2 * HALF_PIXEL_M for w in assessed)  # narrower than a pixel: the import says sliver
    assert min(refused) < 2 * HALF_PIXEL_M  # the season has such strips
    print(f"\nstrips: narrowest assessed {min(assessed):.1f} m, widest too_small {max(refused):.1f} m")
