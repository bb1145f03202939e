"""assess_normal.sh on the local cluster's 4 normal nodes, through the real sure2.sif.

Each field is one step here (ASSESS_CHUNK_SIZE=1), so a dozen fields make a dozen steps for the fill
loop. Every step logs "node-run: step N on NODE: start T" / "end T exit RC" from the node itself; those
intervals show how many ran at once and where. "Valid" is judged by the batch's own status command
inside the image (footer, row count, field, code version, data fingerprint); "exactly once" by the
batch journal's per-field "ok" records and by outputs that the resubmission left untouched.
"""

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.container]

STEP = re.compile(r"^node-run: step (\d+) on (\S+): (start|end) ([\d.]+)(?: exit (\d+))?$", re.M)


def season_fields(image, scratch: Path, n: int) -> list[str]:
    scratch.mkdir()
    got = subprocess.run(
        ["apptainer", "exec", "--containall", "--cleanenv", "--bind", f"{scratch}:/out", str(image),
         "python", "-m", "app.batch", "plan", "--data", "/data", "--out", "/out"],
        capture_output=True, text=True, check=True,
    )
    fields = got.stdout.split()
    assert len(fields) >= n
    return fields[:n]


def batch_status(image, out: Path, fields_file: Path) -> dict:
    got = subprocess.run(
        ["apptainer", "exec", "--containall", "--cleanenv", "--bind", f"{out}:/out",
         "--bind", f"{fields_file}:/in/fields.txt:ro", str(image),
         "python", "-m", "app.batch", "status", "--data", "/data", "--out", "/out", "--fields", "/in/fields.txt",
         "--json"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(got.stdout)


def steps(log_text: str) -> dict:
    """step id -> {node, start, end, rc} for the srun steps (not the planning on the batch node)."""
    found = {}
    for step, node, what, t, rc in STEP.findall(log_text):
        s = found.setdefault(int(step), {"node": node})
        s[what] = float(t)
        if what == "end":
            s["rc"] = int(rc)
    return found


def ok_counts(out: Path) -> Counter:
    from tests.batch.conftest import outcome_events

    return Counter(fid for kind, fid, *_ in outcome_events(out) if kind == "ok")


def setup_batch(tmp_path, image, n):
    fields = season_fields(image, tmp_path / "scratch", n)
    fields_file = tmp_path / "fields 'list'.txt"
    fields_file.write_text("\n".join(fields) + "\n")
    out = tmp_path / "out dir"
    env = {
        "SURE2_IMAGE": str(image),
        "ASSESS_FIELDS": str(fields_file),
        "BIND_OUT": str(out),
        "ASSESS_CHUNK_SIZE": "1",
    }
    return fields, fields_file, out, env


def test_fills_four_nodes_one_step_each_and_all_outputs_are_valid(tmp_path, sure2_sif, jobs):
    fields, fields_file, out, env = setup_batch(tmp_path, sure2_sif, 12)
    job = jobs.submit("assess_normal.sh", env, f"--output={tmp_path}/job-%j.out")
    info = jobs.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"})
    log = (tmp_path / f"job-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED", log

    found = steps(log)
    assert len(found) == 12 and all(s["rc"] == 0 for s in found.values()), log
    nodes = {s["node"] for s in found.values()}
    assert nodes <= {"n1", "n2", "n3", "n4"} and len(nodes) >= 2

    # at most 4 at once, never two on one node
    events = sorted([(s["start"], 1, s["node"]) for s in found.values()] + [(s["end"], -1, s["node"]) for s in found.values()])
    running, busy = 0, Counter()
    for _t, delta, node in events:
        running += delta
        busy[node] += delta
        assert running <= 4
        assert busy[node] <= 1, f"two steps at once on {node}"

    status = batch_status(sure2_sif, out, fields_file)
    assert status["valid"] == 12 and status["todo"] == 0
    assert sorted(p.stem for p in out.glob("*.parquet")) == sorted(fields)
    assert set(ok_counts(out).values()) == {1}
    assert not (out / f".slurm-{job}").exists()  # chunk lists cleaned up
    assert not list(Path("/dev/shm").glob(f"*/{job}"))  # per-job RAM temp removed on every node

    # one report for the whole season, made inside the image at the end (not the last step's chunk)
    report = json.loads((out / ".batch" / "report.json").read_text())
    counts = report["counts"]
    done = counts["assessed"] + counts["not_assessable"] + counts["insufficient_data"]
    assert done == 12 and counts["remaining"] == report["season"]["fields"] - 12
    cents = [json.loads(pq.read_metadata(p).metadata[b"payout"]) for p in out.glob("*.parquet")]
    assert report["payout_total"].get("NOK", 0) == sum(c["amount_cents"] for c in cents if c) / 100
    assert (out / ".batch" / "payout_map.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / ".batch" / "season_result.parquet").is_file()
    assert "Season report" in log and "matplotlib" not in log  # the job log ends with it
    # each step was granted the whole node (256 CPUs as Slurm counts them, all the job's memory there)
    # and the batch inside ran one worker per physical core of what the step's cgroup allows
    grants = re.findall(r"^node-run: step \d+ on n\d: granted cpus (\d+) of (\d+) on the node, affinity \S+ "
                        r"\((\d+) CPUs, (\d+) cores\), memory limit (\d+) MiB", log, re.M)
    assert len(grants) == 12 and all(g[0] == g[1] == "256" for g in grants), log
    workers = {int(w) for w in re.findall(r"^batch: plan .*; (\d+) workers \(inproc\); one run: claims", log, re.M)}
    assert workers == {min(int(g[3]) for g in grants)}, log


def test_cancel_mid_way_then_resubmit_finishes_the_rest_exactly_once(tmp_path, sure2_sif, jobs):
    fields, fields_file, out, env = setup_batch(tmp_path, sure2_sif, 16)
    first = jobs.submit("assess_normal.sh", env, f"--output={tmp_path}/job-%j.out")
    jobs.wait_for("the first outputs", lambda: len(list(out.glob("*.parquet"))) >= 2, timeout=180, every=0.2)
    subprocess.run(["scancel", first], check=True)
    jobs.wait_state(first, {"CANCELLED"})
    # the job's steps may take a moment to die after the state flips: wait until nothing writes
    jobs.wait_for("the cancelled steps to stop", lambda: not subprocess.run(
        ["squeue", "-h", "-s", "-j", first], capture_output=True, text=True).stdout.strip(), timeout=60)

    assert not (out / f".slurm-{first}").exists()  # the cancelled job took its chunk lists along
    cancelled = (tmp_path / f"job-{first}.out").read_text()
    assert cancelled.rstrip().endswith("stopped by SIGTERM; finished work is kept: resubmit the same command to resume"), \
        cancelled[-2000:]
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    valid_before = batch_status(sure2_sif, out, fields_file)["valid"]
    assert 0 < valid_before < 16, "the cancel must land mid-way for this test to mean anything"

    second = jobs.submit("assess_normal.sh", env, f"--output={tmp_path}/job-%j.out")
    info = jobs.wait_state(second, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"})
    log = (tmp_path / f"job-{second}.out").read_text()
    assert info["JobState"] == "COMPLETED", log
    # the resubmission planned only what was left ...
    assert f"assess_normal.sh: {16 - valid_before} field(s) in" in log
    # ... left finished outputs alone, and finished everything
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet") if p.name in done_before} == done_before
    status = batch_status(sure2_sif, out, fields_file)
    assert status["valid"] == 16 and status["todo"] == 0
    counts = ok_counts(out)
    assert sorted(counts) == sorted(fields) and set(counts.values()) == {1}, counts
    assert jobs.info(second)["Restarts"] == "0"
