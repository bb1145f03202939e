"""The chunked command backend, run for real through the image's runscript command (without the
image: the same `python -m app.sure2 assess --ids-from -`), and the apptainer command line."""

import errno  # noqa: F401 (the BREAKS are evaluated in this module too)
import sys

import pytest

from app.batch.backends import CommandBackend, InprocBackend, StopBatch, apptainer_prefix, sure2_cli_prefix
from app.errors import BadInput, EnvironmentFailure  # noqa: F401 (as errno)
from app.sure2.settings import Settings


def test_apptainer_command_is_contained_and_binds_out_and_tmp():
    cmd = apptainer_prefix("/img/sure2.sif", "/cluster/out", "/dev/shm/x", apptainer="/usr/bin/apptainer")
    assert cmd == ["/usr/bin/apptainer", "run", "--containall", "--cleanenv", "--bind", "/cluster/out:/out",
                   "--bind", "/dev/shm/x:/tmp", "/img/sure2.sif"]
    assert "--bind" not in apptainer_prefix("s.sif", "/o")[5:]


def test_command_backend_sorts_outcomes_per_field(season, season_dir, tmp_path):
    good = season.field_ids[:3]
    backend = CommandBackend(sure2_cli_prefix(season_dir, tmp_path), tmp_path)
    outcomes = list(backend.run([*good, "NO25-99999"]))  # in the order the command reports them
    ok = [o for o in outcomes if "ok" in o]
    assert sorted(o["ok"] for o in ok) == sorted(good) and len(outcomes) == 4
    assert all(o["s"]["currency"] == "NOK" and o["sec"] > 0 for o in ok)
    (bad,) = [o for o in outcomes if "bad" in o]
    assert bad["bad"] == "NO25-99999" and "unknown field id" in bad["why"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{g}.parquet" for g in good)


def test_command_backend_stops_the_batch_when_the_data_is_missing(tmp_path):
    backend = CommandBackend(sure2_cli_prefix(tmp_path / "no-season", tmp_path / "out"), tmp_path / "out")
    with pytest.raises(StopBatch, match="exited 3"):
        list(backend.run(["NO25-00001"]))


def test_inproc_backend_matches_the_command_backend(season, season_dir, tmp_path):
    fid = season.field_ids[5]
    (tmp_path / "a").mkdir()
    inproc = InprocBackend(season_dir, tmp_path / "a", Settings())
    try:
        (mine,) = inproc.run([fid])
    finally:
        inproc.close()
    (theirs,) = CommandBackend(sure2_cli_prefix(season_dir, tmp_path / "b"), tmp_path / "b").run([fid])
    assert mine["s"] == theirs["s"]
    assert (tmp_path / "a" / f"{fid}.parquet").read_bytes() == (tmp_path / "b" / f"{fid}.parquet").read_bytes()


# The assessment of one field broken by an exception, in this process (inproc) and in the CLI the
# image runs (the command backend, with the same break injected into its process).
BREAK = """
import errno, os, runpy, sys
import app.sure2.assess as assess
from app.errors import BadInput, EnvironmentFailure
real = assess.assess_to_file
def broken(season, fid, *args, **kwargs):
    if fid == os.environ["BROKEN_FIELD"]:
        raise eval(os.environ["BROKEN_BY"])
    return real(season, fid, *args, **kwargs)
assess.assess_to_file = broken
sys.argv = ["app.sure2", *sys.argv[1:]]
runpy.run_module("app.sure2", run_name="__main__")
"""
BREAKS = {  # exception → what the batch does: the field's own failure, its bad input, or stop everything
    "OSError(errno.ETIMEDOUT, 'read timed out')": "fail",
    "ValueError('singular matrix')": "fail",
    "BadInput('contract names no crop')": "bad",
    "OSError(errno.ENOSPC, 'No space left on device')": "stop",
    "OSError(errno.EACCES, 'Permission denied')": "stop",
    "EnvironmentFailure('season file vanished')": "stop",
}


def _kinds(backend, fields) -> dict:
    """field → ok | fail | bad as the backend reports it; "stop" → True when it stopped the batch."""
    got = {}
    try:
        for outcome in backend.run(fields):
            kind = next(k for k in ("ok", "fail", "bad") if k in outcome)
            got[outcome[kind]] = kind
    except StopBatch:
        got["stop"] = True
    return got


@pytest.mark.parametrize("raised, kind", BREAKS.items(), ids=list(BREAKS))
def test_inproc_and_command_backends_classify_a_failure_alike(season, season_dir, tmp_path, monkeypatch,
                                                              raised, kind):
    first, broken, last = season.field_ids[:3]
    monkeypatch.setenv("BROKEN_FIELD", broken)
    monkeypatch.setenv("BROKEN_BY", raised)
    (tmp_path / "a").mkdir()
    inproc = InprocBackend(season_dir, tmp_path / "a", Settings())
    real = inproc._assess

    def breaking(season, fid, *args):
        if fid == broken:
            raise eval(raised)
        return real(season, fid, *args)

    inproc._assess = breaking
    try:
        here = _kinds(inproc, [first, broken, last])
    finally:
        inproc.close()
    command = CommandBackend([sys.executable, "-c", BREAK, "assess", "--data", str(season_dir), "--out",
                              str(tmp_path / "b")], tmp_path / "b")
    there = _kinds(command, [first, broken, last])
    want = {first: "ok", "stop": True} if kind == "stop" else {first: "ok", broken: kind, last: "ok"}
    assert (here, there) == (want, want)
