"""`python -m app.batch plan|run|status|report` (and `worker`, started by `run`).

--data and --out default to $SURE2_DATA and $SURE2_OUT, like the assessment's own CLI.
"""

import argparse
import os

from app.batch.watch import DEFAULT_FIELD_TIMEOUT_S
from app.errors import UsageParser, guarded

DEFAULT_CHUNK = 16  # fields per claim: one journal transaction and (apptainer) one container each
DEFAULT_LEASE_S = 120.0  # a silent owner on another node/container is dead after this long
DEFAULT_MAX_FAILURES = 3


def _common(p, out_only=False):
    p.add_argument("--out", default=os.environ.get("SURE2_OUT"), help="output dir (default $SURE2_OUT)")
    if not out_only:
        p.add_argument("--data", default=os.environ.get("SURE2_DATA"), help="season dir (default $SURE2_DATA)")
    p.add_argument("--lease", type=float, default=DEFAULT_LEASE_S, help="claim lease seconds (other nodes)")


def _settings(p):
    """The assessment's settings (they are part of an output's validity) and what to do about others."""
    from app.batch.plan import SETTINGS_CHANGE
    from app.sure2 import settings

    settings.add_arguments(p)
    p.add_argument("--settings-change", choices=SETTINGS_CHANGE, default="refuse",
                   help="outputs made with other settings: refuse to run (default), redo them, or keep them")


def _selection(p):
    p.add_argument("--fields", help="file with one field ID per line ('-' = stdin); default: the whole season")
    p.add_argument("--max-failures", type=int, default=DEFAULT_MAX_FAILURES, help="give a field up after this many")
    p.add_argument("--retry-failed", action="store_true", help="forget earlier failures and given-up fields")
    p.add_argument("--verify", choices=("trusted", "full"), default="trusted",
                   help="trusted (default): read in full only outputs the batch has not recorded as valid as they "
                        "are now (same size, mtime, inode, code, data, settings); full: read every output in full")
    _settings(p)


def parser() -> argparse.ArgumentParser:
    ap = UsageParser(prog="python -m app.batch", description="Resumable batch of Sure2 assessments.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=UsageParser, metavar="{plan,run,status,report}")

    p = sub.add_parser("plan", help="print the fields still needing work (invalid outputs are moved aside)")
    _common(p)
    _selection(p)

    p = sub.add_parser("run", help="assess every planned field with a pool of workers, then report")
    _common(p)
    _selection(p)
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: physical cores)")
    p.add_argument("--backend", choices=("inproc", "apptainer", "cli"), default="inproc",
                   help="inproc: assess in the workers (default; inside the image on Slurm); apptainer: "
                        "`apptainer run SIF` per chunk; cli: the image's runscript command without the image")
    p.add_argument("--image", help="sure2.sif for --backend apptainer")
    p.add_argument("--apptainer", default="apptainer", help="apptainer binary")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="fields per claim / per container")
    p.add_argument("--field-timeout", type=float, default=DEFAULT_FIELD_TIMEOUT_S, metavar="S",
                   help=f"release a field with no progress for S seconds (reason timeout; retried elsewhere; "
                        f"default {DEFAULT_FIELD_TIMEOUT_S:g})")
    p.add_argument("--force-temp", action="store_true", help="allow a temp dir on a parallel filesystem")
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between plain progress lines")
    p.add_argument("--quiet", action="store_true", help="no report table on stdout")
    p.add_argument("--no-report", action="store_true",
                   help="skip the season's report (a Slurm wrapper writes it once, after all its steps)")

    p = sub.add_parser("status", help="valid / to-do / failed counts and live workers (changes nothing)")
    _common(p)
    _selection(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("report", help="write the report (JSON, table, PNG map) over all runs so far")
    _common(p)
    _selection(p)

    p = sub.add_parser("worker")  # started by `run`, one per worker process; not for people
    p.add_argument("--out", required=True)
    p.add_argument("--data", required=True)
    _settings(p)
    for name in ("--backend", "--image", "--tmp", "--apptainer"):
        p.add_argument(name)
    p.add_argument("--parent-pid", type=int, default=0)
    p.add_argument("--progress-fd", type=int, default=None)
    return ap


def _check_args(ap, args) -> None:
    if not args.out:
        ap.error("--out is required (or set SURE2_OUT)")
    if not getattr(args, "data", None):
        ap.error("--data is required (or set SURE2_DATA)")
    if args.cmd == "run":
        if args.backend == "apptainer" and not args.image:
            ap.error("--backend apptainer needs --image SIF")
        if args.workers < 0 or args.chunk < 1 or args.max_failures < 1:
            ap.error("--workers must be >= 0, --chunk and --max-failures >= 1")
        if not args.field_timeout > 0:
            ap.error("--field-timeout must be > 0 seconds")
    if getattr(args, "lease", 1) <= 0:
        ap.error("--lease must be > 0")


def _command(args) -> int:
    from app.sure2.settings import from_args

    args.settings = from_args(args)  # BadInput (exit 2) for an invalid value, before anything is touched
    if args.cmd == "worker":
        from app.batch.worker import worker_main

        return worker_main(args)
    if args.cmd == "run":
        from app.batch.run import run_batch

        return run_batch(args)
    from app.batch import overview

    return getattr(overview, f"{args.cmd}_command")(args)


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    _check_args(ap, args)
    from app.batch.backends import storage_message

    return guarded("batch", _command, args, storage_message=lambda e: storage_message(e, args.out))
