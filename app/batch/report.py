"""The season's report, over every field of the season and every run and step so far.

Each field is in one state: assessed, not_assessable, insufficient_data (its valid output says so),
failed (an attempt raised; it will be retried), given_up (failed --max-failures times), or remaining
(no valid output yet). Written to OUT/.batch/: report.json (machines), report.txt (people: counts,
payout total, explained fields grouped by reason for a claims adjuster, failures), payout_map.png and
season_result.parquet, the season's result as a GeoParquet layer for QGIS (season_result.gpkg too
where a vector driver is installed). A run's own numbers (what it did, wall time, overhead) are the
report's "run" section; `python -m app.batch report` writes the same report without a run.
"""

import json
import sys
from collections import Counter, defaultdict

from app.batch.damage_map import write_damage_maps
from app.batch.outputs import OutputChecker, OutputIndex, context_of
from app.batch.payout_map import draw_payout_map
from app.batch.policy import BatchPolicy, FailurePolicy
from app.batch.result_layer import write_result_layer
from app.batch.units import write_unit_results
from app.hpc.atomic import atomic_write_bytes
from app.sure2.outcome import STATUSES

FIELD_STATES = (*STATUSES, "failed", "given_up", "remaining")
SLOWEST = 10
LISTED_PER_REASON = 20  # fields named per reason in report.txt (all are in report.json)


def field_states(fields, index: OutputIndex, state, failures: FailurePolicy) -> dict:
    """field -> row: "state" plus what its valid output says (outcome, payout, coverage, ...)."""
    rows = {}
    for fid in fields:
        if index.problem(fid) is None:
            summary = index.summary(fid)
            rows[fid] = {**summary, "state": summary["outcome"]}
            continue
        fails = failures.failures(state, fid)
        rows[fid] = {"state": "given_up" if failures.given_up(fails) else "failed" if fails else "remaining",
                     "reason": fails[-1].why if fails else "", "failures": len(fails)}
    return rows


def build_report(season, rows: dict, settings, run: dict | None) -> dict:
    from app.sure2.version import code_version

    counts = Counter(r["state"] for r in rows.values())
    explained = defaultdict(list)
    totals, paid = defaultdict(int), 0
    for fid, r in rows.items():
        if r["state"] in STATUSES[1:]:
            explained[r["reason"]].append({"field_id": fid, "source_id": season.source_id(fid), "status": r["state"],
                                           "detail": r.get("detail", "")})
        if r.get("amount_cents"):
            totals[r["currency"]] += r["amount_cents"]
            paid += 1
    failures = [{"field_id": fid, "reason": r["reason"], "failures": r["failures"], "given_up": r["state"] == "given_up"}
                for fid, r in rows.items() if r["state"] in ("failed", "given_up")]
    refused = defaultdict(list)
    for r in season.refused().select(["source_id", "row", "reason", "detail"]).to_pylist():
        refused[r.pop("reason")].append(r)
    return {
        "reconciliation": reconciliation(counts, sum(map(len, refused.values()))),
        "refused": dict(sorted(refused.items())),
        "season": {"fingerprint": season.fingerprint, "fields": len(rows), "code_version": code_version(),
                   "settings": settings.as_dict()},
        "counts": {state: counts.get(state, 0) for state in FIELD_STATES},
        "payout_total": {cur: cents / 100 for cur, cents in sorted(totals.items())},
        "paid_fields": paid,
        "explained": {reason: sorted(v, key=lambda e: e["field_id"]) for reason, v in sorted(explained.items())},
        "failures": sorted(failures, key=lambda f: f["field_id"]),
        "run": run,
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
    c = report["counts"]
    rows = [("fields", str(report["season"]["fields"]))] + [(k.replace("_", " "), str(v)) for k, v in c.items()]
    rows += [(f"total payout {cur}", f"{v:,.2f} ({report['paid_fields']} fields paid)")
             for cur, v in report["payout_total"].items()]
    run = report["run"]
    if run:
        rows += [("this run", f"{run['done']} assessed of {run['requested']} requested, {run['already_valid']} "
                              f"already valid, {run['failed']} failed, {run['remaining']} left"),
                 ("wall time", f"{run['wall_s']:.1f} s on {run['workers']} workers ({run['backend']})"),
                 ("compute (sum)", f"{run['compute_s']:.1f} s")]
        if run["overhead"] is not None:
            rows.append(("overhead", f"{run['overhead']:.3f} (wall / (compute / workers))"))
    rec = report["reconciliation"]
    balance = (f"{rec['rows_in']} = {rec['assessed']} assessed + {rec['explained']} explained + {rec['refused']} "
               "refused by the import" + (f" + {rec['open']} open" if rec["open"] else ""))
    rows.insert(1, ("insurer's rows", balance))
    width = max(len(k) for k, _ in rows)
    lines = ["Season report", "-" * (width + 30)] + [f"{k:<{width}}  {v}" for k, v in rows]
    named = lambda e: e["field_id"] if e["source_id"] == e["field_id"] else f"{e['source_id']} ({e['field_id']})"
    for reason, fields in report["explained"].items():
        lines += ["", f"{fields[0]['status'].replace('_', ' ')}: {reason} ({len(fields)} fields)"]
        lines += [f"  {named(e)}  {e['detail']}" for e in fields[:LISTED_PER_REASON]]
        if len(fields) > LISTED_PER_REASON:
            lines.append(f"  ... {len(fields) - LISTED_PER_REASON} more in report.json")
    for reason, entries in report["refused"].items():
        lines += ["", f"refused by the import: {reason} ({len(entries)} rows of the insurer's file)"]
        lines += [f"  {'(no ID)' if e['source_id'] is None else repr(e['source_id'])} (row {e['row']})  {e['detail']}"
                  for e in entries[:LISTED_PER_REASON]]
        if len(entries) > LISTED_PER_REASON:
            lines.append(f"  ... {len(entries) - LISTED_PER_REASON} more in report.json")
    if report["failures"]:
        lines += ["", "Failures (field, failures, last reason):"]
        lines += [f"  {f['field_id']}  {f['failures']}{' (given up)' if f['given_up'] else ''}  {f['reason']}"
                  for f in report["failures"]]
    if run and run["bad_ids"]:
        lines += ["", "Bad IDs:"] + [f"  {i!r}  {why}" for i, why in run["bad_ids"].items()]
    if run and run["slowest"]:
        lines += ["", "Slowest fields (s):"] + [f"  {s['field_id']}  {s['seconds']:.3f}" for s in run["slowest"]]
    return "\n".join(lines) + "\n"


def current_rows(season, layout, board, policy: BatchPolicy, fields=None) -> dict:
    """The rows of `fields` (default: the whole season) as the outputs and the journal stand now
    (journal records for outputs verified on the way included)."""
    state = board.sync()
    settings = policy.settings
    index = OutputIndex(OutputChecker(season, layout.out, settings), state, context_of(season, settings),
                        keep_other_settings=policy.keep_other_settings)
    rows = field_states(season.field_ids if fields is None else fields, index, state, policy.failures)
    board.record(index.records())
    return rows


def season_report(season, layout, board, policy: BatchPolicy, run=None, quiet=False) -> dict:
    """Build and write the whole report; return the per-field rows (field -> state and what its output says)."""
    rows = current_rows(season, layout, board, policy)
    report = build_report(season, rows, policy.settings, run)
    table = render_table(report)
    atomic_write_bytes(layout.report_json, json.dumps(report, indent=1, sort_keys=True).encode())
    atomic_write_bytes(layout.report_txt, table.encode())
    notes = [write_result_layer(season, rows, layout), draw_payout_map(season, rows, layout.payout_map),
             write_damage_maps(season, rows, layout), write_unit_results(season, rows, layout)]
    if not quiet:
        sys.stdout.write(table)
    print(f"batch: report {layout.report_json}, {layout.report_txt}; {'; '.join(notes)}", file=sys.stderr)
    return rows
