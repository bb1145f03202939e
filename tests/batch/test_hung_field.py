"""A hung field cannot hold a season: a field that hangs for real (its NDVI stack is a FIFO nobody
writes; its container stops itself) is released with reason `timeout`, retried elsewhere, given up
after --max-failures, and every other field is done."""

import hashlib
import json
import os
import re
import shutil
import stat
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.batch.conftest import attempts, outcome_events, output_problems, run_batch, valid_fields

TIMEOUT_S = {"fifo": 2, "stopped": 8}  # a chunk's first field includes the command's start-up (≈2 s loaded)


def _hanging_stack_season(season_dir, target, victim):
    """A copy of the season where `victim` lies in a second stack whose file is a FIFO: opening it blocks."""
    shutil.copytree(season_dir, target)
    manifest = json.loads((target / "season.json").read_text())
    manifest["stacks"]["hung"] = {**manifest["stacks"]["ndvi"], "file": "ndvi_hung.tif"}
    os.mkfifo(target / "ndvi_hung.tif")
    table = pq.read_table(target / "fields.parquet")
    stack = pc.if_else(pc.equal(table["field_id"], victim), "hung", table["stack"])
    table = table.set_column(table.schema.get_field_index("stack"), "stack", stack.cast(pa.string()))
    pq.write_table(table, target / "fields.parquet")
    manifest["files"]["fields.parquet"] = hashlib.sha256((target / "fields.parquet").read_bytes()).hexdigest()
    (target / "season.json").write_text(json.dumps(manifest))
    return target


def _stopping_apptainer(path, season_dir, victim):
    """A stand-in for `apptainer run SIF ...`: assesses the chunk's fields up to the victim, then stops
    itself (SIGSTOP) the way a wedged container sits: alive, silent, holding the chunk."""
    path.write_text(f"""#!/bin/bash
while [ "$1" != fake.sif ]; do shift; done
shift  # what is left: the runscript's arguments (settings, --ids-from -)
assess() {{ {sys.executable} -m app.sure2 assess --data {season_dir} --out "$SURE2_TEST_OUT" "$@"; }}
ids=$(cat)
before=$(sed -n '/^{victim}$/q;p' <<<"$ids")
if [ "$before" != "$ids" ]; then
  [ -z "$before" ] || assess "$@" <<<"$before"
  kill -STOP $$
fi
assess "$@" <<<"$ids"
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("hang", ["fifo stack (inproc)", "stopped container (apptainer backend)"])
def test_a_hung_field_is_released_retried_and_given_up(season, season_dir, tmp_path, hang):
    victim = season.field_ids[len(season.field_ids) // 2]
    out = tmp_path / "out"
    extra = ["--field-timeout", TIMEOUT_S[hang.split()[0]], "--max-failures", 2, "--chunk", 4]
    if hang.startswith("fifo"):
        data = _hanging_stack_season(season_dir, tmp_path / "season", victim)
        done = run_batch(data, out, *extra, timeout=240)
    else:
        data = season_dir
        fake = _stopping_apptainer(tmp_path / "apptainer", season_dir, victim)
        env = {**os.environ, "SURE2_TEST_OUT": str(out)}
        done = run_batch(data, out, *extra, "--backend", "apptainer", "--image", "fake.sif", "--apptainer", fake,
                         timeout=240, env=env)
    assert done.returncode == 1, done.stderr  # a given-up field is a failure of the batch
    assert f"{victim}: timeout" in done.stderr
    assert valid_fields(season, out) == set(season.field_ids) - {victim}  # the rest of the season is done
    assert output_problems(season, out) == {}  # and nothing half-written
    timeouts = [e for e in outcome_events(out) if e[0] == "fail" and e[1] == victim]
    assert len(timeouts) == 2 and all(why.startswith("timeout") for *_, why in timeouts)
    workers = {re.search(r"in worker (\d+)", why).group(1) for *_, why in timeouts}
    assert len(workers) == 2  # the second try was another worker's
    assert attempts(out)[victim] == 2
    report = json.loads((out / ".batch" / "report.json").read_text())
    (failure,) = report["failures"]
    assert failure["field_id"] == victim and failure["given_up"] and failure["reason"].startswith("timeout")
    # no worker or stopped stand-in is left behind
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and str(tmp_path) in _cmdline(p)]
    assert leftovers == []


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
