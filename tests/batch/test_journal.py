import json
import os
import subprocess
import sys

from app.batch.journal import Journal


def test_records_round_trip_in_order(tmp_path):
    with Journal(tmp_path / "j.log") as j:
        with j.locked():
            assert j.read_new() == []
            j.append([{"o": "a", "claim": ["F1", "F2"]}, {"o": "a", "hb": 1}])
        recs = j.read_new()
    assert [r.get("claim") for r in recs] == [["F1", "F2"], None]
    assert all("t" in r for r in recs)


def test_partial_line_from_a_killed_writer_is_skipped(tmp_path):
    path = tmp_path / "j.log"
    with Journal(path) as j:
        with j.locked():
            j.read_new()
            j.append([{"o": "a", "start": ["F1"]}])
        with open(path, "ab") as f:  # what kill -9 or ENOSPC mid-write leaves: no newline
            f.write(b'{"o":"b","ok":"F')
        with j.locked():
            j.read_new()
            j.append([{"o": "c", "ok": "F2"}])
    with Journal(path) as fresh:
        recs = fresh.read_new()
    assert [r["o"] for r in recs] == ["a", "c"]
    assert path.read_bytes().count(b"\n") == 3


def test_watcher_without_lock_sees_only_complete_lines(tmp_path):
    path = tmp_path / "j.log"
    with Journal(path) as writer, Journal(path) as watcher:
        with open(path, "ab") as f:
            f.write(b'{"o":"x","hb":1}\n{"o":"x","ok"')
        assert [r["o"] for r in watcher.read_new()] == ["x"]
        with open(path, "ab") as f:
            f.write(b':"F9"}\n')
        assert watcher.read_new()[0]["ok"] == "F9"
        writer.close()


APPENDER = """
import sys
from app.batch.journal import Journal
j = Journal(sys.argv[1])
for i in range(200):
    with j.locked():
        j.read_new()
        j.append([{"o": sys.argv[2], "n": i}])
"""


def test_concurrent_appenders_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "j.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), f"p{k}"], cwd=os.getcwd()) for k in range(4)
    ]
    assert [p.wait() for p in procs] == [0] * 4
    lines = path.read_bytes().splitlines()
    recs = [json.loads(line) for line in lines]  # every line parses: no interleaving
    assert len(recs) == 800
    for k in range(4):
        assert [r["n"] for r in recs if r["o"] == f"p{k}"] == list(range(200))
