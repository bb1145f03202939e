"""The commands that look rather than run: `plan`, `status`, `report`."""

import json
import sys
import time

from app.batch.claims import ClaimBoard
from app.batch.journal import Journal
from app.batch.layout import BatchLayout
from app.batch.plan import make_plan, read_id_list
from app.batch.report import build_report, write_report
from app.errors import EXIT_FAILED, EXIT_OK
from app.hpc.cores import physical_cores


def _open(args, tidy: bool):
    from app.sure2.season import Season

    ids = read_id_list(args.fields) if args.fields else None
    failures_since = time.time() if args.retry_failed else 0.0
    season = Season.open(args.data)  # before anything is written: a bad --data writes nothing
    layout = BatchLayout(args.out)
    layout.create()
    journal = Journal(layout.journal)
    board = ClaimBoard(journal, lease_s=args.lease)
    plan = make_plan(season, layout, board, ids, args.max_failures, failures_since, tidy=tidy)
    return season, journal, board, layout, plan


def plan_command(args) -> int:
    """Planned IDs on stdout (one a line, feed them to `run --fields -`), counts on stderr."""
    season, journal, _board, _layout, plan = _open(args, tidy=True)
    with season, journal:
        sys.stdout.write("".join(f + "\n" for f in plan.todo))
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in plan.counts().items())
        print(f"batch: plan {counts}", file=sys.stderr)
        for fid, reason, moved in plan.moved:
            print(f"batch: invalid output of {fid} ({reason}) moved to {moved}", file=sys.stderr)
        for bad, why in plan.bad_ids.items():
            print(f"batch: bad id {bad!r}: {why}", file=sys.stderr)
    return EXIT_FAILED if plan.bad_ids else EXIT_OK


def status_command(args) -> int:
    season, journal, board, _layout, plan = _open(args, tidy=False)
    with season, journal:
        now = time.time()
        live = board.state.live_owners(board.liveness, now)
        held = sum(len(board.state.held[o]) for o in live)
        last = max(board.state.last_seen.values(), default=None)
        status = {
            **plan.counts(),
            "live_workers": len(live),
            "fields_claimed": held,
            "last_activity_s_ago": None if last is None else round(now - last, 1),
            "given_up_fields": plan.given_up,
            "bad_id_list": plan.bad_ids,
        }
    if args.json:
        print(json.dumps(status, sort_keys=True))
    else:
        for key, value in status.items():
            if not isinstance(value, dict):
                print(f"{key.replace('_', ' '):<22} {value}")
        for fid, why in plan.given_up.items():
            print(f"given up  {fid}: {why}")
    return EXIT_OK


def report_command(args) -> int:
    """The report over all runs so far."""
    season, journal, board, layout, plan = _open(args, tidy=False)
    with season, journal:
        # No run: fields without a valid output are "remaining", whatever earlier runs recorded.
        report = build_report(season, layout, board.state, plan, time.time(), None, physical_cores(), "-")
        write_report(report, layout, args.data)
    return EXIT_FAILED if report["failures"] or report["bad_ids"] else EXIT_OK
