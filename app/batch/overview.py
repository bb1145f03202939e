"""The commands that look rather than run: `plan`, `status`, `report`."""

import json
import os
import sys
import time
from dataclasses import replace

from app.batch.snapshot import Snapshotter, open_board
from app.batch.layout import BatchLayout
from app.batch.plan import make_plan
from app.batch.policy import policy_from_args
from app.batch.report import season_report
from app.errors import EXIT_FAILED, EXIT_OK, EnvironmentFailure
from app.sure2.ids import read_id_list


def _open(args, looking: bool):
    """(season, journal, board, layout); looking (status, report) needs an output dir that exists."""
    from app.sure2.season import Season

    if looking and not os.path.isdir(args.out):
        raise EnvironmentFailure(f"output dir {args.out} does not exist (nothing has run there yet)")
    season = Season.open(args.data)  # before anything is written: a bad --data writes nothing
    layout = BatchLayout(args.out)
    layout.create()
    board = open_board(layout, args.lease)
    return season, board.journal, board, layout


def _plan(args, season, layout, board, tidy: bool):
    ids = read_id_list(args.fields) if args.fields else None
    policy = policy_from_args(args, time.time())
    if not tidy and policy.settings_change == "refuse":  # looking only: other settings' outputs count as to do
        policy = replace(policy, settings_change="redo")
    return make_plan(season, layout, board, policy, ids, tidy=tidy)


def plan_command(args) -> int:
    """Planned IDs on stdout (one a line, feed them to `run --fields -`), counts on stderr."""
    season, journal, board, layout = _open(args, looking=False)
    with season, journal:
        plan = _plan(args, season, layout, board, tidy=True)
        sys.stdout.write("".join(f + "\n" for f in plan.todo))
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in plan.counts().items())
        print(f"batch: plan {counts}", file=sys.stderr)
        for fid, reason, moved in plan.moved:
            print(f"batch: invalid output of {fid} ({reason}) moved to {moved}", file=sys.stderr)
        for bad, why in plan.bad_ids.items():
            print(f"batch: bad id {bad!r}: {why}", file=sys.stderr)
        Snapshotter(layout, board, every_s=0).maybe()  # a long replay is not repeated by the next reader
    return EXIT_FAILED if plan.bad_ids else EXIT_OK


def status_command(args) -> int:
    season, journal, board, layout = _open(args, looking=True)
    with season, journal:
        plan = _plan(args, season, layout, board, tidy=False)
        now = time.time()
        live = board.state.live_owners(board.liveness, now)
        held = sum(len(board.state.held[o]) for o in live)
        last = max(board.state.last_seen.values(), default=None)
        status = {
            **plan.counts(),
            "live_runs": len(live),
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
    """The season's report over all runs so far. Exit 1 if a field failed or was given up."""
    season, journal, board, layout = _open(args, looking=True)
    with season, journal:
        rows = season_report(season, layout, board, policy_from_args(args, time.time()))
        Snapshotter(layout, board, every_s=0).maybe()
    return EXIT_FAILED if any(r["state"] in ("failed", "given_up") for r in rows.values()) else EXIT_OK
