"""The science recovers the generator's injected ground truth (season seed in conftest)."""

import numpy as np


def _select(truth, assessed, damage, cloud_heavy=False, terms=None):
    return [(truth[f], assessed[f]) for f in assessed
            if truth[f]["damage"] == damage and truth[f]["cloud_heavy"] == cloud_heavy
            and terms in (None, truth[f]["terms"])]


def test_only_cloud_heavy_fields_and_thin_strips_lack_an_assessment(truth, outcomes, assessed):
    explained = {fid: o for fid, o in outcomes.items() if fid not in assessed}
    assert all((truth[fid]["cloud_heavy"] and o.reason == "too_few_observations")
               or (truth[fid]["strip_width_m"] is not None and o.reason == "too_small")
               for fid, o in explained.items())


def test_enough_cases_for_the_statistics(truth, assessed):
    assert len(_select(truth, assessed, "hail")) >= 40
    assert len(_select(truth, assessed, "drought")) >= 40
    assert len(_select(truth, assessed, "healthy")) >= 200


def test_hail_detected_within_one_acquisition(truth, assessed):
    # a swath over part of a field hardly moves the field mean: the pixel level finds and dates it
    cases = _select(truth, assessed, "hail")
    dated = lambda a, kind, t: any(e["type"] == kind and abs(e["date_index"] - t["damage_date_index"]) <= 1
                                   for e in a["events"])
    hits = [dated(a, "pixel_damage", t) for t, a in cases]
    assert np.mean(hits) >= 0.95, f"hail detected in {sum(hits)}/{len(hits)}"
    field_mean_hits = [dated(a, "abrupt_drop", t) for t, a in cases]
    assert np.mean(field_mean_hits) < np.mean(hits)  # the field mean alone misses the smaller swaths


def test_healthy_fields_rarely_paid_and_rarely_flagged(truth, assessed):
    # fixed terms: a healthy field is not paid; percentile terms can pay one by design (a field below the
    # unit's 20th percentile year), which its truth says, and test_payout_sign_matches_truth checks
    cases = _select(truth, assessed, "healthy", terms="fixed")
    paid = [a["payout"]["amount"] > 0 for _, a in cases]
    assert np.mean(paid) <= 0.05, f"{sum(paid)}/{len(paid)} healthy fields paid"
    cases = _select(truth, assessed, "healthy")
    for kind in ("abrupt_drop", "pixel_damage"):
        flagged = [any(e["type"] == kind for e in a["events"]) for _, a in cases]
        assert np.mean(flagged) <= 0.05, kind


def _true_fraction(t, a):
    """The payout fraction the field's true index gives under its (fixed) terms."""
    p = a["payout"]
    return min(1.0, max(0.0, (t["true_index"] - p["trigger"]) / (p["exit"] - p["trigger"])))


def test_drought_payouts_positive_and_ordered_by_severity(truth, assessed):
    assert all(a["payout"]["amount"] > 0 for _, a in _select(truth, assessed, "drought"))
    cases = _select(truth, assessed, "drought", terms="fixed")  # one payout scale
    by_level = {lvl: [(a["payout"]["fraction"], _true_fraction(t, a)) for t, a in cases if t["drought_level"] == lvl]
                for lvl in (1, 2, 3)}
    assert all(len(v) >= 5 for v in by_level.values())
    # payouts cap at the exit, so levels 2 and 3 can pay alike (seed 7: the truth pays level 3 less on
    # average than level 2): each level's mean payout fraction follows its truth's
    for lvl, pairs in by_level.items():
        paid, true = np.mean(pairs, axis=0)
        assert abs(paid - true) <= 0.05, (lvl, paid, true)
    assert np.mean([p for p, _ in by_level[1]]) < min(np.mean([p for p, _ in by_level[k]]) for k in (2, 3))
    # the loss index itself is ordered within each index kind, too
    for kind in ("ndvi_integral", "ndvi_peak"):
        med = [np.median([a["payout"]["index_value"] for t, a in cases
                          if t["drought_level"] == lvl and a["payout"]["index"] == kind]) for lvl in (1, 2, 3)]
        assert med[0] < med[1] < med[2], (kind, med)


def test_drought_seen_as_sustained_anomaly(truth, assessed):
    cases = _select(truth, assessed, "drought")
    seen = [any(e["type"] == "sustained_anomaly" for e in a["events"]) for _, a in cases]
    assert np.mean(seen) >= 0.9


def test_payout_sign_matches_truth(truth, assessed):
    agree = [(a["payout"]["amount"] > 0) == bool(truth[f]["expected_payout_sign"])
             for f, a in assessed.items() if not truth[f]["cloud_heavy"]]
    assert np.mean(agree) >= 0.95


def test_cloud_heavy_field_degrades_gracefully(truth, outcomes, assessed, season_dir):
    heavy = [f for f in outcomes if truth[f]["cloud_heavy"]]
    explained = [outcomes[f] for f in heavy if f not in assessed]
    for outcome in explained:  # mostly unobserved: explained, with what was seen
        seen = outcome.partial["coverage"]
        assert outcome.status == "insufficient_data" and seen["raster_coverage"] == 1.0
        assert np.isnan(outcome.partial["columns"]["ndvi_mean"]).sum() >= 20
    cases = [(t, a) for t, a in _select(truth, assessed, "healthy", cloud_heavy=True)]
    assert cases, "the seeded season has assessable cloud-heavy fields"
    for t, a in cases:
        cols, metrics = a["columns"], a["season_metrics"]
        missing = int(np.isnan(cols["ndvi_mean"]).sum())
        assert missing >= 10  # most dates lost to cloud are reported missing, not invented
        assert metrics["n_observed_dates"] == len(cols["ndvi_mean"]) - missing
        assert np.isfinite(cols["ndvi_smooth"]).all()  # gaps are bridged by the smoother
        assert metrics["peak_ndvi"] is not None
    assert np.mean([a["payout"]["amount"] > 0 for _, a in cases]) <= 0.5


def test_edge_pixels_are_excluded(assessed, season_dir):
    # inner masks are smaller than the field: area_ha * 100 pixels at 10 m
    import pyarrow.parquet as pq

    area = dict(zip(*pq.read_table(season_dir / "fields.parquet", columns=["field_id", "area_ha"]).to_pydict().values()))
    for fid, a in assessed.items():
        assert a["coverage"]["n_mask_pixels"] < area[fid] * 100 <= a["coverage"]["n_field_pixels"] * 1.5
