"""The per-field output file: OUT/<field_id>.parquet, one row per acquisition date of the field's stack.

"Done means valid": a file counts only if its footer reads, its row count is the one the assessment
promises, its key-value metadata names the same field, code version, data fingerprint and settings,
and (full check) every data page reads back with a matching checksum, so bit rot under an intact
footer is caught. Pages are written with CRC checksums; the whole (small) file is read to verify.

Footer key-value metadata: field_id, code_version, data_fingerprint, settings (JSON), status
(assessed | not_assessable | insufficient_data), reason (empty when assessed), and JSON blobs:
season_metrics (incl. the λ used), events, payout (null unless assessed; terms, percentile),
coverage, damage (pixel level: damaged-area fraction and hectares, main damage date) and damage_map
(the field's window of the season's damage map, compressed: app.sure2.pixels.map_patch; null when
the pixel level is off or the field is not assessed).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.hpc.atomic import atomic_path
from app.sure2.ids import validate_field_id
from app.sure2.outcome import STATUSES
from app.sure2.settings import Settings

SCHEMA = pa.schema([
    ("date", pa.date32()),
    ("n_pixels", pa.int32()),  # valid (cloud-free) inner pixels on this date
    ("valid_fraction", pa.float64()),  # n_pixels / inner-mask pixels (pixels outside the stack count as unobserved)
    ("ndvi_mean", pa.float64()),  # null where the date is missing (below the coverage threshold)
    ("ndvi_smooth", pa.float64()),
    ("baseline_mean", pa.float64()),
    ("z", pa.float64()),
])
JSON_KEYS = ("season_metrics", "events", "payout", "coverage", "damage", "damage_map")
SUMMARY_KEYS = ("outcome", "reason", "detail", "raster_coverage", "observed_share", "events", "payout", "amount_cents",
                "currency", "index_value", "damaged_fraction", "damaged_ha")  # see summary_of


@dataclass(frozen=True)
class Expected:
    """What a valid output of one field must say, for this season, this code and these settings."""

    field_id: str
    n_rows: int
    code_version: str
    fingerprint: str
    settings: Settings


def output_path(out_dir, field_id) -> Path:
    return Path(out_dir) / f"{validate_field_id(field_id)}.parquet"


def write_output(path, columns: dict, expected: Expected, status: str, reason: str, blobs: dict) -> None:
    """Write atomically (temp name in the same directory, fsync, rename), with page checksums."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    text = {b"field_id": expected.field_id, b"code_version": expected.code_version,
            b"data_fingerprint": expected.fingerprint, b"settings": expected.settings.canonical(),
            b"status": status, b"reason": reason}
    meta = {k: v.encode() for k, v in text.items()}
    for key in JSON_KEYS:
        meta[key.encode()] = json.dumps(blobs.get(key), separators=(",", ":")).encode()
    table = pa.table(columns, schema=SCHEMA.with_metadata(meta))
    if table.num_rows != expected.n_rows:
        raise ValueError(f"{expected.field_id}: {table.num_rows} rows, the output promises {expected.n_rows}")
    with atomic_path(path) as tmp:
        # Small files: no statistics, one row group; snappy is the cheapest codec to write.
        pq.write_table(table, tmp, compression="snappy", write_statistics=False, write_page_checksum=True)


class AnySettings:
    """Stands for the settings in an Expected that accepts an output made with any settings (evaluate
    reports each output's own; the batch's --settings-change keep)."""

    def difference(self, text: str) -> str:
        return ""


ANY_SETTINGS = AnySettings()


class OutputProblem(Exception):
    """An output that is not (or no longer) a valid one: the message is the short reason of check_output."""


@dataclass(frozen=True)
class OutputRead:
    """One output, read once: everything the season's report takes from it (summary, curve, damage patch,
    the evidence shown for the field)."""

    field_id: str
    status: str
    reason: str
    settings: str  # the settings it was made with (JSON text)
    blobs: dict  # the footer's JSON blobs (JSON_KEYS)
    columns: dict  # SCHEMA's columns as numpy arrays (date as datetime64[D]; nulls as NaN)

    def summary(self) -> dict:
        b = self.blobs
        return summary_of(self.status, self.reason, b["payout"], b["events"], b["coverage"], b["damage"])

    def curve(self) -> tuple:
        """(dates, ndvi_smooth, baseline_mean): the field's curve, as the area units take it."""
        return self.columns["date"], self.columns["ndvi_smooth"], self.columns["baseline_mean"]

    def damage_patch(self):
        """(row0, col0, classes, date index) of the field's window of the damage map, or None."""
        from app.sure2.pixels import read_patch

        patch = self.blobs["damage_map"]
        return (patch["stack"], read_patch(patch)) if patch else None


def read_output(path, expected: Expected | None = None) -> OutputRead:
    """Read a whole output once (page checksums verified); with `expected`, check its validity on the same
    read. Raises OutputProblem with check_output's reason ("missing", "unreadable footer: ...", ...)."""
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
    except FileNotFoundError:
        raise OutputProblem("missing") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for torn or foreign files
        raise OutputProblem(f"unreadable footer: {_first_line(exc)}") from None
    with parquet:
        meta = parquet.metadata
        text = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (meta.metadata or {}).items()}
        why = _footer_problem(meta.num_rows, text, expected) if expected is not None else None
        if why is None and text.get("status") not in STATUSES:
            why = f"status {text.get('status')!r} unknown"
        if why:
            raise OutputProblem(why)
        try:
            table = parquet.read()
        except Exception as exc:  # a checksum mismatch or an undecodable page
            raise OutputProblem(f"corrupt data page: {_first_line(exc)}") from None
    if table.num_rows != meta.num_rows:
        raise OutputProblem(f"corrupt: {table.num_rows} rows read, footer says {meta.num_rows}")
    try:
        blobs = {key: json.loads(text.get(key, "null")) for key in JSON_KEYS}
    except ValueError:
        raise OutputProblem("unreadable footer: a JSON blob does not parse") from None
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in SCHEMA.names}
    columns["date"] = columns["date"].astype("datetime64[D]")
    return OutputRead(text.get("field_id", ""), text["status"], text.get("reason", ""), text.get("settings", ""), blobs,
                      columns)


def check_output(path, expected: Expected, full: bool = True):
    """None when `path` is a valid output for `expected`, else a short reason.

    The reason starts with a kind (app.batch.plan acts on it): "missing", "unreadable", "corrupt",
    "row count", "field_id", "code version", "fingerprint", "settings", "status".
    full=False reads the footer only (the batch uses it for files it verified itself before).
    """
    if full:
        try:
            read_output(path, expected)
        except OutputProblem as problem:
            return str(problem)
        return None
    try:
        meta = pq.read_metadata(path)
    except FileNotFoundError:
        return "missing"
    except Exception as exc:
        return f"unreadable footer: {_first_line(exc)}"
    text = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (meta.metadata or {}).items()}
    why = _footer_problem(meta.num_rows, text, expected)
    if why is None and text.get("status") not in STATUSES:
        why = f"status {text.get('status')!r} unknown"
    return why


def _footer_problem(num_rows: int, text: dict, expected: Expected):
    if num_rows != expected.n_rows:
        return f"row count {num_rows} != {expected.n_rows}"
    if text.get("field_id") != expected.field_id:
        return f"field_id {text.get('field_id', '?')!r} is another field's"
    if text.get("code_version") != expected.code_version:
        return f"code version {text.get('code_version') or '?'} != {expected.code_version}"
    if text.get("data_fingerprint") != expected.fingerprint:
        return f"fingerprint {text.get('data_fingerprint', '?')[:12]} != {expected.fingerprint[:12]}"
    difference = expected.settings.difference(text.get("settings", ""))
    if difference:
        return f"settings: {difference}"
    return None


def summary_of(status: str, reason: str, payout: dict | None, events: list, coverage: dict | None,
               damage: dict | None = None) -> dict:
    """What a batch keeps of one output (its report and result layer): the same keys whether it comes
    from an assessment just made or from an output's footer."""
    coverage, damage = coverage or {}, damage or {}
    out = {"outcome": status, "reason": reason, "detail": coverage.get("detail", ""),
           "raster_coverage": coverage.get("raster_coverage"),
           "observed_share": coverage.get("observed_share"), "events": _events_text(events or []),
           "damaged_fraction": damage.get("damaged_fraction"), "damaged_ha": damage.get("damaged_ha")}
    if payout is not None:
        out.update(payout=payout["amount"], amount_cents=payout["amount_cents"], currency=payout["currency"],
                   index_value=payout["index_value"])
    return out


def _events_text(events: list) -> str:
    """Events as one short text: "abrupt_drop 2025-07-05; sustained_anomaly 2025-06-20..2025-07-10"."""
    parts = []
    for e in events:
        when = e.get("date") or f"{e.get('start_date')}..{e.get('end_date')}"
        parts.append(f"{e['type']} {when}")
    return "; ".join(parts)


def footer_summary(path) -> dict:
    footer = read_footer(path)
    return summary_of(footer["status"], footer["reason"], footer["payout"], footer["events"], footer["coverage"],
                      footer["damage"])


def read_footer(path) -> dict:
    """status, reason and the JSON blobs of an output, from its footer."""
    kv = pq.read_metadata(path).metadata
    out = {key: json.loads(kv.get(key.encode(), b"null")) for key in JSON_KEYS}
    out["status"] = kv[b"status"].decode()
    out["reason"] = kv[b"reason"].decode()
    return out


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
