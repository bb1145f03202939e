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


@pytest.fixture(scope="session")
def insurer_raw(tmp_path_factory) -> Path:
    """The insurer-file variant (app.season.raw_inputs, variant insurer): 16 regular fields + the
    awkward rows + slivers, Norwegian attributes, DD.MM.YYYY text, percentile terms on some rows."""
    out = tmp_path_factory.mktemp("insurer_raw")
    got = season_cli("raw", "--out", out, "--fields", 16, "--dates", 37, "--seed", 4, "--variant", "insurer")
    assert got.returncode == 0, got.stderr
    return out


@pytest.fixture(scope="session")
def insurer_baseline(insurer_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("insurer_baseline")
    got = season_cli("baseline", "--table", insurer_raw / "baseline_table.csv", "--history",
                     insurer_raw / "history_table.csv", "--out", out)
    assert got.returncode == 0, got.stderr
    return out / "baseline.parquet"


@pytest.fixture(scope="session")
def insurer_built(insurer_raw, insurer_baseline, tmp_path_factory):
    """(season dir, the build's stderr) from the insurer's GeoPackage."""
    out = tmp_path_factory.mktemp("insurer_season") / "season"
    got = season_cli(*build_args(insurer_raw, out, "fields.gpkg", insurer_baseline))
    assert got.returncode == 0, got.stderr
    return out, got.stderr
