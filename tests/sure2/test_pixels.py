"""The pixel level against the generator's per-pixel truth (truth_damage.tif), and its rule by hand."""

import datetime as dt

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from app.sure2.pixels import DAMAGE_GUARD_DAYS, DAMAGED, NO_DATE, UNDAMAGED, damage, map_patch, read_patch

TOLERANCE = 0.10  # damaged-area fraction, absolute


@pytest.fixture(scope="module")
def judged(season_dir, assessed):
    """field_id → (assessed classes, true classes, damage date index) over the pixels the field judged."""
    out = {}
    with rasterio.open(season_dir / "truth_damage.tif") as truth:
        for fid, a in assessed.items():
            row0, col0, classes, dates = read_patch(a["damage_map"])
            h, w = classes.shape
            true = _read_padded(truth, row0, col0, h, w)
            seen = classes > 0
            out[fid] = classes[seen], true[seen], dates[seen]
    return out


def _read_padded(dataset, row0, col0, h, w):
    """A window of band 1 that may reach past the raster (outside: 0, as the truth's "no field")."""
    out = np.zeros((h, w), dtype=np.uint8)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + h, dataset.height), min(col0 + w, dataset.width)
    if r1 > r0 and c1 > c0:
        out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = dataset.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    return out


def _fraction(classes):
    return float(np.mean(classes == DAMAGED)) if len(classes) else np.nan


def test_damaged_area_of_hail_fields_matches_the_pixel_truth(truth, judged):
    hail = [fid for fid in judged if truth[fid]["damage"] == "hail"]
    assert len(hail) >= 40
    err = np.array([abs(_fraction(judged[f][0]) - _fraction(judged[f][1])) for f in hail])
    assert np.mean(err <= TOLERANCE) >= 0.95, f"{np.sum(err > TOLERANCE)} of {len(hail)} hail fields off by > {TOLERANCE}"
    # partial swaths are in the set: the fraction is measured, not 0 or 1 by field
    assert sum(0.15 < _fraction(judged[f][1]) < 0.85 for f in hail) >= len(hail) // 3


def test_healthy_fields_undamaged_and_drought_fields_damaged_all_over(truth, judged):
    kinds = {k: [f for f in judged if truth[f]["damage"] == k] for k in ("healthy", "drought")}
    healthy = [_fraction(judged[f][0]) for f in kinds["healthy"]]
    drought = [_fraction(judged[f][0]) for f in kinds["drought"]]
    assert np.mean(np.array(healthy) <= TOLERANCE) >= 0.95
    assert np.mean(np.array(drought) >= 1 - TOLERANCE) >= 0.95


def test_damage_dates_of_hail_pixels(truth, judged):
    offsets = np.concatenate([judged[f][2][judged[f][0] == DAMAGED].astype(int) - truth[f]["damage_date_index"]
                              for f in judged if truth[f]["damage"] == "hail"])
    assert len(offsets) > 1000
    assert np.mean(np.abs(offsets) <= 1) >= 0.95


def test_field_record_and_event(truth, assessed):
    for fid, a in assessed.items():
        d = a["damage"]
        assert d["n_classified"] <= a["coverage"]["n_mask_pixels"]
        assert d["damaged_ha"] == pytest.approx(d["damaged_fraction"] * a["coverage"]["area_ha"], abs=1e-4)
        events = [e for e in a["events"] if e["type"] == "pixel_damage"]
        assert (len(events) == 1) == (d["n_damaged"] >= 4)
        if events:
            assert events[0]["date"] == d["main_damage_date"] and events[0]["damaged_ha"] == d["damaged_ha"]


DATES = [dt.date(2025, 4, 1) + dt.timedelta(days=5 * k) for k in range(30)]
DAYS = np.array([d.toordinal() for d in DATES], dtype=float)


def test_rule_by_hand():
    base = np.full(30, 0.6)
    sowing, harvest = DAYS[2], DAYS[-1]
    rows = {
        "hail at date 12": np.where(np.arange(30) >= 12, 0.35, 0.62),
        "poor all season": np.full(30, 0.40),  # far below the baseline, but never fell: not damage
        "small fall": np.where(np.arange(30) >= 12, 0.52, 0.62),  # 0.10 below its level, not 2 std below
        "fall then back up": np.where(np.arange(30) == 12, 0.3, 0.62),  # one date only: not sustained
        "late fall (ripening)": np.where(DAYS > harvest - DAMAGE_GUARD_DAYS, 0.2, 0.62),
        "lush, then normal": np.where(np.arange(30) >= 12, 0.6, 0.75),  # fell 0.15, but to normal
    }
    curves = np.array(list(rows.values()))
    seen = np.ones_like(curves)
    classes, first = damage(curves, curves, seen, base, DAYS, sowing, harvest, drop=0.10, below=2 * 0.05)
    got = dict(zip(rows, zip(classes.tolist(), first.tolist())))
    assert got["hail at date 12"] == (DAMAGED, 12)
    assert all(got[k] == (UNDAMAGED, NO_DATE) for k in rows if k != "hail at date 12"), got


def test_damage_date_comes_from_the_first_clear_view():
    base = np.full(30, 0.6)
    step = np.where(np.arange(30) >= 12, 0.35, 0.62)
    smoothed = np.convolve(np.pad(step, 2, mode="edge"), np.ones(5) / 5, mode="valid")  # falls from date 10 on
    seen = np.ones((1, 30))
    seen[0, 12:14] = 0  # clouded on two dates after the hail: the first clear view showing it is 14
    classes, first = damage(smoothed[None], step[None], seen, base, DAYS, DAYS[2], DAYS[-1], 0.10, 0.10)
    # dated as early as it can have been visible: the acquisition after the last clear view (11)
    assert classes.tolist() == [DAMAGED] and first.tolist() == [12]


def test_pixel_without_a_curve_has_no_class():
    curves = np.full((1, 30), np.nan)
    classes, first = damage(curves, curves, np.zeros((1, 30)), np.full(30, 0.6), DAYS, DAYS[0], DAYS[-1], 0.1, 0.1)
    assert classes.tolist() == [0] and first.tolist() == [NO_DATE]


def test_map_patch_round_trip():
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1:4] = 1
    classes = np.array([1, 2, 2, 0, 1, 2], np.uint8)
    first = np.array([NO_DATE, 7, 8, NO_DATE, NO_DATE, 9], np.uint16)
    patch = map_patch("ndvi", -2, 30, mask, classes, first)
    row0, col0, grid, dates = read_patch(patch)
    assert (row0, col0, grid.shape) == (-2, 30, (4, 5))
    assert grid[mask > 0].tolist() == classes.tolist() and (grid[mask == 0] == 0).all()
    assert dates[mask > 0].tolist() == first.tolist() and (dates[mask == 0] == NO_DATE).all()
