"""The season's report, over every field of the season and every run and step so far.

Each field is in one state: assessed, not_assessable, insufficient_data (its valid output says so),
failed (an attempt raised; it will be retried), given_up (failed --max-failures times), or remaining
(no valid output yet, or one lost since it was verified). Each valid output is read once
(app.batch.output_pass) and feeds every product. Written to OUT/.batch/: report.html (the page an
adjuster reads: map, table, each field's evidence; app.batch.page), report.json (machines), report.txt
(people: the insurer's rows reconciled, the paid fields, explained and refused rows by reason,
failures), engineering.txt (this run's numbers: overhead, workers, slowest fields, outputs read),
payout_map.png and season_result.parquet, the season's result as a GeoParquet layer for QGIS
(season_result.gpkg too where a vector driver is installed). `python -m app.batch report` writes the
same report without a run.
"""

import json
import sys
import time
from collections import Counter, defaultdict

from app.batch.damage_map import write_damage_maps
from app.batch.output_pass import OutputPass
from app.batch.outputs import OutputChecker, OutputIndex, context_of
from app.batch.page import INLINE_FIELDS, SHOWN_LARGE, plain, write_page
from app.batch.payout_map import draw_payout_map
from app.batch.policy import BatchPolicy, FailurePolicy
from app.batch.result_layer import write_result_layer
from app.batch.units import write_unit_results
from app.hpc.atomic import atomic_write_bytes
from app.sure2.outcome import STATUSES

FIELD_STATES = (*STATUSES, "failed", "given_up", "remaining")
SLOWEST = 10
LISTED_PER_REASON = 20  # fields named per reason in report.txt (all are in report.json)
LISTED_PAID = 20  # paid fields named in report.txt, largest first (all are in report.html)


def field_states(fields, index: OutputIndex, state, failures: FailurePolicy) -> dict:
    """field -> row: "state" plus what its valid output says (outcome, payout, coverage, ...)."""
    rows = {}
    for fid in fields:
        why = index.problem(fid)
        if why is None:
            summary = index.summary(fid)
            rows[fid] = {**summary, "state": summary["outcome"]}
            continue
        fails = failures.failures(state, fid)
        given_up = failures.given_up(fails)
        rows[fid] = {"state": "given_up" if given_up else "failed" if fails else "remaining",
                     "reason": fails[-1].why if fails else "" if why == "missing" else f"output invalid: {why}",
                     "failures": len(fails)}
    return rows


def build_report(season, rows: dict, settings, run: dict | None, refused: list | None = None,
                 engineering: dict | None = None) -> dict:
    """The report's content; `refused`: the rows of the insurer's file the import refused (app.batch.page)."""
    from app.sure2.version import code_version

    source = dict(zip(season.field_ids, season.columns(("source_id",))["source_id"]))
    counts = Counter(r["state"] for r in rows.values())
    explained = defaultdict(list)
    totals, paid = defaultdict(int), []
    for fid, r in rows.items():
        if r["state"] in STATUSES[1:]:
            explained[r["reason"]].append({"field_id": fid, "source_id": source.get(fid), "status": r["state"],
                                           "detail": r.get("detail", "")})
        if r.get("amount_cents"):
            totals[r["currency"]] += r["amount_cents"]
            paid.append({"field_id": fid, "source_id": source.get(fid), "amount_cents": r["amount_cents"],
                         "currency": r["currency"], "index_value": r.get("index_value")})
    failures = [{"field_id": fid, "reason": r["reason"], "failures": r["failures"], "given_up": r["state"] == "given_up"}
                for fid, r in rows.items() if r["state"] in ("failed", "given_up")]
    refused = refused or []
    by_reason = defaultdict(list)
    for r in refused:
        by_reason[r["reason"]].append({k: v for k, v in r.items() if k != "rings"})
    return {
        "season": {"fingerprint": season.fingerprint, "fields": len(rows), "code_version": code_version(),
                   "settings": settings.as_dict()},
        "insurer_rows": {"total": len(rows) + len(refused), "imported": len(rows), "refused": len(refused)},
        "reconciliation": reconciliation(counts, len(refused)),
        "counts": {state: counts.get(state, 0) for state in FIELD_STATES},
        "payout_total": {cur: cents / 100 for cur, cents in sorted(totals.items())},
        "payout_total_cents": dict(sorted(totals.items())),
        "paid_fields": len(paid),
        "paid": sorted(paid, key=lambda p: (-p["amount_cents"], p["field_id"])),
        "explained": {reason: sorted(v, key=lambda e: e["field_id"]) for reason, v in sorted(explained.items())},
        "refused": {reason: v for reason, v in sorted(by_reason.items())},
        "failures": sorted(failures, key=lambda f: f["field_id"]),
        "run": run,
        "engineering": engineering,
    }


def reconciliation(counts, refused: int) -> dict:
    """The insurer's rows against the outcomes: rows in = assessed + explained + refused (+ fields whose
    outcome is still open: failed, given up, remaining)."""
    out = {"rows_in": sum(counts.values()) + refused, "assessed": counts.get(STATUSES[0], 0),
           "explained": sum(counts.get(s, 0) for s in STATUSES[1:]), "refused": refused,
           "open": sum(counts.get(s, 0) for s in ("failed", "given_up", "remaining"))}
    out["balanced"] = out["rows_in"] == out["assessed"] + out["explained"] + out["refused"] + out["open"]
    return out


def run_section(plan, state, since: float, wall_s: float, workers: int, backend: str) -> dict:
    """What one run did: its requested fields' outcomes since it began, and its timing."""
    ran = {fid: state.outcome[fid].kind for fid in plan.todo
           if fid in state.outcome and state.outcome[fid].t >= since}
    seconds = {fid: state.seconds[fid] for fid, kind in ran.items() if kind == "ok" and fid in state.seconds}
    compute_s = sum(seconds.values())
    ideal = compute_s / workers if workers else 0.0
    kinds = Counter(ran.values())
    return {
        "requested": plan.requested, "already_valid": len(plan.valid), "done": kinds["ok"],
        "skipped_after_claim": kinds["skip"], "failed": kinds["fail"] + kinds["bad"],
        "given_up": len(plan.given_up), "bad_ids": plan.bad_ids,
        "moved_aside": sum(1 for _, t in state.invalid if t >= since),
        "remaining": len(plan.todo) - len(ran),
        "wall_s": round(wall_s, 3), "workers": workers, "backend": backend, "compute_s": round(compute_s, 3),
        "overhead": round(wall_s / ideal, 4) if wall_s and ideal else None,
        "slowest": [{"field_id": f, "seconds": s} for f, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:SLOWEST]],
    }


def render_table(report: dict) -> str:
    """report.txt, for people: the insurer's rows reconciled, the paid fields, explained and refused rows
    by reason, failures. Every insurer string goes through `plain` (no control characters, bounded)."""
    c, rows_in = report["counts"], report["insurer_rows"]
    assessed = c["assessed"]
    rows = [("rows in the insurer's file", f"{rows_in['total']:,}"),
            ("  refused by the import", f"{rows_in['refused']:,}"),
            ("  imported fields", f"{rows_in['imported']:,}")]
    rows += [(f"    {k.replace('_', ' ')}", f"{v:,}") for k, v in c.items() if v or k in STATUSES]
    rows += [("      of which paid", f"{report['paid_fields']:,}"),
             ("      of which not paid", f"{assessed - report['paid_fields']:,}")]
    rows += [(f"total payout {cur}", f"{cents / 100:,.2f} ({report['paid_fields']:,} fields paid)")
             for cur, cents in report["payout_total_cents"].items()]
    rec = report["reconciliation"]
    rows.insert(0, ("insurer's rows", f"{rec['rows_in']} = {rec['assessed']} assessed + {rec['explained']} explained + "
                                      f"{rec['refused']} refused by the import"
                                      + (f" + {rec['open']} open" if rec["open"] else "")))
    width = max(len(k) for k, _ in rows)
    lines = ["Season report", "-" * (width + 30)] + [f"{k:<{width}}  {v}" for k, v in rows]
    if report["paid"]:
        lines += ["", f"Paid fields, largest first ({min(LISTED_PAID, len(report['paid']))} of "
                      f"{len(report['paid']):,}; every field is in report.html and season_result.parquet):",
                  f"  {'insurer ID':24s} {'field':12s} {'index':>8s} {'amount':>16s}"]
        for p in report["paid"][:LISTED_PAID]:
            index = f"{p['index_value']:.4f}" if p["index_value"] is not None else "-"
            lines.append(f"  {plain(p['source_id'], 24):24s} {p['field_id']:12s} {index:>8s} "
                         f"{p['amount_cents'] / 100:>12,.2f} {p['currency']}")
    for reason, fields in report["explained"].items():
        lines += ["", f"{fields[0]['status'].replace('_', ' ')}: {reason} ({len(fields)} fields)"]
        lines += [f"  {plain(e['source_id'], 24):24s} {e['field_id']}  {plain(e['detail'], 200)}"
                  for e in fields[:LISTED_PER_REASON]]
        if len(fields) > LISTED_PER_REASON:
            lines.append(f"  ... {len(fields) - LISTED_PER_REASON} more in report.html and report.json")
    for reason, refused in report["refused"].items():
        lines += ["", f"refused by the import: {reason} ({len(refused)} rows of the insurer's file)"]
        lines += [f"  {plain(r['source_id'], 24):24s} {plain(r['detail'], 200)}" for r in refused[:LISTED_PER_REASON]]
        if len(refused) > LISTED_PER_REASON:
            lines.append(f"  ... {len(refused) - LISTED_PER_REASON} more in report.html and report.json")
    if report["failures"]:
        lines += ["", "Failures (field, failures, last reason):"]
        lines += [f"  {f['field_id']}  {f['failures']}{' (given up)' if f['given_up'] else ''}  {f['reason']}"
                  for f in report["failures"]]
    run = report["run"]
    if run and run["bad_ids"]:
        lines += ["", "Bad IDs:"] + [f"  {plain(i, 80)}  {why}" for i, why in run["bad_ids"].items()]
    return "\n".join(lines) + "\n"


def render_engineering(report: dict) -> str:
    """engineering.txt: this run's numbers (wall time, workers, overhead, slowest fields) and the report's own."""
    lines = ["Engineering numbers", "-" * 60]
    run = report["run"]
    if run:
        lines += [f"this run          {run['done']} assessed of {run['requested']} requested, {run['already_valid']} "
                  f"already valid, {run['failed']} failed, {run['remaining']} left",
                  f"wall time         {run['wall_s']:.1f} s on {run['workers']} workers ({run['backend']})",
                  f"compute (sum)     {run['compute_s']:.1f} s"]
        if run["overhead"] is not None:
            lines.append(f"overhead          {run['overhead']:.3f} (wall / (compute / workers))")
    eng = report["engineering"] or {}
    if eng:
        lines += [f"report            {eng['report_s']:.2f} s, {eng['outputs_read']:,} outputs read for "
                  f"{eng['fields_read']:,} fields (max {eng['max_reads_per_field']} per field)"]
        if eng["lost"]:
            lines += [f"outputs lost since verified: {len(eng['lost'])} (planned again)"]
            lines += [f"  {fid}  {why}" for fid, why in sorted(eng["lost"].items())[:LISTED_PER_REASON]]
    if run and run["slowest"]:
        lines += ["", "Slowest fields (s):"] + [f"  {s['field_id']}  {s['seconds']:.3f}" for s in run["slowest"]]
    return "\n".join(lines) + "\n"


def current_rows(season, layout, board, policy: BatchPolicy, fields=None, on_read=None) -> dict:
    """The rows of `fields` (default: the whole season) as the outputs and the journal stand now
    (journal records for outputs verified on the way included); `on_read` gets each output read in full."""
    state = board.sync()
    settings = policy.settings
    index = OutputIndex(OutputChecker(season, layout.out, settings), state, context_of(season, settings),
                        keep_other_settings=policy.keep_other_settings, on_read=on_read)
    rows = field_states(season.field_ids if fields is None else fields, index, state, policy.failures)
    board.record(index.records())
    return rows


def season_report(season, layout, board, policy: BatchPolicy, run=None, quiet=False) -> dict:
    """Build and write the whole report; return the per-field rows (field -> state and what its output says).
    Every valid output is read once (app.batch.output_pass); one that vanished or tore since it was
    verified is a noted row, never an error of the report."""
    from app.batch.page import refused_rows
    from app.sure2.units import read_units

    t0 = time.perf_counter()
    settings = policy.settings
    large = len(season.field_ids) > INLINE_FIELDS  # a national season's page keeps its largest payouts
    outputs = OutputPass(season, OutputChecker(season, layout.out, settings), units=bool(read_units(season.data_dir)),
                         evidence_limit=SHOWN_LARGE if large else None, keep_other_settings=policy.keep_other_settings)
    rows = current_rows(season, layout, board, policy, on_read=outputs.take)
    outputs.finish(rows)
    refused = refused_rows(season)
    unit_note, units = write_unit_results(season, outputs.curves, layout)
    notes = [write_result_layer(season, rows, layout), draw_payout_map(season, rows, layout.payout_map, outputs.shares),
             write_damage_maps(season, outputs.patches, layout), unit_note]
    engineering = {"report_s": 0.0, "outputs_read": sum(outputs.reads.values()), "fields_read": len(outputs.reads),
                   "max_reads_per_field": max(outputs.reads.values(), default=0), "lost": outputs.lost}
    report = build_report(season, rows, settings, run, refused, engineering)
    notes.append(write_page(season, rows, report, outputs.evidence, refused, units, layout))
    engineering["report_s"] = round(time.perf_counter() - t0, 3)
    table = render_table(report)
    atomic_write_bytes(layout.report_json, json.dumps(report, indent=1, sort_keys=True).encode())
    atomic_write_bytes(layout.report_txt, table.encode())
    atomic_write_bytes(layout.root / "engineering.txt", render_engineering(report).encode())
    if not quiet:
        sys.stdout.write(table)
    print(f"batch: report {layout.report_json}, {layout.report_txt}; {'; '.join(notes)}", file=sys.stderr)
    return rows
