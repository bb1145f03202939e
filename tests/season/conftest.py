"""Fixtures of the season import: one raw-input set with truth (app.season.raw_inputs: 24 regular
fields + the awkward rows, 3 granules in UTM zones 32/33, 37 dates each), built once per session."""

import json
from pathlib import Path

import pytest

from season_helpers import build_args, season_cli


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    got = season_cli("raw", "--out", out, "--fields", 24, "--dates", 37, "--seed", 0)
    assert got.returncode == 0, got.stderr
    return out


@pytest.fixture(scope="session")
def baseline(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    got = season_cli("baseline", "--table", raw / "baseline_table.csv", "--out", out)
    assert got.returncode == 0, got.stderr
    return out / "baseline.parquet"


@pytest.fixture(scope="session")
def built(raw, baseline, tmp_path_factory):
    """(season dir, the build's stderr) from the GeoPackage."""
    out = tmp_path_factory.mktemp("season") / "season"
    got = season_cli(*build_args(raw, out, "fields.gpkg", baseline))
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["complete"] is True
    return out, got.stderr
