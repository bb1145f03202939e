"""The CLI as a user (or an image's runscript) calls it: real processes, real files, real kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app.hpc.atomic import is_temp_name
from app.sure2.assess import expected
from app.sure2.output import check_output
from app.sure2.season import Season
from app.sure2.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "app.sure2", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def catalogue(season_dir):
    with Season.open(season_dir) as s:
        return s.field_ids, {fid: expected(s, fid, Settings()) for fid in s.field_ids}


def _valid(out, fid, catalogue):
    return check_output(out / f"{fid}.parquet", catalogue[1][fid]) is None


@pytest.mark.parametrize("bad", ["../x", "/abs", "", "x" * 65, "a b", "NO25-99999"])
def test_each_bad_id_exits_2_with_one_line_and_writes_nothing(season_dir, tmp_path, bad):
    out = tmp_path / "out"
    r = run_cli("assess", bad, "--data", str(season_dir), "--out", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert json.loads(r.stdout)["status"] == "bad_input"
    assert not out.exists()


def test_nul_in_an_id_from_a_file(season_dir, tmp_path, catalogue):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"a\0b\n")
    out = tmp_path / "out"
    r = run_cli("assess", "--ids-from", str(ids), "--data", str(season_dir), "--out", str(out))
    assert r.returncode == 2 and "NUL" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not out.exists()


def test_multi_id_call_does_the_good_ones_and_exits_nonzero(season_dir, tmp_path, catalogue):
    good = catalogue[0][:3]
    out = tmp_path / "out"
    r = run_cli("assess", good[0], "../etc", good[1], "NO25-99999", good[2], "--data", str(season_dir),
                "--out", str(out))
    assert r.returncode == 2
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert {d["field_id"]: d["status"] for d in lines} == {**{g: "ok" for g in good}, "../etc": "bad_input",
                                                          "NO25-99999": "bad_input"}
    assert len(r.stderr.splitlines()) == 2
    assert sorted(os.listdir(out)) == sorted(f"{g}.parquet" for g in good)
    assert all(_valid(out, g, catalogue) for g in good)


def test_ids_from_stdin_and_env_defaults(season_dir, tmp_path, catalogue):
    ids = catalogue[0][10:30]
    out = tmp_path / "out"
    r = run_cli("assess", "--ids-from", "-", stdin="\n".join(ids) + "\n",
                env={"SURE2_DATA": str(season_dir), "SURE2_OUT": str(out)})
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(d["field_id"] for d in lines) == sorted(ids)
    assert all(d["status"] == "ok" and d["currency"] == "NOK" for d in lines)
    assert all(_valid(out, fid, catalogue) for fid in ids)


def test_missing_season_is_exit_3(tmp_path):
    r = run_cli("assess", "NO25-00001", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out"))
    assert r.returncode == 3 and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_exit_3(season_dir, tmp_path, catalogue):
    full = tmp_path / "file"
    full.write_text("x")  # --out below a regular file cannot be created
    r = run_cli("assess", catalogue[0][0], "--data", str(season_dir), "--out", str(full / "out"))
    assert r.returncode == 3


def test_kill_9_inside_the_write_leaves_no_partial_file(season_dir, tmp_path, catalogue):
    """The process dies (SIGKILL) after the bytes hit the temp file but before the rename."""
    fid = catalogue[0][0]
    out = tmp_path / "out"
    child = f"""
import os, signal, sys
import pyarrow.parquet as pq
real = pq.write_table
def write_then_die(table, where, **kw):
    real(table, where, **kw)
    with open(where, "r+b") as f:
        f.truncate(os.path.getsize(where) // 2)  # a torn write, as if killed mid-way
    os.kill(os.getpid(), signal.SIGKILL)
pq.write_table = write_then_die
from app.sure2.cli import main
main(["assess", {fid!r}, "--data", {str(season_dir)!r}, "--out", {str(out)!r}])
"""
    r = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL
    left = os.listdir(out)
    assert f"{fid}.parquet" not in left
    assert left and all(is_temp_name(name) for name in left)  # the torn bytes only under a temp name
    r = run_cli("assess", fid, "--data", str(season_dir), "--out", str(out))
    assert r.returncode == 0 and _valid(out, fid, catalogue)


def test_kill_9_during_a_batch_leaves_only_valid_outputs(season_dir, tmp_path, catalogue):
    ids = catalogue[0]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "app.sure2", "assess", "--ids-from", "-", "--data",
                             str(season_dir), "--out", str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    proc.stdin.write("\n".join(ids) + "\n")
    proc.stdin.close()
    for _ in range(5):  # let it get going, then kill it mid-stream
        proc.stdout.readline()
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    finals = [n for n in os.listdir(out) if not is_temp_name(n)]
    assert 5 <= len(finals) < len(ids)
    assert all(_valid(out, n.removesuffix(".parquet"), catalogue) for n in finals)


@pytest.fixture
def tiny_tmpfs(tmp_path, as_root):
    """A real full-disk condition: a 48 KiB tmpfs (root only)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_stops_with_exit_3_and_only_valid_files(season_dir, tiny_tmpfs, catalogue):
    ids = catalogue[0][:20]  # ≈5 KB each: the tmpfs fills after a handful
    out = tiny_tmpfs / "out"
    r = run_cli("assess", *ids, "--data", str(season_dir), "--out", str(out))
    assert r.returncode == 3
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == len(ids)
    errors = [d for d in lines if d["status"] == "error"]
    assert errors and "No space left" in errors[0]["reason"]
    assert all(d["reason"].startswith("not attempted") for d in errors[1:])
    written = os.listdir(out)
    assert len(written) == len(ids) - len(errors)  # no temp files left behind either
    assert all(_valid(out, n.removesuffix(".parquet"), catalogue) for n in written)


@pytest.mark.parametrize("flags,why", [
    (["--lambda", "-1"], "--lambda must be > 0"),
    (["--lambda", "0"], "cannot fill the cloudy"),
    (["--lambda", "nan"], "finite number"),
    (["--lambda", "inf"], "finite number"),
    (["--min-coverage", "0"], "--min-coverage must be in (0, 1]"),
    (["--min-field-coverage", "1.5"], "--min-field-coverage must be in (0, 1]"),
    (["--min-observed-share", "-0.1"], "--min-observed-share must be in [0, 1]"),
])
def test_invalid_settings_exit_2_with_one_line_and_write_nothing(season_dir, tmp_path, catalogue, flags, why):
    out = tmp_path / "out"
    r = run_cli("assess", catalogue[0][0], *flags, "--data", str(season_dir), "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and why in r.stderr, r.stderr
    assert not out.exists()


def test_settings_are_recorded_and_part_of_validity(season_dir, tmp_path, catalogue):
    import pyarrow.parquet as pq

    fid = catalogue[0][0]
    out = tmp_path / "out"
    r = run_cli("assess", fid, "--lambda", "50", "--min-coverage", "0.8", "--data", str(season_dir), "--out", str(out))
    assert r.returncode == 0, r.stderr
    recorded = json.loads(pq.read_metadata(out / f"{fid}.parquet").metadata[b"settings"])
    assert recorded["lam"] == 50.0 and recorded["min_coverage"] == 0.8
    assert not _valid(out, fid, catalogue)  # made with other settings than the defaults
