"""The per-field output file: OUT/<field_id>.parquet, one row per acquisition date.

"Done means valid": a file counts only if its footer reads, its row count equals the season's
number of dates and its key-value metadata names the same field, code version and data fingerprint.
The check reads the footer alone.
"""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.hpc.atomic import atomic_path
from app.sure2.ids import validate_field_id

SCHEMA = pa.schema([
    ("date", pa.date32()),
    ("n_pixels", pa.int32()),  # valid (cloud-free) inner pixels on this date
    ("valid_fraction", pa.float64()),  # n_pixels / inner-mask pixels
    ("ndvi_mean", pa.float64()),  # null where the date is missing (below the coverage threshold)
    ("ndvi_smooth", pa.float64()),
    ("baseline_mean", pa.float64()),
    ("z", pa.float64()),
])
JSON_KEYS = ("season_metrics", "events", "payout")


def output_path(out_dir, field_id) -> Path:
    return Path(out_dir) / f"{validate_field_id(field_id)}.parquet"


def write_output(path, columns: dict, field_id, code_version, fingerprint, blobs: dict) -> None:
    """Write atomically (temp name in the same directory, fsync, rename)."""
    meta = {b"field_id": field_id.encode(), b"code_version": code_version.encode(),
            b"data_fingerprint": fingerprint.encode()}
    for key in JSON_KEYS:
        meta[key.encode()] = json.dumps(blobs[key], separators=(",", ":")).encode()
    table = pa.table(columns, schema=SCHEMA.with_metadata(meta))
    with atomic_path(path) as tmp:
        # Small files: no statistics, one row group; snappy is the cheapest codec to write.
        pq.write_table(table, tmp, compression="snappy", write_statistics=False)


def check_output(path, field_id, n_rows, code_version, fingerprint):
    """None when `path` is a valid output for this field/season/code, else a short reason."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        meta = pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for torn or foreign files
        return f"unreadable footer: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if meta.num_rows != n_rows:
        return f"row count {meta.num_rows} != {n_rows}"
    kv = meta.metadata or {}
    if kv.get(b"field_id", b"").decode(errors="replace") != field_id:
        return "field_id mismatch"
    got = kv.get(b"code_version", b"").decode(errors="replace")
    if got != code_version:
        return f"code version {got or '?'} != {code_version}"
    got = kv.get(b"data_fingerprint", b"").decode(errors="replace")
    if got != fingerprint:
        return f"fingerprint {got[:12] or '?'} != {fingerprint[:12]}"
    return None


def read_blobs(path) -> dict:
    """The JSON metadata blobs (season_metrics, events, payout) of an output, from its footer."""
    kv = pq.read_metadata(path).metadata
    return {key: json.loads(kv[key.encode()]) for key in JSON_KEYS}
