"""`run`: plan, start the workers, watch the journal for progress, stop everything on storage
failure, then sweep, write the season's report and choose the exit code.

Exit codes: 0 every requested field has a valid output: assessed, or explained (not_assessable,
insufficient_data: a field's own problem is its result, not a failure); 1 some field failed or was
given up, an ID in the list was not a field, or work is left (a worker crashed); 2 usage or a settings
change refused; 3 storage/environment (disk full, quota, missing or unreadable season files, unusable
temp dir); 130 interrupted.
"""

import os
import shutil
import sys
import time
from collections import Counter

from app.batch.layout import BatchLayout
from app.batch.claims import Picker
from app.batch.plan import make_plan, sweep_dead_temp_files
from app.batch.policy import policy_from_args
from app.batch.snapshot import Snapshotter, open_board
from app.batch.pool import WorkerPool
from app.batch.progress import Progress
from app.batch.report import current_rows, run_section, season_report
from app.errors import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from app.hpc.cores import physical_cores
from app.hpc.filesystems import work_share
from app.hpc.tempdir import TEMP_ENV, pick_temp_dir, private_temp_dir
from app.hpc.threads import cap_threads
from app.sure2.ids import read_id_list
from app.sure2.outcome import STATUSES


def run_batch(args) -> int:
    cap_threads(1)  # the parent only plans and watches; workers inherit one thread each
    base = pick_temp_dir(force=args.force_temp)
    from app.sure2.season import Season  # numpy & co. come with it: after the thread cap

    ids = read_id_list(args.fields) if args.fields else None
    layout = BatchLayout(args.out)
    with Season.open(args.data) as season:  # before anything is written: a bad --data writes nothing
        layout.create()
        tmp = private_temp_dir(base, "sure2-batch-")  # the workers' and containers' /tmp: ours alone
        try:
            board = open_board(layout, args.lease)
            with board.journal:
                return _plan_run_report(args, season, layout, board, ids, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _plan_run_report(args, season, layout, board, ids, tmp) -> int:
    workers = args.workers or physical_cores()
    since = time.time()  # the run's start: outcomes and (with --retry-failed) failures count from here
    policy = policy_from_args(args, since)
    plan = make_plan(season, layout, board, policy, ids)
    share, division = work_share(args.out)  # identical copies: claims, or disjoint shares (app.hpc.filesystems)
    if share:
        plan.todo = share.take(plan.todo)
    print(f"batch: plan {_fmt(plan.counts())}; {workers} workers ({args.backend}); {division}", file=sys.stderr)
    snapshots = Snapshotter(layout, board)
    snapshots.maybe(force=True)  # a run joining later loads it instead of replaying the whole journal
    progress = Progress(len(plan.todo), every_s=args.progress_every)
    counts = RunCounts(plan.todo, since)

    def tick():
        board.sync()
        progress.update(*counts.update(board.state, board.take_changed("progress")))
        snapshots.maybe()

    t0 = time.monotonic()
    pool = _worker_pool(args, plan.todo, since, policy, tmp, board)
    pool.start(min(workers, len(plan.todo)))
    stopped = pool.supervise(tick)
    wall = time.monotonic() - t0
    board.sync()
    progress.finish(*counts.update(board.state, board.take_changed("progress")))
    if stopped == EXIT_INTERRUPTED:
        return EXIT_INTERRUPTED
    requested = plan.todo + plan.valid + list(plan.given_up)
    try:
        sweep_dead_temp_files(board, layout)
        if args.no_report:  # a wrapper writes the season's report once, after all its steps
            rows = current_rows(season, layout, board, policy, requested)
        else:
            run = run_section(plan, board.sync(), since, wall, workers, args.backend)
            rows = season_report(season, layout, board, policy, run, quiet=args.quiet)
    except OSError as exc:  # the disk that just filled up may refuse the report too
        print(f"batch: report not written: {exc}", file=sys.stderr)
        return stopped or EXIT_ENVIRONMENT
    snapshots.maybe(force=True)
    if stopped:
        return stopped
    if plan.bad_ids or any(rows[fid]["state"] not in STATUSES for fid in requested):
        return EXIT_FAILED
    return EXIT_OK


def _fmt(counts: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


class RunCounts:
    """(done, failed, skipped) among the planned fields from outcomes since the run began, kept up to
    date from the fields each replay changed (a national plan is never re-counted whole)."""

    def __init__(self, todo: list, since: float):
        self.todo, self.since = set(todo), since
        self.kind = {}  # field -> its last outcome kind in this run
        self.totals = Counter()

    def update(self, state, changed) -> tuple[int, int, int]:
        for fid in changed:
            out = state.outcome.get(fid)
            if fid in self.todo and out is not None and out.t >= self.since and self.kind.get(fid) != out.kind:
                self.totals[self.kind.get(fid)] -= 1
                self.kind[fid] = out.kind
                self.totals[out.kind] += 1
        t = self.totals
        return t["ok"], t["fail"] + t["bad"], t["skip"]


def _worker_pool(args, todo, since, policy, tmp, board) -> WorkerPool:
    env = dict(os.environ)
    cap_threads(1, env)
    env[TEMP_ENV] = env["TMPDIR"] = str(tmp)
    cmd = [
        sys.executable, "-m", "app.batch", "worker",
        "--data", str(args.data), "--out", str(args.out), "--backend", args.backend,
        "--parent-pid", str(os.getpid()), "--tmp", str(tmp), "--apptainer", args.apptainer,
        "--settings-change", args.settings_change, *args.settings.cli_args(),
    ]
    if args.image:
        cmd += ["--image", str(args.image)]
    picker = Picker(todo, since=since, failures=policy.failures)
    return WorkerPool(cmd, env, board, picker, args.chunk, args.field_timeout, heartbeat_s=args.lease / 4)
