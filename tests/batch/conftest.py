"""Shared pieces of the batch tests: a small generated season, running the real CLI, and checks.

Backends under test: BATCH_TEST_BACKENDS (comma-separated, default "inproc,cli"). The images engineer
reruns the same fault tests against the image with e.g.
  BATCH_TEST_BACKENDS=apptainer:/path/sure2.sif BATCH_TEST_DATA=/path/to/the/embedded/season \
    pytest tests/batch
("cli" is the image's runscript command, `python -m app.sure2 assess --ids-from -`, without the image.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.hpc.atomic import is_temp_name
from app.sure2.assess import expected
from app.sure2.output import check_output
from app.sure2.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
N_FIELDS = 60  # small: the fault tests run the whole season a dozen times on 2 busy cores
BACKENDS = [b for b in os.environ.get("BATCH_TEST_BACKENDS", "inproc,cli").split(",") if b]


@pytest.fixture(scope="session")
def season_dir(tmp_path_factory) -> Path:
    given = os.environ.get("BATCH_TEST_DATA")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("season")
    subprocess.run(
        [sys.executable, "-m", "app.season", "synth", "--fields", str(N_FIELDS), "--seed", "7", "--out", str(out)],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )
    return out


@pytest.fixture(scope="session")
def season(season_dir):
    from app.sure2.season import Season

    with Season.open(season_dir) as s:
        yield s


@pytest.fixture(scope="session")
def reported(season_dir, tmp_path_factory) -> Path:
    """OUT of a finished inproc batch over the test season, with its report (tests that change it copy it)."""
    out = tmp_path_factory.mktemp("reported") / "out"
    r = run_batch(season_dir, out)
    assert r.returncode == 0, r.stderr
    return out


def backend_args(backend: str) -> list[str]:
    if backend.startswith("apptainer:"):
        return ["--backend", "apptainer", "--image", backend.split(":", 1)[1]]
    return ["--backend", backend]


def batch_cmd(command: str, data: Path, out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "app.batch", command, "--data", str(data), "--out", str(out), *map(str, extra)]


def run_batch(data, out, *extra, backend="inproc", workers=2, timeout=300, **kw) -> subprocess.CompletedProcess:
    cmd = batch_cmd("run", data, out, "--workers", workers, "--quiet", *backend_args(backend), *extra)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


def journal_records(out: Path) -> list[dict]:
    path = out / ".batch" / "journal.log"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def outcome_events(out: Path) -> list[tuple]:
    """Every outcome in the journal as (kind, field, owner, t, why), whatever the record's form
    (a chunk's outcomes in one record, or a single one)."""
    from app.batch.state import OUTCOMES, _outcome_items

    events = []
    for r in journal_records(out):
        for kind in OUTCOMES:
            if kind in r:
                events += [(kind, fid, r["o"], r["t"], why) for fid, why in _outcome_items(r, kind)]
    return events


def attempts(out: Path) -> dict:
    """field -> number of assessments started (the attempt log)."""
    counts = {}
    for r in journal_records(out):
        for fid in r.get("start", ()):
            counts[fid] = counts.get(fid, 0) + 1
    return counts


def output_problems(season, out: Path) -> dict:
    """Every file directly in `out` that is not a valid output of the season: name -> why."""
    known = set(season.field_ids)
    problems = {}
    for entry in os.scandir(out):
        if entry.name == ".batch":
            continue
        if is_temp_name(entry.name):
            problems[entry.name] = "temp file"
            continue
        fid = entry.name.removesuffix(".parquet")
        if fid not in known or not entry.name.endswith(".parquet"):
            problems[entry.name] = "not an output"
            continue
        why = check_output(entry.path, expected(season, fid, Settings()))
        if why:
            problems[entry.name] = why
    return problems


def valid_fields(season, out: Path) -> set:
    present = {e.name.removesuffix(".parquet") for e in os.scandir(out) if e.name.endswith(".parquet")}
    return present & set(season.field_ids) - {n.removesuffix(".parquet") for n in output_problems(season, out)}


def assert_complete(season, out: Path) -> None:
    assert output_problems(season, out) == {}
    assert valid_fields(season, out) == set(season.field_ids)
