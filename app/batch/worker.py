"""One worker process: assess the chunks its parent (`run`, app.batch.pool) sends, report every
outcome back. It never touches the journal: the parent is the node's one journal participant.

Started by `run` as `python -m app.batch worker ...`: chunks arrive on stdin (a JSON list of field IDs
per line; EOF = no more work), events go to the progress pipe (app.batch.watch): the chunk began, one
outcome per field (ok / skip / fail / bad, an invalid output moved aside), the chunk ended. Each field of
a chunk is re-checked first: an output that became valid meanwhile (another run) is a skip. Threads
are capped to 1 before the assessment (numpy, rasterio) is imported: N workers on N physical cores.
The worker dies with its parent (PR_SET_PDEATHSIG), so kill -9 of a batch leaves no orphan writing.
"""

import ctypes
import json
import os
import signal
import sys

from app.batch.backends import CommandBackend, InprocBackend, StopBatch, apptainer_prefix, storage_message
from app.batch.backends import sure2_cli_prefix
from app.batch.layout import BatchLayout
from app.batch.outputs import OutputChecker, context_of, identity, is_settings_problem
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
    layout = BatchLayout(args.out)
    progress = ProgressPipe(args.progress_fd)
    backend = _make_backend(args)  # the season opens here, after the thread cap
    checker = _checker(backend, args)
    context = context_of(checker.season, args.settings)
    keep = args.settings_change == "keep"
    try:
        for line in sys.stdin:
            chunk = json.loads(line)
            progress.begin(chunk)
            todo = [fid for fid in chunk if _recheck(fid, checker, layout, progress, context, keep)]
            progress.starting(todo)
            for outcome in backend.run(todo):
                if "ok" in outcome:  # the file as written: later plans trust it while it stays so
                    outcome.update(f=identity(checker.path(outcome["ok"])), c=context)
                progress.outcome(outcome)
            progress.end()
        return 0
    except StopBatch as exc:
        print(f"batch: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except OSError as exc:  # the outputs' storage
        if not is_storage_error(exc):
            raise
        print(f"batch: {storage_message(exc, args.out)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    finally:
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


def _recheck(fid, checker, layout, progress, context, keep_other_settings) -> bool:
    """True if fid still needs assessing; a valid output is reported as a skip (with its identity only
    when valid for this run's settings: a kept one is checked again next time), an invalid one is
    moved aside."""
    from app.sure2.output import footer_summary

    reason = checker.problem(fid)
    path = checker.path(fid)
    if reason is None:
        progress.outcome({"skip": fid, "s": footer_summary(path), "f": identity(path), "c": context})
        return False
    if keep_other_settings and is_settings_problem(reason):
        progress.outcome({"skip": fid, "s": footer_summary(path)})
        return False
    if os.path.exists(path):
        moved = layout.move_aside(path)
        progress.outcome({"invalid": fid, "why": reason, "moved": str(moved)})
    return True
