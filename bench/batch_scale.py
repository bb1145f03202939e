"""A national season for the batch's bookkeeping: claims, journal replay, plan and report at scale.

  nice python bench/batch_scale.py [--work /dev/shm/x] claims [--workers 2 8 32 128] [--fields 40000]
  nice python bench/batch_scale.py [--work DIR] replay [--fields 100000 1000000]
  nice python bench/batch_scale.py [--work DIR] plan-report [--fields 1000000]

No-op assessments throughout: this measures the journal, the claims and the planner, not the science.
- claims: N worker processes (started, then released together) claim chunks of the same field list
  through one journal and record a no-op "ok" per field; fields claimed per second over all of them.
- replay: a journal as a finished batch of F fields leaves it (chunked claims, starts, outcomes with
  summaries and file identities, heartbeats); a worker joining it: from opening the journal to its first
  claim, with and without a snapshot.
- plan-report: a season of F fields (small square polygons), F output files the journal records as
  verified (planning trusts their identity and reads none; that is the trusted path the issue allows),
  then `plan` and `report` as the CLI runs them (the report writes JSON, table, map and layer).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.batch.claims import ClaimBoard, Picker  # noqa: E402
from app.batch.journal import Journal  # noqa: E402
from app.batch.state import BatchState  # noqa: E402

OWNER = "bench|b00t|1|{pid}|{start}"
SUMMARY = {"outcome": "assessed", "reason": "", "detail": "", "raster_coverage": 1.0, "observed_share": 0.93,
           "events": "", "payout": 0.0, "amount_cents": 0, "currency": "NOK", "index_value": 0.021}


def field_ids(n: int) -> list[str]:
    return [f"F{k:07d}" for k in range(n)]


# --- claims ---------------------------------------------------------------------------------------

def claimer(journal: str, n: int, chunk: int, go: str) -> None:
    fields = field_ids(n)
    board = ClaimBoard(Journal(journal), lease_s=120, worker=True)
    picker = Picker(fields, since=0.0, max_failures=3, failures_since=0.0)
    while not os.path.exists(go):
        time.sleep(0.001)
    done = []
    while True:
        got = board.claim(picker, chunk, release=done, extra=[{"ok": f, "sec": 0.0} for f in done])
        if not got:
            break
        done = got
    board.record([{"exit": 1}])


def bench_claims(work: Path, workers: list[int], n: int, chunk: int) -> list[dict]:
    rows = []
    for w in workers:
        d = work / f"claims-{w}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        go = d / "go"
        procs = [subprocess.Popen([sys.executable, __file__, "_claimer", str(d / "journal.log"), str(n), str(chunk),
                                   str(go)]) for _ in range(w)]
        time.sleep(1.0 + w * 0.06)  # let every process import and open the journal
        t0 = time.monotonic()
        go.touch()
        for p in procs:
            p.wait()
        wall = time.monotonic() - t0
        state = BatchState()
        state.apply(Journal(d / "journal.log").read_new())
        oks = sum(1 for o in state.outcome.values() if o.kind == "ok")
        assert oks == n, f"{oks} fields ok of {n}"
        rows.append({"workers": w, "fields": n, "chunk": chunk, "wall_s": round(wall, 2),
                     "claims_per_s": round(n / wall)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# --- replay ----------------------------------------------------------------------------------------

def write_finished_journal(path: Path, n: int, chunk: int = 16, workers: int = 128) -> None:
    """What a finished batch of n fields leaves: per chunk a claim, a start, n outcomes, heartbeats."""
    t = 1.7e9
    with open(path, "w") as f:
        for i, start in enumerate(range(0, n, chunk)):
            owner = OWNER.format(pid=1000 + i % workers, start=1)
            ids = [f"F{k:07d}" for k in range(start, min(n, start + chunk))]
            f.write(json.dumps({"t": t, "o": owner, "claim": ids}, separators=(",", ":")) + "\n")
            f.write(json.dumps({"t": t, "o": owner, "start": ids}, separators=(",", ":")) + "\n")
            for fid in ids:
                f.write(json.dumps({"t": t, "o": owner, "ok": fid, "sec": 0.003, "s": SUMMARY,
                                    "f": [5821, 1_700_000_000_000_000_000 + i, 1000 + i], "c": "0123456789abcdef"},
                                   separators=(",", ":")) + "\n")
            if i % 8 == 0:
                f.write(json.dumps({"t": t, "o": owner, "hb": 1}, separators=(",", ":")) + "\n")
            t += 0.001
        for w in range(workers):
            f.write(json.dumps({"t": t, "o": OWNER.format(pid=1000 + w, start=1), "exit": 1}) + "\n")


def join_time(journal: Path, n: int) -> float:
    """Seconds from opening the journal to a new worker's first (empty-handed, all done) claim."""
    t0 = time.perf_counter()
    board = ClaimBoard(Journal(journal), lease_s=120)
    picker = Picker(field_ids(n), since=0.0, max_failures=3, failures_since=0.0)
    board.claim(picker, 16)
    return time.perf_counter() - t0


def bench_replay(work: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        d = work / f"replay-{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        journal = d / "journal.log"
        write_finished_journal(journal, n)
        row = {"fields": n, "journal_mb": round(journal.stat().st_size / 1e6, 1),
               "join_s": round(join_time(journal, n), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    if sys.argv[1:2] == ["_claimer"]:
        claimer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/dev/shm/batch-scale-bench")
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("claims")
    c.add_argument("--workers", type=int, nargs="+", default=[2, 8, 32, 128])
    c.add_argument("--fields", type=int, default=40_000)
    c.add_argument("--chunk", type=int, default=16)
    r = sub.add_parser("replay")
    r.add_argument("--fields", type=int, nargs="+", default=[100_000, 1_000_000])
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "claims":
        bench_claims(work, args.workers, args.fields, args.chunk)
    elif args.what == "replay":
        bench_replay(work, args.fields)


if __name__ == "__main__":
    main()
