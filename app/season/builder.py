"""`python -m app.season build`: field file + mapping + STAC scenes (+ baseline) → a season directory
(format sure2-season/2, read by app.sure2.season).

    build --fields FILE --mapping MAPPING.toml --scenes STAC --out SEASON [--baseline BASELINE.parquet]
          [--layer NAME] [--mask-scl 0,1,3,8,9,10] [--part K/N] [--workers N] [--strict]

1. fields: imported (app.season.fields_import) — nothing is written before this succeeds, so a bad
   file (no CRS, a mapping naming missing columns) leaves nothing behind (exit 2);
2. scenes: read (app.season.scenes), stacks planned and fields assigned (app.season.stack_plan);
3. stacks: built unless valid (app.season.stack_build); `--part K/N` builds only stacks K, K+N, …
   of the sorted list (one Slurm array task each, see slurm/season_build.sh);
4. when every stack is valid: fields.parquet, refused.parquet, baseline.parquet, import_log.jsonl and,
   last, season.json (its audit trail, sha256 per data file, fingerprint). Until then the season
   directory has no season.json, so no one can use half a season.

After the import, a summary on stderr and in the audit (`fields_import`): rows read = imported +
refused (by reason), IDs mapped to the season's form, empty contract values per column, notes by
kind. `strict`: any empty contract value stops the build (BadInput) before anything is written.
"""

import datetime as dt
import hashlib
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

import app
from app.code_digest import code_digest
from app.errors import BadInput
from app.hpc.atomic import atomic_path, atomic_write_bytes, sha256_file
from app.season.fields_import import import_fields
from app.season.mapping import PAIRS, load_mapping
from app.season.offset import __doc__ as OFFSET_RULE
from app.season.scene_ndvi import DEFAULT_MASKED
from app.season.scenes import load_scenes
from app.season.stack_build import build_stack, stack_is_valid
from app.season.stack_plan import NODATA, __doc__ as ASSIGNMENT_RULE, plan_stacks
from app.sure2.history import HISTORY
from app.sure2.season import BASELINE, FIELDS, FORMAT, MANIFEST, REFUSED, REFUSED_SCHEMA, stack_entry

IMPORT_LOG = "import_log.jsonl"
BASELINE_COLUMNS = {"region_id": pa.string(), "crop": pa.string(), "doy": pa.int32(), "ndvi_mean": pa.float64(),
                    "ndvi_std": pa.float64(), "n_samples": pa.int64()}


def build_season(fields_path, mapping_path, scenes_path, out_dir, baseline=None, layer=None,
                 masked=DEFAULT_MASKED, part=(1, 1), workers=None, log=None, strict=False) -> dict:
    log = log or (lambda msg: print(f"season: {msg}", file=sys.stderr, flush=True))
    mapping = load_mapping(mapping_path)
    fields = import_fields(fields_path, mapping, layer)
    if strict:
        _refuse_nulls(import_summary(fields, mapping))
    if baseline is not None:
        baseline_table = read_baseline_table(baseline)
    catalogue = load_scenes(scenes_path)
    if not catalogue.scenes:
        raise BadInput(f"no usable scene in {scenes_path} ({len(catalogue.skipped)} skipped, e.g. "
                       f"{catalogue.skipped[0]['reason']})")
    plans, stack_of, assign_notes = plan_stacks(fields, catalogue.scenes)
    for i, note in enumerate(assign_notes):
        if note:
            fields.notes[i].append(note)
    for r in fields.refused:
        log(f"refused row {r['row']} ({r['source_id']!r}): {r['detail']}")
    summary_of_import = import_summary(fields, mapping)
    for line in summary_lines(summary_of_import):
        log(line)
    for s in catalogue.skipped:
        log(f"scene {s['id'] or s['source']} skipped: {s['reason']}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k, n = part
    audits = {}
    for index, plan in enumerate(plans):
        if index % n == k - 1:
            audits[plan.name] = build_stack(out, plan, masked, workers, log)
    pending = [p.name for p in plans if not stack_is_valid(out, p, p.inputs_sha256(masked, code_digest("stack")))]
    summary = {"out": str(out), "stacks": [p.name for p in plans], "built_here": sorted(audits),
               "fields": len(fields), "refused": len(fields.refused), "scenes": len(catalogue.scenes),
               "scenes_skipped": len(catalogue.skipped)}
    if pending:
        log(f"stacks still to build: {', '.join(pending)} (season.json is written once all are valid)")
        return {**summary, "complete": False, "pending": pending}
    for plan in plans:
        if plan.name not in audits:
            audits[plan.name] = json.loads((out / f"{Path(plan.file).stem}.json").read_text())

    _write_fields(out / FIELDS, fields, stack_of)
    _write_refused(out / REFUSED, fields.refused)
    _write_baseline(out / BASELINE, baseline_table if baseline is not None else None)
    with_history = _copy_history(baseline, out)
    _write_log(out / IMPORT_LOG, fields, stack_of)
    files = {name: sha256_file(out / name) for name in [FIELDS, BASELINE, REFUSED, *with_history] + [p.file for p in plans]}
    manifest = {
        "format": FORMAT,
        "stacks": {p.name: stack_entry(p.file, p.crs, p.transform, p.width, p.height, 128, NODATA, p.dates)
                   for p in plans},
        "files": files,
        "fingerprint": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
        "n_fields": len(fields),
        "builder": f"app.season build {app.__version__}",
        "built_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "audit": _audit(fields, summary_of_import, fields_path, mapping_path, scenes_path, baseline, catalogue,
                        plans, audits, stack_of, masked, out),
    }
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1, default=str) + "\n").encode())
    log(f"season written: {out} ({len(fields)} fields, {len(plans)} stack(s), {len(fields.refused)} row(s) refused)")
    return {**summary, "complete": True, "fingerprint": manifest["fingerprint"]}


def read_baseline_table(path) -> pa.Table:
    """A baseline.parquet as `app.season baseline` writes it (BadInput if it is not one)."""
    path = Path(path)
    if path.suffix.lower() in (".csv", ".txt", ".tsv") or (path.is_file() and not _is_parquet(path)):
        raise BadInput(f"--baseline {path.name} is a table, not a baseline.parquet: make one first with "
                       f"`python -m app.season baseline --table {path.name} --out DIR`, then give "
                       "--baseline DIR/baseline.parquet")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInput(f"baseline {path} is not readable: {exc}") from None
    missing = [c for c in BASELINE_COLUMNS if c not in table.column_names]
    if missing:
        raise BadInput(f"baseline {path.name} lacks column(s) {', '.join(missing)} (make it with `app.season baseline`)")
    return table.select(list(BASELINE_COLUMNS)).cast(pa.schema(BASELINE_COLUMNS))


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _write_fields(path, fields, stack_of) -> None:
    """fields.parquet, rows sorted by field_id: the same catalogue whatever order the source file has
    (a FlatGeobuf, for one, stores its features in spatial-index order)."""
    order = sorted(range(len(fields)), key=lambda i: fields.field_id[i])
    pick = lambda values: [values[i] for i in order]
    c = pick(fields.contract)
    column = lambda name: [row[name] for row in c]
    table = pa.table({
        "field_id": pa.array(pick(fields.field_id), pa.string()),
        "crop": pa.array(column("crop"), pa.string()),
        "geometry": pa.array([None if g is None else shapely.to_wkb(g) for g in pick(fields.geometry)], pa.binary()),
        "area_ha": pa.array(pick(fields.area_ha), pa.float64()),
        "sowing_date": pa.array(column("sowing_date"), pa.date32()),
        "harvest_date": pa.array(column("harvest_date"), pa.date32()),
        "region_id": pa.array(column("region_id"), pa.string()),
        "insured_sum": pa.array(column("insured_sum"), pa.float64()),
        "currency": pa.array(column("currency"), pa.string()),
        "index": pa.array(column("index"), pa.string()),
        "trigger": pa.array(column("trigger"), pa.float64()),
        "exit": pa.array(column("exit"), pa.float64()),
        "trigger_percentile": pa.array(column("trigger_percentile"), pa.float64()),
        "exit_percentile": pa.array(column("exit_percentile"), pa.float64()),
        "stack": pa.array(pick(stack_of), pa.string()),
        "note": pa.array([fields.note(i) for i in order], pa.string()),
        "source_id": pa.array(pick(fields.source_id), pa.string()),
    })
    types = sorted({g.geom_type for g in fields.geometry if g is not None})
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": types}}}  # no crs = OGC:CRS84
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), tmp)


def _write_refused(path, refused: list) -> None:
    """refused.parquet: every source row the import refused, in source order (written even when empty,
    so a season built by this code says "none" rather than nothing)."""
    rows = sorted(refused, key=lambda r: r["row"])
    table = pa.table({
        "source_id": pa.array([r["source_id"] for r in rows], pa.string()),
        "row": pa.array([r["row"] for r in rows], pa.int64()),
        "reason": pa.array([r["reason"] for r in rows], pa.string()),
        "detail": pa.array([r["detail"] for r in rows], pa.string()),
        "geometry": pa.array([None if r["geometry"] is None else shapely.to_wkb(r["geometry"]) for r in rows],
                             pa.binary()),
    }, schema=REFUSED_SCHEMA)
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": []}}}  # lon/lat, like fields.parquet
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), tmp)


def _copy_history(baseline, out: Path) -> list[str]:
    """The history.parquet beside the baseline (`app.season baseline` writes both), into the season:
    percentile terms are priced on it. [its name] if copied, else []."""
    history = Path(baseline).with_name(HISTORY) if baseline is not None else None
    if history is None or not history.is_file():
        (out / HISTORY).unlink(missing_ok=True)
        return []
    with atomic_path(out / HISTORY) as tmp:
        shutil.copyfile(history, tmp)
    return [HISTORY]


def _write_baseline(path, table) -> None:
    if table is None:
        table = pa.table({name: pa.array([], t) for name, t in BASELINE_COLUMNS.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_log(path, fields, stack_of) -> None:
    entries = [{"row": fields.row[i], "source_id": fields.source_id[i], "field_id": fields.field_id[i],
                "outcome": "imported", "stack": stack_of[i], "area_ha": fields.area_ha[i], "notes": fields.notes[i]}
               for i in range(len(fields))]
    entries += [{"row": r["row"], "source_id": r["source_id"], "field_id": None, "outcome": "refused",
                 "stack": None, "reason": r["reason"], "notes": [r["detail"]]} for r in fields.refused]
    entries.sort(key=lambda e: e["row"])
    atomic_write_bytes(path, "".join(json.dumps(e, default=str) + "\n" for e in entries).encode())


def _note_kinds(fields) -> dict:
    """note kind (its words before ':' or '(') → count, most common first."""
    counts = Counter(re.split(r"[:(]", note, maxsplit=1)[0].strip() for notes in fields.notes for note in notes)
    return dict(counts.most_common())


def import_summary(fields, mapping) -> dict:
    """What the import did with the insurer's rows: the build's summary (stderr) and the audit's."""
    columns = ("crop", *mapping.terms)
    pair_terms = {n: kind for kind, names in PAIRS.items() for n in names}

    def empty(row, c) -> bool:  # a payout term counts only in the pair its row uses (app.season.mapping)
        used = "percentile" if all(row[n] is not None for n in PAIRS["percentile"]) or \
            "fixed" not in mapping.pairs else "fixed"
        return row[c] is None and pair_terms.get(c, used) == used

    nulls = {c: sum(empty(row, c) for row in fields.contract) for c in columns}
    return {
        "rows": len(fields) + len(fields.refused), "imported": len(fields),
        "refused_by_reason": dict(Counter(r["reason"] for r in fields.refused).most_common()),
        "ids_mapped": sum(f != s for f, s in zip(fields.field_id, fields.source_id)),
        "nulls": nulls,
        "null_examples": {c: [s for s, row in zip(fields.source_id, fields.contract) if empty(row, c)][:3]
                          for c in columns if nulls[c]},
        "without_geometry": sum(g is None for g in fields.geometry),
        "notes_by_kind": _note_kinds(fields),
    }


def summary_lines(summary: dict) -> list[str]:
    """The import summary for people: rows in = imported + refused, empty contract values, notes."""
    refused = sum(summary["refused_by_reason"].values())
    by_reason = ", ".join(f"{k} {v}" for k, v in summary["refused_by_reason"].items())
    nulls = ", ".join(f"{k} {v}" for k, v in summary["nulls"].items() if v) or "none"
    notes = ", ".join(f"{k} {v}" for k, v in summary["notes_by_kind"].items()) or "none"
    return [f"import: {summary['rows']} rows read = {summary['imported']} imported + {refused} refused"
            + (f" ({by_reason})" if refused else "")
            + f"; {summary['ids_mapped']} ID(s) mapped to the season's form (source_id keeps the insurer's)",
            f"import: empty contract values: {nulls}"
            + (f"; {summary['without_geometry']} field(s) without a usable geometry" if summary["without_geometry"] else ""),
            f"import: notes by kind: {notes}"]


def _refuse_nulls(summary: dict) -> None:
    """--strict: an imported field with an empty contract value stops the build before anything is written."""
    empty = {c: n for c, n in summary["nulls"].items() if n}
    if empty:
        raise BadInput("--strict: contract values are empty: " + "; ".join(
            f"{c} on {n} field(s), e.g. {', '.join(map(repr, summary['null_examples'][c]))}" for c, n in empty.items())
            + " (see the notes above); nothing was written")


def _audit(fields, summary_of_import, fields_path, mapping_path, scenes_path, baseline, catalogue, plans, audits,
           stack_of, masked, out) -> dict:
    return {
        "inputs": {
            "fields": {"file": str(Path(fields_path).resolve()), "sha256": _sha_of_input(fields_path),
                       "crs": fields.source_crs},
            "mapping": {"file": str(Path(mapping_path).resolve()), "sha256": sha256_file(mapping_path)},
            "scenes": str(Path(scenes_path).resolve()),
            "baseline": ({"file": str(Path(baseline).resolve()), "sha256": sha256_file(baseline)} if baseline
                         else "none: every field's outcome will be 'no baseline' until a season is built with one"),
        },
        "fields_import": {
            **summary_of_import,
            "refused": [{k: r[k] for k in ("row", "source_id", "reason", "detail")} for r in fields.refused],
            "notes_by_kind": _note_kinds(fields), "without_stack": sum(s is None for s in stack_of),
            "log": IMPORT_LOG, "log_sha256": sha256_file(out / IMPORT_LOG),
            "assignment_rule": " ".join(ASSIGNMENT_RULE.split("Assignment rule")[1].split("A stack's grid")[0].split()),
        },
        "scenes": {
            "masked_scl_classes": sorted(masked),
            "resampling": "red/NIR: none (each zone's stack is on its scenes' native 10 m grid, reads aligned to "
                          "COG blocks); SCL: nearest, 20 m → 10 m",
            "merge": "per stack and solar day: the first valid pixel in item-id order",
            "offset_rule": " ".join(OFFSET_RULE.split()),
            "n_items": len(catalogue.scenes), "skipped": catalogue.skipped,
            "used": {name: len(a["scenes"]) for name, a in audits.items()},
        },
        "stacks": audits,
        "libraries": _versions(),
    }


def _sha_of_input(path) -> str:
    """sha256 of a vector input: the file, or for a Shapefile the file and its sidecars."""
    path = Path(path)
    if path.suffix.lower() != ".shp":
        return sha256_file(path)
    h = hashlib.sha256()
    for part in sorted(path.parent.glob(path.stem + ".*")):
        h.update(f"{part.name}:{sha256_file(part)}\n".encode())
    return h.hexdigest()


def _versions() -> dict:
    import pyogrio
    import pyproj
    import rasterio

    return {"python": sys.version.split()[0], "numpy": np.__version__, "pyarrow": pa.__version__,
            "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__, "pyproj": pyproj.__version__,
            "proj": pyproj.proj_version_str, "shapely": shapely.__version__, "geos": shapely.geos_version_string,
            "pyogrio": pyogrio.__version__, "pyogrio_gdal": pyogrio.__gdal_version_string__}
