"""One worker process: claim a chunk, re-check it, assess what is still needed, record, repeat.

Started by `run` as `python -m app.batch worker ...` with the plan on stdin (one ID per line).
Threads are capped to 1 before the assessment (numpy, rasterio) is imported (the batch's own
modules import neither): N workers on N physical cores. The worker dies with its parent (PR_SET_PDEATHSIG), so kill -9 of a batch leaves
no orphan still writing.
"""

import ctypes
import os
import signal
import sys
import time

from app.batch.backends import CommandBackend, InprocBackend, StopBatch, apptainer_prefix, storage_message
from app.batch.backends import sure2_cli_prefix
from app.batch.claims import Picker
from app.batch.layout import BatchLayout
from app.batch.outputs import OutputChecker, context_of, identity, is_settings_problem
from app.batch.snapshot import open_board
from app.batch.watch import ProgressPipe
from app.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, is_storage_error
from app.hpc.threads import cap_threads

PR_SET_PDEATHSIG = 1


class Interrupted(BaseException):
    """SIGTERM (scancel, walltime): unwind so atomic writers remove their temp files."""


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(137)


def _on_sigterm(signum, frame):
    raise Interrupted()


def worker_main(args) -> int:
    if args.parent_pid:
        _die_with_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, _on_sigterm)
    cap_threads(1)
    try:
        return _work(args)
    except (Interrupted, KeyboardInterrupt):  # also while starting up: nothing to clean then
        return EXIT_INTERRUPTED


def _work(args) -> int:
    fields = [line.strip() for line in sys.stdin if line.strip()]
    layout = BatchLayout(args.out)
    board = open_board(layout, args.lease, worker=True)  # the snapshot, then the journal after it
    picker = Picker(fields, since=args.since, max_failures=args.max_failures, failures_since=args.failures_since)
    backend = _make_backend(args)  # the season opens here, after the thread cap
    checker = _checker(backend, args)
    context = context_of(checker.season, args.settings)
    progress = ProgressPipe(args.progress_fd)
    stop_heartbeat = board.heartbeat_every(args.lease / 4)
    pending, chunk = [], []
    try:
        while True:
            chunk = board.claim(picker, args.chunk, release=chunk, extra=pending)
            pending = []
            if not chunk:
                if board.waiting_on_others(picker):
                    time.sleep(min(1.0, args.lease / 8))
                    continue
                return 0
            todo = _recheck(chunk, checker, layout, pending, context, args.settings_change == "keep")
            board.record(pending + [{"start": todo}] if todo else pending)
            pending = []
            progress.begin(todo)
            for outcome in backend.run(todo):
                if "ok" in outcome:  # the file as written: later plans trust it while it stays so
                    outcome.update(f=identity(checker.path(outcome["ok"])), c=context)
                pending.append(outcome)
                progress.done(next(outcome[k] for k in ("ok", "fail", "bad") if k in outcome))
            progress.end()
    except StopBatch as exc:
        print(f"batch: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except OSError as exc:  # the journal itself: same storage as the outputs, usually
        if not is_storage_error(exc):
            raise
        print(f"batch: {storage_message(exc, args.out)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    finally:
        stop_heartbeat.set()
        try:
            board.record(pending + [{"exit": 1}])
        except OSError:
            pass  # disk full: the claims expire with this process anyway
        backend.close()


def _make_backend(args):
    if args.backend == "inproc":
        return InprocBackend(args.data, args.out, args.settings)
    if args.backend == "apptainer":
        prefix = apptainer_prefix(args.image, args.out, args.tmp, args.apptainer)
    else:  # "cli": the image's runscript command from this Python, for tests without the image
        prefix = sure2_cli_prefix(args.data, args.out)
    return CommandBackend(prefix + args.settings.cli_args(), args.out)


def _checker(backend, args):
    season = getattr(backend, "season", None)
    if season is None:
        from app.sure2.season import Season

        season = Season.open(args.data)
    return OutputChecker(season, args.out, args.settings)


def _recheck(chunk, checker, layout, pending, context, keep_other_settings) -> list:
    """Fields of a fresh claim that still need work; valid ones are recorded as skipped (with their
    identity only when valid for this run's settings: a kept one is checked again next time)."""
    from app.sure2.output import footer_summary

    todo = []
    for fid in chunk:
        reason = checker.problem(fid)
        path = checker.path(fid)
        if reason is None:
            pending.append({"skip": fid, "s": footer_summary(path), "f": identity(path), "c": context})
            continue
        if keep_other_settings and is_settings_problem(reason):
            pending.append({"skip": fid, "s": footer_summary(path)})
            continue
        if path.exists():
            moved = layout.move_aside(path)
            pending.append({"invalid": fid, "why": reason, "moved": str(moved)})
        todo.append(fid)
    return todo
