"""Output files: written atomically, and "done means valid" checked from the footer alone."""

import os
import shutil

import pyarrow.parquet as pq
import pytest

from app.sure2.assess import assess_to_file, expected
from app.sure2.output import check_output, output_path, read_footer
from app.sure2.season import Season
from app.sure2.settings import Settings


@pytest.fixture(scope="module")
def season(season_dir):
    with Season.open(season_dir) as s:
        yield s


@pytest.fixture
def written(season, tmp_path):
    fid = season.field_ids[0]
    summary = assess_to_file(season, fid, tmp_path)
    return fid, output_path(tmp_path, fid), summary


def _check(season, path, fid, settings=Settings()):
    return check_output(path, expected(season, fid, settings))


def test_valid_output(season, written):
    fid, path, summary = written
    assert summary["status"] == "ok" and summary["path"] == str(path)
    assert _check(season, path, fid) is None
    table = pq.read_table(path)
    assert table.num_rows == season.n_rows(fid) == 37
    assert table.column_names == ["date", "n_pixels", "valid_fraction", "ndvi_mean", "ndvi_smooth",
                                  "baseline_mean", "z"]
    blobs = read_footer(path)
    assert blobs["status"] == "assessed" and blobs["reason"] == ""
    assert blobs["payout"]["amount"] == summary["payout"]
    assert blobs["season_metrics"]["n_dates"] == 37
    assert os.listdir(path.parent) == [path.name]  # no temp file left


def test_missing(season, tmp_path):
    assert _check(season, tmp_path / "x.parquet", season.field_ids[1]) == "missing"


def test_truncated(season, written):
    fid, path, _ = written
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _check(season, path, fid).startswith("unreadable footer")


def test_wrong_rows(season, written):
    fid, path, _ = written
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 36), path)
    assert _check(season, path, fid) == "row count 36 != 37"


def test_wrong_field(season, written):
    fid, path, _ = written
    other = path.with_name("someone-else.parquet")
    shutil.copy(path, other)
    assert _check(season, other, season.field_ids[1]).startswith("field_id")


def test_wrong_code_version_fingerprint_and_settings(season, written):
    from dataclasses import replace

    fid, path, _ = written
    want = expected(season, fid, Settings())
    assert check_output(path, replace(want, code_version="0.0.0+000000000000")).startswith("code version")
    assert check_output(path, replace(want, fingerprint="0" * 64)).startswith("fingerprint")
    why = _check(season, path, fid, Settings(lam=5))
    assert why == "settings: made with --lambda auto (now 5.0)"


def test_output_path_refuses_escaping_ids(tmp_path):
    from app.errors import BadInput

    for bad in ("../x", "/abs", "", "a\0b"):
        with pytest.raises(BadInput):
            output_path(tmp_path, bad)
