"""Real faults against the real batch: kill -9, concurrent runs, corrupted outputs, a full disk,
a killed worker. Each test asserts the end state from the files and the journal's attempt log."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from tests.batch.conftest import (
    BACKENDS, ROOT, assert_complete, attempts, batch_cmd, backend_args, journal_records, outcome_events,
    output_problems,
    run_batch, valid_fields,
)

KILLS = 12
WITNESS_IMAGE = "witness.sif"


@pytest.fixture
def witness(tmp_path, season_dir):
    """A backend the batch cannot influence: `apptainer` replaced by a wrapper that runs the real
    assessment CLI and appends every field it reports assessed to its own file. Returns
    (backend args, env, counts()) where counts() = {field: real assessments}."""
    log = tmp_path / "witness.log"
    wrapper = tmp_path / "witness-apptainer"
    wrapper.write_text(f"""#!{sys.executable}
import json, os, subprocess, sys
args = sys.argv[sys.argv.index({WITNESS_IMAGE!r}) + 1:]
out = next(a.split(":")[0] for a in sys.argv if a.endswith(":/out"))
proc = subprocess.Popen([sys.executable, "-m", "app.sure2", "assess", "--data", {str(season_dir)!r}, "--out", out,
                         *args], stdout=subprocess.PIPE, text=True, cwd={str(ROOT)!r})
for line in proc.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    rec = json.loads(line)
    if rec.get("status") == "ok":
        with open({str(log)!r}, "a") as f:  # O_APPEND, one short write: whole lines even when shared
            f.write(rec["field_id"] + "\\n")
sys.exit(proc.wait())
""")
    wrapper.chmod(0o755)

    def counts():
        lines = log.read_text().split() if log.exists() else []
        return {fid: lines.count(fid) for fid in set(lines)}

    return ["--backend", "apptainer", "--image", WITNESS_IMAGE, "--apptainer", str(wrapper)], counts


def identities(season, out) -> dict:
    """(inode, mtime_ns) of every valid output: a file rewritten after it was valid changes it."""
    return {fid: (os.stat(out / f"{fid}.parquet").st_ino, os.stat(out / f"{fid}.parquet").st_mtime_ns)
            for fid in valid_fields(season, out)}


def chunk_for(backend: str, inproc: int) -> int:
    """Command backends start a process (or container) per chunk: bigger chunks keep the tests quick."""
    return inproc if backend == "inproc" else 3 * inproc


def _kill_when(proc, out, ok_target, extra_s, started) -> bool:
    """SIGKILL the whole batch once `ok_target` fields finished in this run, then `extra_s` later
    (target 0: somewhere in start-up or planning). Moments are tied to progress, not wall time,
    so the test means the same on a fast or a contended machine. True if the kill hit a live batch."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = sum(1 for kind, _, _, t, _ in outcome_events(out) if kind == "ok" and t >= started)
        if done >= ok_target:
            break
        time.sleep(0.005)
    time.sleep(extra_s)
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        running = False  # it finished first
    proc.wait()
    return running


@pytest.mark.slow
@pytest.mark.parametrize("backend", [*BACKENDS, "witness"])
def test_kill_9_at_random_moments_then_resume(season, season_dir, tmp_path, backend, witness):
    """kill -9 of the whole batch at 12 moments tied to progress; judged also by witnesses the batch
    cannot influence: a valid output keeps its inode and mtime through every later kill and the resume
    (never rewritten), and the witness backend counts at most one real assessment per field."""
    out = tmp_path / "out"
    out.mkdir()
    rng = random.Random(20261128)
    valid_before = 0
    hits = 0
    first_seen = {}  # field -> identity of its output when first seen valid
    args = witness[0] if backend == "witness" else backend_args(backend)
    for k in range(KILLS):
        cmd = batch_cmd("run", season_dir, out, "--workers", 2, "--chunk", 2, "--quiet", *args)
        started = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = rng.choice([0, 1, 2, 3])
        # after fields finished, only a few ms more: at ~3 ms a field a longer delay would let a quiet
        # machine finish the whole season before the kills run out
        hit = _kill_when(proc, out, target, rng.uniform(0.0, 0.15 if target == 0 else 0.005), started)
        hits += hit and len(valid_fields(season, out)) < len(season.field_ids)
        # whatever the moment, every output present is complete and valid (temp files may remain)
        problems = {n: why for n, why in output_problems(season, out).items() if why != "temp file"}
        assert problems == {}, f"kill {k}: {problems}"
        now_valid = len(valid_fields(season, out))
        assert now_valid >= valid_before  # a kill never destroys finished work
        valid_before = now_valid
        for fid, ident in identities(season, out).items():
            assert first_seen.setdefault(fid, ident) == ident, f"kill {k}: {fid} was rewritten"
    assert hits >= 10, f"only {hits} of {KILLS} kills hit a batch with work left"

    done = subprocess.run(batch_cmd("run", season_dir, out, "--workers", 2, "--quiet", *args), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_complete(season, out)  # exactly one valid output per field, no temp or partial file
    assert not any((out / ".batch" / "invalid").iterdir())  # nothing was ever corrupt
    final = identities(season, out)
    assert all(final[fid] == ident for fid, ident in first_seen.items())  # the resume rewrote nothing valid
    if backend == "witness":
        assert max(witness[1]().values()) == 1  # no field assessed twice, by the witness's own count


@pytest.mark.parametrize("backend", [*BACKENDS, "witness"])
def test_four_concurrent_runs_assess_each_field_exactly_once(season, season_dir, tmp_path, backend, witness):
    out = tmp_path / "out"
    out.mkdir()
    args = witness[0] if backend == "witness" else backend_args(backend)
    cmd = batch_cmd("run", season_dir, out, "--workers", 1, "--chunk", chunk_for(backend, 3), "--quiet", *args)
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [rc for rc, _ in results] == [0] * 4, results
    assert_complete(season, out)
    counts = attempts(out)
    assert set(counts) <= set(season.field_ids)
    twice = {fid: n for fid, n in counts.items() if n != 1}
    assert twice == {}
    owners = {r["o"] for r in journal_records(out) if "start" in r}
    assert len(owners) >= 2  # the runs really shared the work
    if backend == "witness":  # and by a count the batch cannot influence: once each, none left out
        assert witness[1]() == {fid: 1 for fid in season.field_ids}


def _truncate(path, n):
    data = path.read_bytes()
    path.write_bytes(data[:-n])


def _wrong_row_count(path):
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)  # same metadata, one date short


def _flip_a_byte_in_a_data_page(path):
    """Bit rot under an intact footer: the last byte of the first column's data page (its body, which
    the page checksum covers), size unchanged."""
    chunk = pq.read_metadata(path).row_group(0).column(0)
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    data[end - 1] ^= 0x40
    path.write_bytes(bytes(data))


def _from_other_code(path):
    """A valid file whose footer names another build of the assessment."""
    table = pq.read_table(path)
    meta = {**table.schema.metadata, b"code_version": b"0.0.9+0123456789ab"}
    pq.write_table(table.replace_schema_metadata(meta), path, write_page_checksum=True)


CORRUPTIONS = {
    "bit flip in a data page": lambda p, other: _flip_a_byte_in_a_data_page(p),
    "output of other code": lambda p, other: _from_other_code(p),
    "truncated by 1 byte": lambda p, other: _truncate(p, 1),
    "truncated by 8 bytes": lambda p, other: _truncate(p, 8),
    "truncated by 100 bytes": lambda p, other: _truncate(p, 100),
    "zero bytes": lambda p, other: p.write_bytes(b""),
    "wrong row count": lambda p, other: _wrong_row_count(p),
    "another field's parquet": lambda p, other: shutil.copyfile(other, p),
    "random bytes": lambda p, other: p.write_bytes(random.Random(5).randbytes(p.stat().st_size)),
}


def test_every_corruption_is_detected_and_redone(season, season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = run_batch(season_dir, out)
    assert first.returncode == 0, first.stderr
    fields = season.field_ids
    victims = dict(zip(CORRUPTIONS, fields[: len(CORRUPTIONS)]))
    donor = out / f"{fields[-1]}.parquet"
    for kind, fid in victims.items():
        CORRUPTIONS[kind](out / f"{fid}.parquet", donor)
    assert set(output_problems(season, out)) == {f"{fid}.parquet" for fid in victims.values()}

    plan = subprocess.run(batch_cmd("plan", season_dir, out), cwd=ROOT, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.split() == [fid for fid in fields if fid in victims.values()]  # 100 % detected
    moved = sorted(p.name.split(".parquet")[0] for p in (out / ".batch" / "invalid").iterdir())
    assert moved == sorted(victims.values())  # kept for inspection

    again = run_batch(season_dir, out)
    assert again.returncode == 0, again.stderr
    assert_complete(season, out)
    counts = attempts(out)
    assert {fid for fid, n in counts.items() if n == 2} == set(victims.values())  # redone, nothing else
    assert all(n in (1, 2) for n in counts.values())


def test_bit_rot_that_keeps_size_and_mtime_is_caught_by_a_full_verification(season, season_dir, tmp_path):
    """Planning trusts a file the batch recorded as valid while its size, mtime and inode hold; real bit
    rot can keep all three, so `--verify full` reads every file (the trade-off, made visible)."""
    out = tmp_path / "out"
    assert run_batch(season_dir, out).returncode == 0
    victim = out / f"{season.field_ids[3]}.parquet"
    st = victim.stat()
    _flip_a_byte_in_a_data_page(victim)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_ino == st.st_ino and victim.stat().st_size == st.st_size
    trusted = subprocess.run(batch_cmd("plan", season_dir, out), cwd=ROOT, capture_output=True, text=True)
    assert trusted.returncode == 0 and trusted.stdout == ""
    full = subprocess.run(batch_cmd("plan", season_dir, out, "--verify", "full"), cwd=ROOT, capture_output=True,
                          text=True)
    assert full.returncode == 0 and full.stdout.split() == [season.field_ids[3]], full.stderr
    assert "corrupt data page" in full.stderr


def test_outputs_of_other_settings_are_refused_kept_or_redone_as_asked(season, season_dir, tmp_path):
    out = tmp_path / "out"
    assert run_batch(season_dir, out).returncode == 0
    journal = out / ".batch" / "journal.log"
    before = journal.stat().st_size, {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}

    refused = run_batch(season_dir, out, "--lambda", "5")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "--lambda auto (now 5.0)" in refused.stderr and "--settings-change" in refused.stderr
    assert (journal.stat().st_size, {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}) == before

    kept = run_batch(season_dir, out, "--lambda", "5", "--settings-change", "keep")
    assert kept.returncode == 0, kept.stderr
    assert set(attempts(out).values()) == {1}  # nothing redone
    assert f"kept other settings {len(season.field_ids)}" in kept.stderr

    redone = run_batch(season_dir, out, "--lambda", "5", "--settings-change", "redo")
    assert redone.returncode == 0, redone.stderr
    assert set(attempts(out).values()) == {2}
    lam = {json.loads(pq.read_metadata(p).metadata[b"settings"])["lam"] for p in out.glob("*.parquet")}
    assert lam == {5.0}


def _mount_tmpfs(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def test_full_disk_stops_cleanly_and_resumes(season, season_dir, tmp_path, as_root):
    out = tmp_path / "tiny"
    out.mkdir()
    _mount_tmpfs(out, "160k")  # room for a handful of outputs and the journal
    try:
        full = run_batch(season_dir, out)
        assert full.returncode == 3, full.stderr
        assert "No space left on device" in full.stderr and "rerun to resume" in full.stderr
        assert output_problems(season, out) == {}  # no partial or temp file
        assert 0 < len(valid_fields(season, out)) < len(season.field_ids)

        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        resumed = run_batch(season_dir, out)
        assert resumed.returncode == 0, resumed.stderr
        assert_complete(season, out)
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def _children(pid):
    try:
        text = open(f"/proc/{pid}/task/{pid}/children").read()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def test_a_killed_worker_costs_one_failure_and_its_chunk_is_dispatched_again(season, season_dir, tmp_path):
    """kill -9 of one worker mid-chunk: the field it was on counts a failure ("worker died"), the rest of
    its chunk goes to other workers, a replacement starts, and the batch still finishes everything."""
    out = tmp_path / "out"
    cmd = batch_cmd("run", season_dir, out, "--workers", 2, "--chunk", 10, "--quiet")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("start" in r for r in journal_records(out)):
        time.sleep(0.002)
    victim = _children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert_complete(season, out)
    died = [e for e in outcome_events(out) if e[0] == "fail"]
    assert len(died) == 1 and died[0][4].startswith("worker died (exit -9)"), died
    restarts = [r["t"] for r in journal_records(out) if died[0][1] in r.get("start", ())]
    assert restarts and max(restarts) > died[0][3]  # dispatched again after the death, and done


def test_a_killed_runs_claims_are_taken_over_by_another_run(season, season_dir, tmp_path):
    """kill -9 of a whole run (the journal participant, with its workers): its claims stay in the journal,
    unreleased; another run finds the owner dead (same host: exactly) and finishes them."""
    out = tmp_path / "out"
    cmd = batch_cmd("run", season_dir, out, "--workers", 1, "--chunk", 10, "--quiet")
    first = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    owner = None
    while owner is None and time.monotonic() < deadline:
        owner = next((r["o"] for r in journal_records(out) if "start" in r), None)
        time.sleep(0.002)
    assert owner is not None and owner.split("|")[-2] == str(first.pid)
    os.killpg(first.pid, signal.SIGKILL)  # mid-chunk
    first.wait()
    second = run_batch(season_dir, out, workers=1)
    assert second.returncode == 0, second.stderr
    assert_complete(season, out)
    records = journal_records(out)
    held = next(r["claim"] for r in reversed(records) if "claim" in r and r["o"] == owner)
    assert not any("exit" in r for r in records if r["o"] == owner)  # it never released anything
    finished_by = {fid: o for kind, fid, o, _, _ in outcome_events(out) if kind in ("ok", "skip")}
    assert held and all(finished_by[fid] != owner for fid in held)  # every one of them taken over


def test_sigterm_unwinds_cleanly_and_resumes(season, season_dir, tmp_path):
    """scancel / walltime: SIGTERM reaches the batch; workers unwind (no temp file), exit 130."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = batch_cmd("run", season_dir, out, "--workers", 1, "--chunk", 2, "--quiet")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(e[0] == "ok" for e in outcome_events(out)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert output_problems(season, out) == {}  # no temp file: the writers cleaned up after themselves
    assert len(valid_fields(season, out)) < len(season.field_ids)
    resumed = run_batch(season_dir, out)
    assert resumed.returncode == 0, resumed.stderr
    assert_complete(season, out)
