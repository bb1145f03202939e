"""The end-of-run report: JSON (machines), a table (people), a PNG map of payouts (payout_map.py).

Counts are over the requested fields; "this run" numbers come from journal records since the run
began. Payouts of every field with a valid output are summed: from the journal when this or an
earlier run recorded the summary, else from the output's own footer (a run killed between the
rename and its journal record).
"""

import json
import sys
from collections import defaultdict

from app.batch.payout_map import draw_payout_map
from app.batch.plan import OutputChecker
from app.hpc.atomic import atomic_write_bytes

SLOWEST = 10


def build_report(season, layout, state, plan, since: float, wall_s, workers: int, backend: str) -> dict:
    from app.sure2.output import read_blobs  # pyarrow: imported where needed, not by the workers

    checker = OutputChecker(season, layout.out)
    ran = {}  # field -> last outcome kind since the run began
    for fid in plan.todo:
        out = state.outcome.get(fid)
        if out is not None and out.t >= since:
            ran[fid] = out.kind
    failed = {fid: state.outcome[fid].why for fid, k in ran.items() if k == "fail"}
    bad = dict(plan.bad_ids)
    bad.update({fid: state.outcome[fid].why for fid, k in ran.items() if k == "bad"})
    valid = list(plan.valid) + [fid for fid, k in ran.items() if k in ("ok", "skip")]

    totals, payouts, unknown = defaultdict(float), {}, 0
    for fid in valid:
        summary = state.summary.get(fid)
        if summary is None:
            try:
                p = read_blobs(checker.path(fid))["payout"]
                summary = {"payout": p["amount"], "currency": p["currency"]}
            except (OSError, KeyError, ValueError):
                unknown += 1
                continue
        payouts[fid] = summary["payout"]
        totals[summary.get("currency", "?")] += summary["payout"]

    this_run = {fid: state.seconds[fid] for fid, k in ran.items() if k == "ok" and fid in state.seconds}
    compute_s = sum(this_run.values())
    slowest = sorted(this_run.items(), key=lambda kv: -kv[1])[:SLOWEST]
    ideal = compute_s / workers if workers else 0.0
    return {
        "counts": {
            "requested": plan.requested,
            "valid_outputs": len(valid),
            "already_valid": len(plan.valid),
            "done": sum(1 for k in ran.values() if k == "ok"),
            "skipped_after_claim": sum(1 for k in ran.values() if k == "skip"),
            "failed": len(failed),
            "given_up": len(plan.given_up),
            "bad_ids": len(bad),
            "moved_aside": len(plan.moved) + sum(1 for r in state.invalid if r.get("t", 0) >= since),
            "remaining": len(plan.todo) - len(ran),
        },
        "failures": _failures(state, plan, ran),
        "bad_ids": bad,
        "payout_total": {cur: round(v, 2) for cur, v in sorted(totals.items())},
        "payout_unknown": unknown,
        "payouts": payouts,
        "slowest": [{"field_id": fid, "seconds": s} for fid, s in slowest],
        "timing": {
            "wall_s": None if wall_s is None else round(wall_s, 3),
            "workers": workers,
            "backend": backend,
            "compute_s": round(compute_s, 3),
            "overhead": round(wall_s / ideal, 4) if wall_s and ideal else None,
        },
    }


def _failures(state, plan, ran) -> list:
    """Given-up fields, and planned fields not done in this run that have failed at least once."""
    rows = [
        {"field_id": fid, "reason": why, "failures": len(state.failures.get(fid, ())), "given_up": True}
        for fid, why in plan.given_up.items()
    ]
    for fid in plan.todo:
        fails = state.failures.get(fid)
        if fails and ran.get(fid) not in ("ok", "skip"):
            rows.append({"field_id": fid, "reason": fails[-1].why, "failures": len(fails), "given_up": False})
    return sorted(rows, key=lambda r: r["field_id"])


def render_table(report: dict) -> str:
    c, t = report["counts"], report["timing"]
    rows = [(k.replace("_", " "), str(v)) for k, v in c.items()]
    rows += [(f"total payout {cur}", f"{v:,.2f}") for cur, v in report["payout_total"].items()]
    if t["wall_s"] is not None:
        rows += [("wall time", f"{t['wall_s']:.1f} s on {t['workers']} workers ({t['backend']})"),
                 ("compute (sum)", f"{t['compute_s']:.1f} s")]
        if t["overhead"] is not None:
            rows.append(("overhead", f"{t['overhead']:.3f} (wall / (compute / workers))"))
    width = max(len(k) for k, _ in rows)
    lines = ["Batch report", "-" * (width + 20)] + [f"{k:<{width}}  {v}" for k, v in rows]
    if report["failures"]:
        lines += ["", "Failures (field, failures, last reason):"]
        lines += [
            f"  {f['field_id']}  {f['failures']}{' (given up)' if f['given_up'] else ''}  {f['reason']}"
            for f in report["failures"]
        ]
    if report["bad_ids"]:
        lines += ["", "Bad IDs:"] + [f"  {i!r}  {why}" for i, why in report["bad_ids"].items()]
    if report["slowest"]:
        lines += ["", "Slowest fields (s):"] + [f"  {s['field_id']}  {s['seconds']:.3f}" for s in report["slowest"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict, layout, data_dir, quiet: bool = False) -> None:
    table = render_table(report)
    atomic_write_bytes(layout.report_json, json.dumps(report, indent=1, sort_keys=True).encode())
    atomic_write_bytes(layout.report_txt, table.encode())
    map_note = draw_payout_map(data_dir, report["payouts"], layout.payout_map)
    if not quiet:
        sys.stdout.write(table)
    print(f"batch: report {layout.report_json}, {layout.report_txt}; {map_note}", file=sys.stderr)
