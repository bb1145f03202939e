"""Basis risk on a season with ground truth: how often, and by how much, the index pays wrongly.

    python -m app.sure2 evaluate --data SEASON [--out OUT] [--report DIR] [settings flags]

Each field's result comes from OUT's outputs when --out is given (each must be valid for this season and
code; every output's own settings are used and reported, and they must agree), else from assessing the
season in memory with the given settings. Truth: truth.parquet (generated seasons, app.season.synth).
Writes DIR/basis_risk.json (everything), basis_risk.txt (a short table), basis_risk.png (index vs
true loss, and false and missed payouts by group; drawn with Pillow, which every image has) and
basis_risk.html (the same in the season page's style, the plot inlined: app.batch.page); DIR
defaults to OUT/basis_risk, or ./basis_risk without --out.

The numbers:
  decision      per field with truth: paid and truth pays (correct), paid though truth does not (false
                payout), truth pays but not paid (missed; a field not assessed that truth pays is a missed
                payout too, counted apart as `missed_not_assessed`); wrong = false + missed.
  correlation   Pearson and Spearman of the index value against the true index, over assessed fields.
  amount error  paid − true payout, in currency: mean, median, MAE, RMSE, 5th and 95th percentiles, and
                the share of fields within 1 % of their insured sum.
  damaged area  (outputs of the pixel level) |damaged fraction − true damaged fraction| per damage type,
                and the share within DAMAGE_TOLERANCE.
  units         the same decision, correlation and amount numbers for the season's area units
                (app.sure2.units, from the fields' curves) against truth_units.parquet.
  groups        the decision and amount numbers again by crop, cloudiness, damage type and terms.
                Cloudiness: share of the sowing→harvest acquisitions observed (coverage.observed_share):
                clear >= 0.8, partly cloudy >= 0.5, cloudy below, not assessed.
"""

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow.parquet as pq

from app.errors import BadInput
from app.hpc.atomic import atomic_write_bytes
from app.sure2.outcome import ASSESSED, FieldOutcome
from app.sure2.units import day_numbers

TRUTH, TRUTH_UNITS = "truth.parquet", "truth_units.parquet"
REPORT_NAME = "basis_risk"
DAMAGE_TOLERANCE = 0.10  # absolute damaged-area fraction
CLOUDINESS = ((0.8, "clear"), (0.5, "partly cloudy"), (0.0, "cloudy"))
GROUPS = ("crop", "cloudiness", "damage", "terms")


def read_truth(data_dir) -> dict:
    path = Path(data_dir) / TRUTH
    if not path.is_file():
        raise BadInput(f"season {data_dir} has no {TRUTH}: evaluate needs a season with ground truth "
                       "(python -m app.season synth)")
    return {row["field_id"]: row for row in pq.read_table(path).to_pylist()}


def result_of(assessment: dict) -> dict:
    """What the report takes of an in-memory assessment (app.sure2.assess.assess)."""
    cols = assessment["columns"]
    return {"status": ASSESSED, "reason": "", **{k: assessment[k] for k in ("payout", "damage", "coverage")},
            "curve": (assessment["coverage"]["area_ha"], day_numbers(cols["date"]), cols["ndvi_smooth"],
                      cols["baseline_mean"])}


def result_of_outcome(outcome: FieldOutcome) -> dict:
    return {"status": outcome.status, "reason": outcome.reason, "payout": None, "damage": None,
            "coverage": outcome.partial.get("coverage", {}), "curve": None}


def results_in_memory(season, settings) -> dict:
    """field_id → result (status, reason, payout, damage, coverage, curve), assessed here."""
    from app.sure2.assess import assess

    out = {}
    for fid in season.field_ids:
        try:
            out[fid] = result_of(assess(season, fid, settings))
        except FieldOutcome as outcome:
            out[fid] = result_of_outcome(outcome)
    return out


def results_from_outputs(season, out_dir) -> tuple[dict, str]:
    """(field_id → result, the outputs' settings JSON) from valid outputs, each read once
    (app.sure2.output.read_output, checked on the same read); BadInput if none is valid or their settings
    differ."""
    from app.sure2.output import ANY_SETTINGS, Expected, OutputProblem, output_path, read_output
    from app.sure2.settings import Settings
    from app.sure2.version import code_version

    out, settings_seen, invalid = {}, set(), 0
    for fid in season.field_ids:
        path = output_path(out_dir, fid)
        try:
            # reading asks the settings only for difference(): AnySettings stands in for any
            read = read_output(path, Expected(fid, season.n_rows(fid), code_version(), season.fingerprint,
                                              cast(Settings, ANY_SETTINGS)))
            Settings(**json.loads(read.settings))  # settings this code cannot read make the output invalid
        except (OSError, KeyError, ValueError, TypeError, BadInput, OutputProblem):
            invalid += 1
            continue
        settings_seen.add(read.settings)
        out[fid] = {"status": read.status, "reason": read.reason,
                    **{k: read.blobs[k] for k in ("payout", "damage", "coverage")}, "curve": None}
        if read.status == ASSESSED:
            dates, smooth, baseline = read.curve()
            out[fid]["curve"] = (read.blobs["coverage"]["area_ha"], day_numbers(dates), smooth, baseline)
    if not out:
        raise BadInput(f"no valid output of this season and code in {out_dir} ({invalid} missing or invalid)")
    if len(settings_seen) > 1:
        raise BadInput(f"the outputs in {out_dir} were made with {len(settings_seen)} different settings: "
                       "evaluate one set at a time")
    return out, settings_seen.pop()


def unit_rows(season, results: dict) -> list[dict]:
    """Rows (as rows_of makes for fields) of the season's area units against truth_units.parquet, from
    the fields' curves; [] when the season has no units or no unit truth."""
    from app.sure2.units import assess_units, field_curve

    path = Path(season.data_dir) / TRUTH_UNITS
    if not path.is_file():
        return []
    truth = {t["unit_id"]: t for t in pq.read_table(path).to_pylist()}
    curves = {fid: field_curve(fid, *r["curve"]) for fid, r in results.items() if r.get("curve")}
    rows = []
    for u in assess_units(season, curves):
        t, pay = truth.get(u["unit_id"]), u["payout"]
        if t is not None:
            rows.append({"unit_id": u["unit_id"], "assessed": u["status"] == ASSESSED,
                         "index": pay["index_value"] if pay else None, "true_index": t["true_index"],
                         "amount": pay["amount"] if pay else None, "true_amount": t["true_payout"],
                         "insured": pay["insured_sum"] if pay else None})
    return rows


def cloudiness(result) -> str:
    share = (result.get("coverage") or {}).get("observed_share")
    if result["status"] != ASSESSED or share is None:
        return "not assessed"
    return next(name for floor, name in CLOUDINESS if share >= floor)


def rows_of(season, truth: dict, results: dict) -> list[dict]:
    """One row per field with truth and a result: what the numbers are computed from."""
    catalogue = season.columns(("crop",))
    crop_of = dict(zip(season.field_ids, catalogue["crop"]))
    rows = []
    for fid, result in results.items():
        t = truth.get(fid)
        if t is None:
            continue
        pay, damage = result.get("payout"), result.get("damage") or {}
        rows.append({
            "field_id": fid, "crop": crop_of.get(fid), "damage": t["damage"], "terms": t.get("terms", "fixed"),
            "cloudiness": cloudiness(result), "assessed": result["status"] == ASSESSED, "reason": result["reason"],
            "index": pay["index_value"] if pay else None, "true_index": t["true_index"],
            "amount": pay["amount"] if pay else None, "true_amount": t["true_payout"],
            "insured": pay["insured_sum"] if pay else None,
            "damaged_fraction": damage.get("damaged_fraction"), "true_damaged_fraction": t.get("damaged_fraction")})
    return rows


def decision(rows) -> dict:
    """Counts of correct, false and missed payouts (see the module doc)."""
    assessed = [r for r in rows if r["assessed"]]
    paid = lambda r: r["amount"] > 0
    due = lambda r: r["true_amount"] > 0
    out = {"fields": len(rows), "assessed": len(assessed),
           "correct": sum(paid(r) == due(r) for r in assessed),
           "false_payouts": sum(paid(r) and not due(r) for r in assessed),
           "missed_payouts": sum(due(r) and not paid(r) for r in assessed),
           "missed_not_assessed": sum(due(r) for r in rows if not r["assessed"]),
           "paid": sum(paid(r) for r in assessed), "due": sum(due(r) for r in rows)}
    out["wrong"] = out["false_payouts"] + out["missed_payouts"]
    out["agreement"] = round(out["correct"] / len(assessed), 4) if assessed else None
    return out


def amount_error(rows) -> dict:
    assessed = [r for r in rows if r["assessed"]]
    if not assessed:
        return {}
    err = np.array([r["amount"] - r["true_amount"] for r in assessed])
    within = np.mean([abs(r["amount"] - r["true_amount"]) <= 0.01 * r["insured"] for r in assessed])
    return {"mean": _r(err.mean()), "median": _r(np.median(err)), "mae": _r(np.abs(err).mean()),
            "rmse": _r(math.sqrt(float(np.mean(err ** 2)))), "p5": _r(np.percentile(err, 5)),
            "p95": _r(np.percentile(err, 95)), "within_1pct_of_insured": round(float(within), 4),
            "paid_total": _r(sum(r["amount"] for r in assessed)),
            "true_total": _r(sum(r["true_amount"] for r in assessed))}


def correlation(rows) -> dict:
    pairs = np.array([(r["index"], r["true_index"]) for r in rows if r["assessed"]], dtype=float)
    if len(pairs) < 3 or np.ptp(pairs[:, 0]) == 0 or np.ptp(pairs[:, 1]) == 0:
        return {"n": len(pairs), "pearson": None, "spearman": None}
    return {"n": len(pairs), "pearson": round(float(np.corrcoef(pairs.T)[0, 1]), 4),
            "spearman": round(float(np.corrcoef(_ranks(pairs[:, 0]), _ranks(pairs[:, 1]))[0, 1]), 4)}


def damaged_area(rows) -> dict:
    out = {}
    for kind in sorted({r["damage"] for r in rows}):
        pairs = [(r["damaged_fraction"], r["true_damaged_fraction"]) for r in rows
                 if r["damage"] == kind and r["assessed"] and r["damaged_fraction"] is not None
                 and r["true_damaged_fraction"] is not None]
        if pairs:
            err = np.abs(np.array([a - b for a, b in pairs]))
            out[kind] = {"n": len(pairs), "mae": round(float(err.mean()), 4),
                         "within_tolerance": round(float(np.mean(err <= DAMAGE_TOLERANCE)), 4)}
    return out


def evaluate(rows: list, fingerprint: str, settings_text: str, units: list | None = None) -> dict:
    """The report (a dict; see the module doc) over rows_of(...) and unit_rows(...)."""
    groups = {}
    for key in GROUPS:
        parts = defaultdict(list)
        for r in rows:
            parts[r[key]].append(r)
        groups[key] = {str(name): {"decision": decision(part), "amount_error": amount_error(part)}
                       for name, part in sorted(parts.items(), key=lambda kv: str(kv[0]))}
    return {"season": fingerprint, "settings": json.loads(settings_text), "damage_tolerance": DAMAGE_TOLERANCE,
            "decision": decision(rows), "correlation": correlation(rows), "amount_error": amount_error(rows),
            "damaged_area": damaged_area(rows), "groups": groups,
            "units": {"decision": decision(units), "correlation": correlation(units),
                      "amount_error": amount_error(units)} if units else None,
            "wrong_fields": sorted(r["field_id"] for r in rows if r["assessed"]
                                   and (r["amount"] > 0) != (r["true_amount"] > 0))}


def render_table(report: dict) -> str:
    d, c, a = report["decision"], report["correlation"], report["amount_error"]
    lines = ["Basis risk", "-" * 78,
             f"fields {d['fields']}, assessed {d['assessed']}; payout decision agrees with truth for {d['correct']} "
             f"({d['agreement']:.1%})" if d["agreement"] is not None else f"fields {d['fields']}, none assessed",
             f"false payouts {d['false_payouts']}, missed payouts {d['missed_payouts']} "
             f"(+ {d['missed_not_assessed']} due but not assessable)",
             f"index vs true loss: Pearson {c['pearson']}, Spearman {c['spearman']} (n = {c['n']})"]
    if a:
        lines.append(f"amount error: mean {a['mean']:,.2f}, median {a['median']:,.2f}, MAE {a['mae']:,.2f}, "
                     f"p5 {a['p5']:,.2f}, p95 {a['p95']:,.2f}; within 1 % of insured: {a['within_1pct_of_insured']:.1%}")
    u = report["units"]
    if u:
        lines.append(f"area units: {u['decision']['assessed']} of {u['decision']['fields']} assessed, false payouts "
                     f"{u['decision']['false_payouts']}, missed {u['decision']['missed_payouts']}; index vs true "
                     f"loss Pearson {u['correlation']['pearson']}"
                     + (f"; amount MAE {u['amount_error']['mae']:,.2f}" if u["amount_error"] else ""))
    for kind, v in report["damaged_area"].items():
        lines.append(f"damaged area, {kind}: MAE {v['mae']:.3f}, within ±{report['damage_tolerance']:g}: "
                     f"{v['within_tolerance']:.1%} of {v['n']}")
    lines += ["", f"{'group':28s} {'fields':>7s} {'assessed':>9s} {'false':>6s} {'missed':>7s} {'MAE':>11s}"]
    for key, parts in report["groups"].items():
        for name, part in parts.items():
            pd, pa_ = part["decision"], part["amount_error"]
            mae = f"{pa_['mae']:,.2f}" if pa_ else "-"
            lines.append(f"{key + ': ' + name:28s} {pd['fields']:7d} {pd['assessed']:9d} {pd['false_payouts']:6d} "
                         f"{pd['missed_payouts'] + pd['missed_not_assessed']:7d} {mae:>11s}")
    return "\n".join(lines) + "\n"


def write_report(report: dict, rows_for_plot: list, dest: Path) -> list[Path]:
    from app.sure2.evaluate_plot import draw

    import io

    from app.batch.page import basis_risk_page

    dest.mkdir(parents=True, exist_ok=True)
    paths = [dest / f"{REPORT_NAME}.{ext}" for ext in ("json", "txt", "png", "html")]
    atomic_write_bytes(paths[0], (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    atomic_write_bytes(paths[1], render_table(report).encode())
    png = io.BytesIO()
    draw(report, rows_for_plot).save(png, format="PNG")
    atomic_write_bytes(paths[2], png.getvalue())
    atomic_write_bytes(paths[3], basis_risk_page(report, png.getvalue()).encode())  # the season page's style
    return paths


def _ranks(x) -> np.ndarray:
    """Ranks from 0 with ties given their mean rank (for Spearman)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2)[inverse]


def _r(x) -> float:
    return round(float(x), 2)
