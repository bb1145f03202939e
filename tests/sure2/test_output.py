"""Output files: written atomically, and "done means valid" checked from the footer alone."""

import os
import shutil

import pyarrow.parquet as pq
import pytest

import app
from app.sure2.assess import assess_to_file
from app.sure2.output import check_output, output_path, read_blobs
from app.sure2.season import Season


@pytest.fixture(scope="module")
def season(season_dir):
    with Season.open(season_dir) as s:
        yield s


@pytest.fixture
def written(season, tmp_path):
    fid = season.field_ids[0]
    summary = assess_to_file(season, fid, tmp_path)
    return fid, output_path(tmp_path, fid), summary


def _check(season, path, fid):
    return check_output(path, fid, season.n_dates, app.__version__, season.fingerprint)


def test_valid_output(season, written):
    fid, path, summary = written
    assert summary["status"] == "ok" and summary["path"] == str(path)
    assert _check(season, path, fid) is None
    table = pq.read_table(path)
    assert table.num_rows == season.n_dates == 37
    assert table.column_names == ["date", "n_pixels", "valid_fraction", "ndvi_mean", "ndvi_smooth",
                                  "baseline_mean", "z"]
    blobs = read_blobs(path)
    assert blobs["payout"]["amount"] == summary["payout"]
    assert blobs["season_metrics"]["n_dates"] == 37
    assert os.listdir(path.parent) == [path.name]  # no temp file left


def test_missing(season, tmp_path):
    assert _check(season, tmp_path / "x.parquet", "x") == "missing"


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
    assert _check(season, other, "someone-else") == "field_id mismatch"


def test_wrong_code_version_and_fingerprint(season, written):
    fid, path, _ = written
    assert check_output(path, fid, 37, "0.0.0", season.fingerprint).startswith("code version")
    assert check_output(path, fid, 37, app.__version__, "0" * 64).startswith("fingerprint")


def test_output_path_refuses_escaping_ids(tmp_path):
    from app.errors import BadInput

    for bad in ("../x", "/abs", "", "a\0b"):
        with pytest.raises(BadInput):
            output_path(tmp_path, bad)
