"""Fixtures of the season import: raw-input sets with truth (app.season.raw_inputs: regular fields + the
awkward rows, 3 granules in UTM zones 32/33, 37 dates each), each built once per session — the
register (24 fields) and the insurer-file variant (16 fields: Norwegian attributes, DD.MM.YYYY text,
percentile terms priced on a history table, slivers, fields sown early or late)."""

import json
from pathlib import Path

import pytest

from season_helpers import build_args, season_cli


def _raw(factory, name, *args) -> Path:
    out = factory.mktemp(name)
    got = season_cli("raw", "--out", out, "--dates", 37, *args)
    assert got.returncode == 0, got.stderr
    return out


def _baseline(factory, name, *args) -> Path:
    out = factory.mktemp(name)
    got = season_cli("baseline", *args, "--out", out)
    assert got.returncode == 0, got.stderr
    return out / "baseline.parquet"


def _built(factory, name, raw, baseline):
    """(season dir, the build's stderr) from the GeoPackage."""
    out = factory.mktemp(name) / "season"
    got = season_cli(*build_args(raw, out, "fields.gpkg", baseline))
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["complete"] is True
    return out, got.stderr


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    return _raw(tmp_path_factory, "raw", "--fields", 24, "--seed", 0)


@pytest.fixture(scope="session")
def baseline(raw, tmp_path_factory) -> Path:
    return _baseline(tmp_path_factory, "baseline", "--table", raw / "baseline_table.csv")


@pytest.fixture(scope="session")
def built(raw, baseline, tmp_path_factory):
    return _built(tmp_path_factory, "season", raw, baseline)


@pytest.fixture(scope="session")
def insurer_raw(tmp_path_factory) -> Path:
    return _raw(tmp_path_factory, "insurer_raw", "--fields", 16, "--seed", 4, "--variant", "insurer")


@pytest.fixture(scope="session")
def insurer_baseline(insurer_raw, tmp_path_factory) -> Path:
    return _baseline(tmp_path_factory, "insurer_baseline", "--table", insurer_raw / "baseline_table.csv",
                     "--history", insurer_raw / "history_table.csv")


@pytest.fixture(scope="session")
def insurer_built(insurer_raw, insurer_baseline, tmp_path_factory):
    return _built(tmp_path_factory, "insurer_season", insurer_raw, insurer_baseline)
