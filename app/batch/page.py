"""OUT/.batch/report.html: the season as one page an adjuster reads, opened straight from the file system.

A map of the fields (Leaflet, vendored from npm with its licence in page_assets/vendor, inlined: no
network, no server), a table of every row of the insurer's file (sortable, filterable, in step with the
map), each field's evidence on click (its observations clear and cloudy, the smoothed curve, the
baseline with its spread, the sowing–harvest window, events and damage date, its pixel damage map, the
contract terms and the arithmetic index → fraction → amount in cents), area units, explained and refused
rows by reason, the totals reconciled to the insurer's rows, and the season's audit.

Everything the page shows comes from one JSON document inlined as `<script type="application/json">`,
with `<`, `>` and `&` written as \\u escapes, so no value (an insurer's ID such as
`<img src=x onerror=alert(1)>`, a note holding `</script>`) can end the script or become markup; the
page's code puts values into the document as text only (textContent, never innerHTML).

Coordinates are lon/lat (the catalogue's EPSG:4326), so the fields of every UTM zone share one view;
the first view is the bulk of the fields (app.batch.payout_map.view_box): a far field does not squash
it, a button shows them all.
"""

import datetime as dt
import json
import math
import re
from importlib import resources

import numpy as np

from app.hpc.atomic import atomic_write_bytes

ASSETS = "page_assets"
VENDOR = ("vendor/leaflet.css", "vendor/leaflet.js")
PAGE = ("report.css", "report.js")
FIELD_COLUMNS = ("source_id", "crop", "region_id", "area_ha", "sowing_date", "harvest_date", "stack", "note")
INLINE_FIELDS = 50_000  # seasons up to this size are inlined whole (≈ 1.2 kB per field)
SHOWN_LARGE = 10_000  # a larger season's page shows its largest payouts (all counts cover every field)
LISTED_PER_REASON = 500  # explained rows listed per reason on the page (all are in report.json)
UNIT_CURVES = ("dates", "ndvi_smooth", "baseline_mean")  # the units' curves stay in units.parquet
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def plain(text, limit: int) -> str:
    """An insurer's string for a text report: control characters (a newline could forge a line) shown as
    escapes, at most `limit` characters."""
    text = "" if text is None else str(text)
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refused_rows(season) -> list[dict]:
    """The rows of the insurer's file the import refused (Season.refused(): source_id as written, its row,
    reason word, detail, geometry where known), each with its outer rings for the map."""
    import shapely

    table = season.refused()
    geoms = shapely.from_wkb(table.column("geometry").to_pylist())
    rows = []
    for r, g in zip(table.drop_columns(["geometry"]).to_pylist(), geoms):
        rings = [] if g is None or shapely.is_empty(g) else [
            np.round(shapely.get_coordinates(shapely.get_exterior_ring(part)), 6).ravel().tolist()
            for part in shapely.get_parts(g)]
        rows.append({**r, "rings": rings})
    return rows


def _num(value, digits: int):
    """A finite number rounded for the page, else None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _clean(value):
    """A footer blob with its NaN/inf as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _series(values, digits: int) -> list:
    values = np.asarray(values, dtype=np.float64)
    rounded = np.round(values, digits)
    return [None if not math.isfinite(v) else v for v in rounded.tolist()]


def evidence_of(read) -> dict:
    """What the page shows of one output (app.sure2.output.OutputRead): its series (days since 1970;
    observed NDVI, null on a cloudy date; the share of the field seen; the smoothed curve; the baseline
    and its spread, the σ behind z) and its footer (metrics, events, payout arithmetic, coverage,
    damage, the pixel damage map's classes run-length coded: class, count, class, count, … row by row)."""
    c, b = read.columns, read.blobs
    smooth, base, z = (np.asarray(c[k], dtype=np.float64) for k in ("ndvi_smooth", "baseline_mean", "z"))
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(np.abs(z) > 1e-9, np.abs(smooth - base) / np.abs(z), np.nan)
    days = c["date"].astype(np.int64)
    out = {"days": np.diff(days, prepend=0).tolist(), "obs": _series(c["ndvi_mean"], 3),
           "vf": _series(c["valid_fraction"], 2), "sm": _series(smooth, 3), "bl": _series(base, 3),
           "sd": _series(spread, 3), "metrics": _clean(b["season_metrics"]), "events": _clean(b["events"] or []),
           "payout": _clean(b["payout"]), "coverage": _clean(b["coverage"]), "damage": _clean(b["damage"]),
           "dmap": None}
    patch = read.damage_patch()
    if patch is not None:
        _, (_, _, classes, _) = patch
        flat = classes.ravel()
        starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        runs = np.column_stack([flat[starts], np.diff(np.r_[starts, len(flat)])]).ravel()
        out["dmap"] = {"h": int(classes.shape[0]), "w": int(classes.shape[1]), "runs": runs.tolist()}
    return out


def _rings(geoms) -> tuple[list, list | None, list | None]:
    """(per geometry: its polygons' outer rings as flat [lon, lat, ...] lists rounded to 1e-6°, the bulk
    view [[s, w], [n, e]], the whole extent)."""
    import shapely

    from app.batch.payout_map import view_box

    have = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    rings = [[] for _ in geoms]
    if not have.any():
        return rings, None, None
    parts, owner = shapely.get_parts(geoms[have], return_index=True)
    field_of = np.flatnonzero(have)[owner]
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
    coords = np.round(coords, 6)
    starts = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    for a, e in zip(starts, np.r_[starts[1:], len(coords)]):
        rings[field_of[ring[a]]].append(coords[a:e].ravel().tolist())
    centroids = shapely.get_coordinates(shapely.centroid(geoms[have]))
    kx = math.cos(math.radians(float(np.median(centroids[:, 1]))))
    x0, y0, x1, y1 = view_box(centroids * [kx, 1.0])
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    return rings, [[y0, x0 / kx], [y1, x1 / kx]], [[lo[1], lo[0]], [hi[1], hi[0]]]


def page_data(season, rows: dict, report: dict, evidence: dict, refused: list, units: list) -> dict:
    """The page's JSON. A season of at most INLINE_FIELDS fields is inlined whole; a larger one (a national
    season) keeps the page bounded: its map and table hold the fields whose evidence the report kept
    (the SHOWN_LARGE largest payouts, app.batch.output_pass), every count and total still covers all."""
    import shapely

    from app.sure2.version import code_version

    large = len(rows) > INLINE_FIELDS
    rows_at = np.arange(len(season.field_ids))
    if large:
        keep = set(evidence)
        rows_at = np.array([k for k, f in enumerate(season.field_ids) if f in keep], dtype=np.int64)
    ids = [season.field_ids[k] for k in rows_at]
    cat = {name: [values[k] for k in rows_at] for name, values in season.columns((*FIELD_COLUMNS, "geometry")).items()}
    rings, view, extent = _rings(shapely.from_wkb(cat.pop("geometry")))
    day = lambda d: d.isoformat() if isinstance(d, dt.date) else d
    fields = {"id": ids, "src": cat["source_id"], "crop": cat["crop"], "region": cat["region_id"],
              "area": [_num(a, 4) for a in cat["area_ha"]], "sow": [day(d) for d in cat["sowing_date"]],
              "harv": [day(d) for d in cat["harvest_date"]], "stack": cat["stack"], "note": cat["note"],
              "state": [rows[f]["state"] for f in ids], "reason": [rows[f].get("reason") or "" for f in ids],
              "detail": [rows[f].get("detail") or "" for f in ids],
              "cents": [rows[f].get("amount_cents") for f in ids], "cur": [rows[f].get("currency") for f in ids],
              "index": [_num(rows[f].get("index_value"), 6) for f in ids],
              "dha": [_num(rows[f].get("damaged_ha"), 4) for f in ids],
              "dfrac": [_num(rows[f].get("damaged_fraction"), 4) for f in ids],
              "cov": [_num(rows[f].get("raster_coverage"), 4) for f in ids],
              "rings": rings}
    terms = []
    for f in ids:
        e = evidence.get(f)
        p = (e or {}).get("payout") or {}
        d = (e or {}).get("damage") or {}
        terms.append([p.get("index"), p.get("trigger"), p.get("exit"), p.get("trigger_percentile"),
                      p.get("exit_percentile"), p.get("fraction"), d.get("main_damage_date")])
    fields["terms"] = terms
    explained = [{**e, "reason": f"{e['status']}: {reason}"} for reason, items in report["explained"].items()
                 for e in items[:LISTED_PER_REASON]]
    explained += [{"field_id": f["field_id"], "source_id": None, "reason": f"failed: {f['reason']}", "detail": ""}
                  for f in report["failures"][:LISTED_PER_REASON]]
    manifest = season.manifest
    return {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "fingerprint": season.fingerprint, "code_version": code_version(), "settings": report["season"]["settings"],
        "report": {k: report[k] for k in ("insurer_rows", "counts", "payout_total_cents", "paid_fields")},
        "large": {"fields": len(rows), "shown": len(ids)} if large else None,
        "explained": explained,
        "explained_counts": {f"{items[0]['status']}: {reason}": len(items) for reason, items in report["explained"].items()},
        "fields": fields, "evidence": evidence, "view": view, "extent": extent,
        "refused": refused,
        "units": [_clean({k: v for k, v in u.items() if k not in UNIT_CURVES}) for u in units],
        "audit": {"season": {k: v for k, v in manifest.items() if k not in ("files",)},
                  "files": manifest.get("files", {})},
    }


def to_script_json(data) -> str:
    """JSON safe inside <script type="application/json">: <, >, & and the JS line separators as \\u escapes
    (only strings can hold them, and there the escape means the same character)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _asset(name: str) -> str:
    return resources.files("app.batch").joinpath(ASSETS, name).read_text(encoding="utf-8")


def render_page(data: dict) -> str:
    css = "\n".join(_asset(n) for n in (VENDOR[0], PAGE[0]))
    scripts = "\n".join(f"<script>\n{_asset(n)}\n</script>" for n in (VENDOR[1], PAGE[1]))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>Season report</title>\n<style>\n{css}\n</style></head>\n<body>\n"
        f"<script type=\"application/json\" id=\"season-data\">{to_script_json(data)}</script>\n"
        "<noscript>This page needs JavaScript (no network: everything is in this file).</noscript>\n"
        f"{scripts}\n</body></html>\n"
    )


def write_page(season, rows: dict, report: dict, evidence: dict, refused: list, units: list, layout) -> str:
    """Write OUT/.batch/report.html (atomically); return a note."""
    path = layout.root / "report.html"
    html = render_page(page_data(season, rows, report, evidence, refused, units))
    atomic_write_bytes(path, html.encode("utf-8"))
    return f"page {path} ({len(html) / 1e6:.1f} MB)"


def basis_risk_page(report: dict, png: bytes) -> str:
    """basis_risk.html (app.sure2.evaluate) in the season page's style: the numbers as tiles, the groups as
    a table, the plot inlined; static (no script), every value escaped."""
    import base64
    import html

    esc = lambda v: html.escape(str(v), quote=True)
    pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"
    d, c, a = report["decision"], report["correlation"], report["amount_error"]
    tiles = [(d["fields"], "fields with truth"), (d["assessed"], "assessed"), (pct(d["agreement"]), "decision agrees"),
             (d["false_payouts"], "false payouts"), (d["missed_payouts"], "missed payouts"),
             (d["missed_not_assessed"], "due but not assessable"), (c["pearson"], "Pearson, index vs true loss"),
             (c["spearman"], "Spearman")]
    if a:
        tiles += [(f"{a['mae']:,.2f}", "amount MAE"), (pct(a["within_1pct_of_insured"]), "within 1 % of insured")]
    mae = lambda part: f"{part['amount_error']['mae']:,.2f}" if part["amount_error"] else "–"
    rows = "".join(
        f"<tr><td>{esc(key)}: {esc(name)}</td><td class=num>{part['decision']['fields']}</td>"
        f"<td class=num>{part['decision']['assessed']}</td><td class=num>{part['decision']['false_payouts']}</td>"
        f"<td class=num>{part['decision']['missed_payouts'] + part['decision']['missed_not_assessed']}</td>"
        f"<td class=num>{esc(mae(part))}</td></tr>"
        for key, parts in report["groups"].items() for name, part in parts.items())
    damage = "".join(f"<li>{esc(kind)}: MAE {v['mae']:.3f}, within ±{report['damage_tolerance']:g}: "
                     f"{pct(v['within_tolerance'])} of {v['n']}</li>" for kind, v in report["damaged_area"].items())
    wrong = ", ".join(esc(f) for f in report["wrong_fields"][:200]) or "none"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">\n<title>Basis risk</title>\n"
        f"<style>\n{_asset(PAGE[0])}\n</style></head>\n<body>\n"
        f"<header><h1>Basis risk</h1><span class=facts>season {esc(str(report.get('season', ''))[:12])}</span></header>\n"
        "<div id=totals>" + "".join(f"<div class=tile><b>{esc(v)}</b><span>{esc(k)}</span></div>" for v, k in tiles)
        + "</div>\n"
        f"<section><h2>Index vs true loss; false and missed payouts by group</h2>"
        f"<img alt=\"basis risk plot\" style=\"max-width:100%\" src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">"
        f"</section>\n<section><h2>By group</h2><table class=grid><thead><tr><th>group</th><th>fields</th>"
        f"<th>assessed</th><th>false</th><th>missed</th><th>amount MAE</th></tr></thead><tbody>{rows}</tbody></table>"
        f"</section>\n<section><h2>Damaged area (pixel level)</h2><ul>{damage or '<li>none</li>'}</ul></section>\n"
        f"<section><h2>Fields whose payout decision disagrees with truth</h2><p>{wrong}</p></section>\n"
        "</body></html>\n")
