"""Every field ends assessed or explained: a season with one bad field of every kind runs to the end in
ONE batch run, each bad field gets its durable explained outcome, and a rerun assesses nothing."""

import json
import os
import shutil
from dataclasses import replace

import pyarrow.parquet as pq
import pytest

from app.sure2.output import read_footer
from tests.batch.conftest import BACKENDS, attempts, output_problems, run_batch
from tests.sure2.bad_fields import DETAILS, KINDS, each_pixel_seen_twice, inject_bad_fields


@pytest.fixture(scope="module")
def bad_season(season_dir, tmp_path_factory):
    copy = tmp_path_factory.mktemp("bad") / "season"
    shutil.copytree(season_dir, copy)
    return copy, inject_bad_fields(copy)


@pytest.fixture(scope="module")
def bad(bad_season):
    from app.sure2.season import Season

    with Season.open(bad_season[0]) as s:
        yield s


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_run_finishes_a_season_with_bad_fields_and_a_rerun_changes_nothing(bad_season, bad, tmp_path, backend):
    data, victims = bad_season
    assert len(victims) == len(KINDS) >= 10
    out = tmp_path / "out"
    first = run_batch(data, out, backend=backend)
    assert first.returncode == 0, first.stderr  # explained fields are results, not failures
    assert output_problems(bad, out) == {}  # an output for every field, each valid
    for fid in bad.field_ids:
        footer = read_footer(out / f"{fid}.parquet")
        if fid in victims:
            kind, status, reason = victims[fid]
            assert (footer["status"], footer["reason"]) == (status, reason), (kind, footer["coverage"])
            assert footer["payout"] is None and footer["coverage"]["detail"], kind
            assert DETAILS.get(kind, "") in footer["coverage"]["detail"], (kind, footer["coverage"]["detail"])
            rows = pq.read_metadata(out / f"{fid}.parquet").num_rows
            assert rows == (0 if kind == "no_stack" else 37), kind  # the promised row count, values null
        else:
            assert footer["status"] == "assessed" and footer["payout"]["amount_cents"] >= 0, fid

    report = json.loads((out / ".batch" / "report.json").read_text())
    grouped = {reason: sorted(e["field_id"] for e in entries) for reason, entries in report["explained"].items()}
    want = {}
    for fid, (_, _, reason) in victims.items():
        want.setdefault(reason, []).append(fid)
    assert grouped == {reason: sorted(ids) for reason, ids in want.items()}
    assert report["counts"]["assessed"] == len(bad.field_ids) - len(victims)
    assert report["counts"]["failed"] == report["counts"]["given_up"] == report["counts"]["remaining"] == 0
    table = (out / ".batch" / "report.txt").read_text()
    assert "not assessable: outside_raster (1 fields)" in table and "partial_coverage" in table

    stamp = {e.name: (e.inode(), e.stat().st_mtime_ns) for e in os.scandir(out) if e.name.endswith(".parquet")}
    tried = attempts(out)
    second = run_batch(data, out, backend=backend)
    assert second.returncode == 0, second.stderr
    assert attempts(out) == tried  # nothing assessed again, bad fields included
    assert {e.name: (e.inode(), e.stat().st_mtime_ns) for e in os.scandir(out)
            if e.name.endswith(".parquet")} == stamp  # not a file touched


def test_partial_coverage_is_measured_not_assumed(bad_season, bad):
    from app.sure2.assess import assess
    from app.sure2.outcome import FieldOutcome
    from app.sure2.settings import Settings

    data, victims = bad_season
    fid = next(f for f, v in victims.items() if v[0] == "partly_outside")
    with pytest.raises(FieldOutcome) as caught:
        assess(bad, fid)
    coverage = caught.value.partial["coverage"]
    assert 0.3 < coverage["raster_coverage"] < 0.7  # the field's centre sits on the raster's edge
    # pixels outside the stack count as unobserved: no date sees more than the covered share
    assert max(caught.value.partial["columns"]["valid_fraction"]) <= coverage["raster_coverage"] + 0.15
    # looser thresholds (field and per date) assess it, and it says how much of it was seen
    done = assess(bad, fid, Settings(min_field_coverage=0.25, min_coverage=0.25))
    assert done["coverage"]["raster_coverage"] == coverage["raster_coverage"]


def test_no_inner_pixel_seen_often_enough_is_explained(season_dir, tmp_path):
    """Reachable only where a date counts with few pixels seen (under the defaults a field observed on
    enough dates has some pixel seen 3 times): every date shows 2/n of the pixels, each pixel 2 dates."""
    from app.sure2.assess import assess
    from app.sure2.outcome import FieldOutcome
    from app.sure2.season import Season
    from app.sure2.settings import Settings

    copy = tmp_path / "season"
    shutil.copytree(season_dir, copy)
    fid = each_pixel_seen_twice(copy)
    few = Settings(min_coverage=0.02, min_observed_share=0.1)
    with Season.open(copy) as season:
        with pytest.raises(FieldOutcome) as caught:
            assess(season, fid, few)
        assert (caught.value.reason, caught.value.detail) == ("too_few_observations",
                                                              "no inner pixel is seen often enough to smooth")
        field_level = assess(season, fid, replace(few, pixel_level=False))  # the field's mean has its views
        assert field_level["payout"] is not None
