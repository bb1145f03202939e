"""Command line: `python -m app.sure2 assess|evaluate ...` (assess is the sealed image's runscript).

assess: one start-up for many field ids; one JSON line per id on stdout, in catalogue (spatial) order.
An id is the season's field_id or the insurer's ID as written (`3401-01/2`: its line also carries
`source_id`); bad ids get a one-line reason on stderr and nothing is written for them. Exit status: 3 if the data or
storage failed (processing stops at the first ENOSPC/EDQUOT/EROFS/EIO), else 1 if an assessment raised, else 2 if
any id was bad, else 0. A field whose problem is its own (outside the raster, no baseline, ...) is not an
error: its explained outcome is written (app.sure2.outcome) and its line says so. A missing --out
directory is created (only when there is a valid id to assess). Generated seasons: `python -m app.season synth`.

evaluate: the basis-risk report of a season with ground truth (app.sure2.evaluate): exit 0, or 2 for
bad input (no truth, no valid output, settings flags together with --out), 3 if the season is unreadable.
"""

import json
import os
import sys
from pathlib import Path

from app.errors import (EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, ITEM_BAD, STOP_ALL, BadInput,
                        EnvironmentFailure, UsageParser, guarded, item_failure, one_line)
from app.sure2 import settings as run_settings
from app.sure2.ids import read_id_list

DATA_ENV, OUT_ENV = "SURE2_DATA", "SURE2_OUT"


def build_parser():
    p = UsageParser(prog="python -m app.sure2", description="Sure2 crop-insurance field assessment")
    sub = p.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    a = sub.add_parser("assess", help="assess fields; writes OUT/<field_id>.parquet each")
    a.add_argument("field_ids", nargs="*", metavar="FIELD_ID")
    a.add_argument("--ids-from", metavar="FILE|-", help="read more ids, one per line, from a file or stdin")
    a.add_argument("--data", default=os.environ.get(DATA_ENV), help=f"season directory (default ${DATA_ENV})")
    a.add_argument("--out", default=os.environ.get(OUT_ENV), help=f"output directory (default ${OUT_ENV})")
    run_settings.add_arguments(a)
    e = sub.add_parser("evaluate", help="basis risk of a season with ground truth: JSON + table + PNG")
    e.add_argument("--data", default=os.environ.get(DATA_ENV), help=f"season directory (default ${DATA_ENV})")
    e.add_argument("--out", help="evaluate the outputs in this directory (default: assess the season in memory "
                                 "with the settings flags)")
    e.add_argument("--report", help="directory for basis_risk.json/.txt/.png (default OUT/basis_risk, or "
                                    "./basis_risk without --out)")
    run_settings.add_arguments(e)
    return p


def _emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def assess_command(args) -> int:
    try:
        ids = list(args.field_ids) + (read_id_list(args.ids_from) if args.ids_from else [])
        settings = run_settings.from_args(args)
    except BadInput as exc:
        sys.stderr.write(f"sure2: {one_line(exc)}\n")
        return EXIT_BAD_INPUT
    if not ids:
        sys.stderr.write("sure2: no field ids given\n")
        return EXIT_BAD_INPUT
    if not args.data or not args.out:
        sys.stderr.write(f"sure2: --data and --out (or ${DATA_ENV}, ${OUT_ENV}) are required\n")
        return EXIT_BAD_INPUT

    bad = False

    def reject(fid, exc):
        nonlocal bad
        bad = True
        sys.stderr.write(f"sure2: {one_line(exc)}\n")
        _emit({"field_id": fid, "status": "bad_input", "reason": one_line(exc)})

    from app.sure2.season import Season

    try:
        season = Season.open(args.data)
    except EnvironmentFailure as exc:
        sys.stderr.write(f"sure2: {one_line(exc)}\n")
        return EXIT_ENVIRONMENT
    with season:
        known = []
        for text in dict.fromkeys(ids):  # de-duplicated, first occurrence kept
            try:
                known.append(season.resolve_id(text))  # the field_id, or the insurer's ID as written
            except BadInput as exc:
                reject(text, exc)
        return _assess_known(season, list(dict.fromkeys(known)), Path(args.out), settings, bad)


def _assess_known(season, ids, out_dir, settings, bad) -> int:
    from app.sure2.assess import assess_to_file

    failed = env_failed = False
    if ids:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            sys.stderr.write(f"sure2: cannot create output directory {out_dir}: {one_line(exc)}\n")
            return EXIT_ENVIRONMENT
    ordered = season.in_catalogue_order(ids)  # neighbours share decompressed tiles
    for n, fid in enumerate(ordered):
        try:
            line = assess_to_file(season, fid, out_dir, settings)
            source = season.source_id(fid)
            _emit(line if source == fid else {**line, "source_id": source})
        except Exception as exc:  # classified as the batch worker does (app.errors.item_failure)
            kind = item_failure(exc)
            if kind == ITEM_BAD:
                _emit({"field_id": fid, "status": "bad_input", "reason": one_line(exc)})
                sys.stderr.write(f"sure2: {fid}: {one_line(exc)}\n")
                bad = True
            elif kind == STOP_ALL:  # the environment or the storage: the remaining fields would fail too
                reason = one_line(exc)
                _emit({"field_id": fid, "status": "error", "reason": reason})
                sys.stderr.write(f"sure2: {fid}: {reason}\n")
                for rest in ordered[n + 1:]:
                    _emit({"field_id": rest, "status": "error", "reason": f"not attempted: {reason}"})
                env_failed = True
                break
            else:  # one field's failure must not stop the others
                reason = f"{type(exc).__name__}: {one_line(exc)}"
                _emit({"field_id": fid, "status": "error", "reason": reason})
                sys.stderr.write(f"sure2: {fid}: assessment failed: {reason}\n")
                failed = True
    if env_failed:
        return EXIT_ENVIRONMENT
    if failed:
        return EXIT_FAILED
    return EXIT_BAD_INPUT if bad else EXIT_OK


def evaluate_command(args) -> int:
    from app.sure2 import evaluate
    from app.sure2.season import Season

    settings = run_settings.from_args(args)
    flags = [flag for flag, (name, _, _) in run_settings.FLAGS.items() if getattr(args, name, None) is not None]
    if not args.data:
        raise BadInput(f"--data (or ${DATA_ENV}) is required")
    if args.out and flags:
        raise BadInput(f"{', '.join(flags)}: outputs in --out carry their own settings; give settings only "
                       "to assess in memory")
    if args.out and not Path(args.out).is_dir():
        raise BadInput(f"--out {args.out} is not a directory")
    with Season.open(args.data) as season:
        truth = evaluate.read_truth(args.data)
        if args.out:
            results, settings_text = evaluate.results_from_outputs(season, args.out)
        else:
            results, settings_text = evaluate.results_in_memory(season, settings), settings.canonical()
        rows = evaluate.rows_of(season, truth, results)
        report = evaluate.evaluate(rows, season.fingerprint, settings_text, evaluate.unit_rows(season, results))
    dest = Path(args.report or Path(args.out or ".") / evaluate.REPORT_NAME)
    paths = evaluate.write_report(report, rows, dest)
    sys.stdout.write(evaluate.render_table(report))
    sys.stderr.write(f"sure2: basis-risk report {', '.join(map(str, paths))}\n")
    return EXIT_OK


COMMANDS = {"assess": assess_command, "evaluate": evaluate_command}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sure2", COMMANDS[args.command], args)
