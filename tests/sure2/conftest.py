"""One small generated season per test session (seeded), and its in-process assessment."""

import pyarrow.parquet as pq
import pytest

from app.sure2.assess import assess
from app.sure2.outcome import FieldOutcome
from app.sure2.season import Season
from app.season.synth import generate

SEED = 7
N_FIELDS = 400  # enough for the science statistics (≈60 hail, ≈60 drought fields), ≈2 s to make


@pytest.fixture(scope="session")
def season_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("season")
    generate(N_FIELDS, SEED, out)
    return out


@pytest.fixture(scope="session")
def truth(season_dir):
    return {row["field_id"]: row for row in pq.read_table(season_dir / "truth.parquet").to_pylist()}


def _assess_or_explain(season, fid):
    try:
        return assess(season, fid)
    except FieldOutcome as outcome:
        return outcome


@pytest.fixture(scope="session")
def outcomes(season_dir):
    """field_id → in-memory assessment of every field of the season, or its FieldOutcome."""
    with Season.open(season_dir) as season:
        return {fid: _assess_or_explain(season, fid) for fid in season.field_ids}


@pytest.fixture(scope="session")
def assessed(outcomes):
    """field_id → assessment, for the fields that were assessed."""
    return {fid: a for fid, a in outcomes.items() if not isinstance(a, FieldOutcome)}
