"""A national season for the batch's bookkeeping: claims, journal replay, plan and report at scale.

  nice python bench/batch_scale.py [--work /dev/shm/x] claims [--workers 2 8 32 128] [--fields 100000]
  nice python bench/batch_scale.py [--work DIR] participants [--runs 2 8 32] [--fields 40000]
  nice python bench/batch_scale.py [--work DIR] replay [--fields 100000 1000000]
  nice python bench/batch_scale.py [--work DIR] plan-report [--fields 1000000]
  nice python bench/batch_scale.py [--work DIR] worker-start [--fields 13510 1000000]

No-op assessments throughout: this measures the journal, the claims and the planner, not the science.
- claims: one run's dispatcher (app.batch.pool, the real one) with N worker processes that speak the
  worker protocol but assess nothing; fields claimed, dispatched and recorded per second.
- participants: N independent journal participants (N runs at once, e.g. a throttled preproc array)
  claiming chunks of one field list; fields per second over all of them.
- replay: a journal as a finished batch of F fields leaves it (chunked claims, starts, outcomes with
  summaries and file identities, heartbeats); a new run joining it: from opening the journal to its
  first claim, from byte 0 and from a snapshot (and what writing the snapshot costs). A worker joining
  a run reads no journal at all: it is working once its imports are done.
- worker-start: a real worker (`python -m app.batch worker`, inproc backend) spawned as a run's
  dispatcher spawns it, on a season of F fields: seconds until it reports its first chunk begun
  (imports, the season opened, the output checker ready), and its peak memory by then (VmHWM).
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
from app.batch.policy import FailurePolicy  # noqa: E402
from app.batch.state import BatchState  # noqa: E402

OWNER = "bench|b00t|1|{pid}|{start}"
SUMMARY = {"outcome": "assessed", "reason": "", "detail": "", "raster_coverage": 1.0, "observed_share": 0.93,
           "events": "", "payout": 0.0, "amount_cents": 0, "currency": "NOK", "index_value": 0.021}


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def field_ids(n: int) -> list[str]:
    return [f"F{k:07d}" for k in range(n)]


# --- claims ---------------------------------------------------------------------------------------

def claimer(journal: str, n: int, chunk: int, go: str) -> None:
    fields = field_ids(n)
    board = ClaimBoard(Journal(journal), lease_s=120)
    picker = Picker(fields, since=0.0, failures=FailurePolicy())
    while not os.path.exists(go):
        time.sleep(0.001)
    done = []
    while True:
        got = board.claim(picker, chunk, release=done, extra=[{"ok": f, "sec": 0.0} for f in done])
        if not got:
            break
        done = got
    board.record([{"exit": 1}])


NOOP_WORKER = """
import json, os, sys
fd = int(sys.argv[sys.argv.index("--progress-fd") + 1])
send = lambda line: os.write(fd, (line + "\\n").encode())
for line in sys.stdin:
    chunk = json.loads(line)
    send("B " + json.dumps(chunk))
    send("S " + json.dumps(chunk))
    for fid in chunk:
        send("O " + json.dumps({"ok": fid, "sec": 0.0}))
    send("E")
"""


def claims_row(journal: Path, n: int, wall: float, **what) -> dict:
    """Check every field ended ok in the journal; the row printed and returned."""
    state = BatchState()
    state.apply(Journal(journal).read_new())
    oks = sum(1 for o in state.outcome.values() if o.kind == "ok")
    assert oks == n, f"{oks} fields ok of {n}"
    row = {**what, "fields": n, "wall_s": round(wall, 2), "claims_per_s": round(n / wall)}
    print(json.dumps(row), flush=True)
    return row


def bench_claims(work: Path, workers: list[int], n: int, chunk: int) -> list[dict]:
    """The real dispatcher and journal with N no-op workers."""
    from app.batch.pool import WorkerPool

    rows = []
    for w in workers:
        d = fresh_dir(work / f"dispatch-{w}")
        board = ClaimBoard(Journal(d / "journal.log"), lease_s=120)
        picker = Picker(field_ids(n), since=0.0, failures=FailurePolicy())
        pool = WorkerPool([sys.executable, "-c", NOOP_WORKER], dict(os.environ), board, picker, chunk,
                          field_timeout_s=300, heartbeat_s=30)
        pool.start(w)
        time.sleep(0.5 + w * 0.02)  # python start-up of the workers: not the dispatcher's cost
        t0 = time.monotonic()
        assert pool.supervise(lambda: None) == 0
        wall = time.monotonic() - t0
        rows.append(claims_row(d / "journal.log", n, wall, workers=w, chunk=chunk))
    return rows


def bench_participants(work: Path, runs: list[int], n: int, chunk: int) -> list[dict]:
    rows = []
    for w in runs:
        d = fresh_dir(work / f"claims-{w}")
        go = d / "go"
        procs = [subprocess.Popen([sys.executable, __file__, "_claimer", str(d / "journal.log"), str(n), str(chunk),
                                   str(go)]) for _ in range(w)]
        time.sleep(1.0 + w * 0.06)  # let every process import and open the journal
        t0 = time.monotonic()
        go.touch()
        for p in procs:
            p.wait()
        wall = time.monotonic() - t0
        rows.append(claims_row(d / "journal.log", n, wall, participants=w, chunk=chunk))
    return rows


# --- replay ----------------------------------------------------------------------------------------

def write_finished_journal(path: Path, n: int, chunk: int = 16, runs: int = 8, context="0123456789abcdef") -> None:
    """What a finished batch of n fields leaves, record for record as the dispatchers write it: per
    chunk a claim, a start, the results and outcomes, the release; heartbeats; an exit per run."""
    t = 1.7e9
    with open(path, "w") as f:
        write = lambda rec: f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        for i, start in enumerate(range(0, n, chunk)):
            owner = OWNER.format(pid=1000 + i % runs, start=1)
            ids = [f"F{k:07d}" for k in range(start, min(n, start + chunk))]
            write({"o": owner, "claim": ids, "t": t})
            write({"o": owner, "start": ids, "t": t})
            write({"r": [[fid, 0.003, SUMMARY, [5821, 1_700_000_000_000_000_000 + k, 1000 + k], context]
                         for k, fid in enumerate(ids, start)], "o": owner, "t": t})
            write({"o": owner, "ok": ids, "t": t})
            write({"o": owner, "release": ids, "t": t})
            if i % 64 == 0:
                write({"o": owner, "hb": 1, "t": t})
            t += 0.001
        for w in range(runs):
            write({"o": OWNER.format(pid=1000 + w, start=1), "exit": 1, "t": t})


def join_time(layout, n: int) -> float:
    """Seconds from opening the journal (through its snapshot, if any) to a new run's first claim."""
    from app.batch.snapshot import open_board

    t0 = time.perf_counter()
    board = open_board(layout, lease_s=120)
    picker = Picker(field_ids(n), since=0.0, failures=FailurePolicy())
    board.claim(picker, 16)
    board.journal.close()
    return time.perf_counter() - t0


def bench_replay(work: Path, sizes: list[int]) -> list[dict]:
    from app.batch.layout import BatchLayout
    from app.batch.snapshot import open_board, write

    rows = []
    for n in sizes:
        d = work / f"replay-{n}"
        shutil.rmtree(d, ignore_errors=True)
        layout = BatchLayout(d)
        layout.create()
        write_finished_journal(layout.journal, n)
        row = {"fields": n, "journal_mb": round(layout.journal.stat().st_size / 1e6, 1),
               "join_from_byte_0_s": round(join_time(layout, n), 3)}
        board = open_board(layout, lease_s=120)
        board.sync()
        t0 = time.perf_counter()
        write(layout, board.state, board.journal.position())
        row["snapshot_write_s"] = round(time.perf_counter() - t0, 3)
        row["join_from_snapshot_s"] = round(join_time(layout, n), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# --- plan and report ------------------------------------------------------------------------------

def fake_season(path: Path, n: int) -> None:
    """n fields of 1 ha squares on a grid in UTM 33N, one stack, a baseline: the contract, no pixels
    (planning and reporting never open the raster)."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely
    from affine import Affine
    from pyproj import Transformer

    from app.sure2.season import FORMAT, stack_entry

    path.mkdir(parents=True, exist_ok=True)
    side = int(np.ceil(np.sqrt(n)))
    k = np.arange(n)
    x0, y0 = 300_000.0 + (k % side) * 150.0, 6_500_000.0 + (k // side) * 150.0
    boxes = shapely.box(x0, y0, x0 + 100, y0 + 100)
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lonlat = shapely.transform(boxes, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    ids = field_ids(n)
    fields = pa.table({
        "field_id": ids, "crop": ["barley"] * n, "geometry": shapely.to_wkb(lonlat), "area_ha": np.ones(n),
        "sowing_date": [dt.date(2025, 5, 1)] * n, "harvest_date": [dt.date(2025, 8, 20)] * n,
        "region_id": [f"R{i % 40}" for i in range(n)], "insured_sum": np.full(n, 9000.0), "currency": ["NOK"] * n,
        "index": ["ndvi_integral"] * n, "trigger": np.full(n, 0.1), "exit": np.full(n, 0.4),
        "stack": ["ndvi"] * n, "note": pa.nulls(n, pa.string()), "source_id": ids})
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}}}
    pq.write_table(fields.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), path / "fields.parquet")
    pq.write_table(pa.table({"region_id": ["R0"], "crop": ["barley"], "doy": [100], "ndvi_mean": [0.5],
                             "ndvi_std": [0.1], "n_samples": [10]}), path / "baseline.parquet")
    (path / "ndvi.tif").write_bytes(b"")  # never opened: planning and reporting read no pixel
    dates = [dt.date(2025, 4, 1) + dt.timedelta(days=5 * i) for i in range(37)]
    width = height = side * 15 + 10
    stacks = {"ndvi": stack_entry("ndvi.tif", "EPSG:32633", Affine(10, 0, 300_000, 0, -10, 6_500_000 + height * 10),
                                  width, height, 128, -32768, dates)}
    files = {"fields.parquet": "-", "baseline.parquet": "-", "ndvi.tif": "-"}
    (path / "season.json").write_text(json.dumps({"format": FORMAT, "stacks": stacks, "files": files,
                                                  "fingerprint": "f" * 64, "n_fields": n}))


def recorded_outputs(season_dir: Path, out: Path, n: int) -> None:
    """n output files the journal records as verified in this run's context (planning trusts them)."""
    from app.batch.layout import BatchLayout
    from app.batch.outputs import context_of
    from app.sure2.season import Season
    from app.sure2.settings import Settings

    layout = BatchLayout(out)
    layout.create()
    with Season.open(season_dir) as season:
        context = context_of(season, Settings())
    with open(layout.journal, "w") as f:
        for start in range(0, n, 2000):
            ids = field_ids(n)[start:start + 2000] if start == 0 else [f"F{k:07d}" for k in range(start, min(n, start + 2000))]
            results = []
            for fid in ids:
                fd = os.open(out / f"{fid}.parquet", os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, b"x")
                st = os.fstat(fd)
                os.close(fd)
                results.append([fid, 0.003, SUMMARY, [st.st_size, st.st_mtime_ns, st.st_ino], context])
            f.write(json.dumps({"r": results, "o": "bench|x|1|1|1", "t": 1.7e9}, separators=(",", ":")) + "\n")
            f.write(json.dumps({"o": "bench|x|1|1|1", "ok": ids, "t": 1.7e9}, separators=(",", ":")) + "\n")


def bench_plan_report(work: Path, n: int) -> dict:
    season, out = work / f"season-{n}", work / f"out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if not (season / "season.json").exists():
        fake_season(season, n)
    recorded_outputs(season, out, n)
    row = {"fields": n, "setup_s": round(time.perf_counter() - t0, 1)}
    for step in ("plan", "report"):
        cmd = [sys.executable, "-m", "app.batch", step, "--data", str(season), "--out", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        row[f"{step}_s"] = round(time.perf_counter() - t0, 1)
        row[f"{step}_rc"] = proc.returncode
        if step == "plan":
            row["planned"] = len(proc.stdout.split())
        print(proc.stderr.strip().splitlines()[-1][:300], file=sys.stderr)
    print(json.dumps(row), flush=True)
    return row


# --- a worker joining --------------------------------------------------------------------------

def bench_worker_start(work: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        season, out = work / f"season-{n}", work / f"worker-out-{n}"
        if not (season / "season.json").exists():
            fake_season(season, n)
        shutil.rmtree(out, ignore_errors=True)
        read_fd, write_fd = os.pipe()
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "app.batch", "worker", "--data", str(season), "--out", str(out),
                                 "--backend", "inproc", "--progress-fd", str(write_fd)], cwd=ROOT, pass_fds=(write_fd,),
                                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        os.close(write_fd)
        proc.stdin.write(json.dumps([field_ids(n)[n // 2]]) + "\n")
        proc.stdin.flush()
        with os.fdopen(read_fd) as events:
            first = events.readline()
            working = time.perf_counter() - t0
            peak = next(int(line.split()[1]) for line in open(f"/proc/{proc.pid}/status") if line.startswith("VmHWM"))
            proc.stdin.close()
            proc.wait()
        assert first.startswith("B "), first
        row = {"fields": n, "worker_working_s": round(working, 2), "worker_peak_mib": peak // 1024}
        print(json.dumps(row), flush=True)
        rows.append(row)
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
    c.add_argument("--fields", type=int, default=100_000)
    c.add_argument("--chunk", type=int, default=16)
    c = sub.add_parser("participants")
    c.add_argument("--runs", type=int, nargs="+", default=[2, 8, 32])
    c.add_argument("--fields", type=int, default=40_000)
    c.add_argument("--chunk", type=int, default=16)
    r = sub.add_parser("replay")
    r.add_argument("--fields", type=int, nargs="+", default=[100_000, 1_000_000])
    r = sub.add_parser("plan-report")
    r.add_argument("--fields", type=int, default=1_000_000)
    r = sub.add_parser("worker-start")
    r.add_argument("--fields", type=int, nargs="+", default=[13_510, 1_000_000])
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "claims":
        bench_claims(work, args.workers, args.fields, args.chunk)
    elif args.what == "participants":
        bench_participants(work, args.runs, args.fields, args.chunk)
    elif args.what == "replay":
        bench_replay(work, args.fields)
    elif args.what == "worker-start":
        bench_worker_start(work, args.fields)
    elif args.what == "plan-report":
        bench_plan_report(work, args.fields)


if __name__ == "__main__":
    main()
