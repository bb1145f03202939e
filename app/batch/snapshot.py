"""Snapshots of the batch state: nobody replays a national season's journal from byte 0.

The journal only grows (append-only, shared by every process on every node); a snapshot is the state
as of a line boundary (`offset`) of it, and a reader loads the snapshot and replays only the lines
after it. Written (atomically, outside the journal lock: the writer's state is exactly that of the
lines before its offset) by a run's parent after planning, every SNAPSHOT_EVERY_S while the journal
grows, and at the end; by `plan` and `report` when they replayed a long tail.

Two files: OUT/.batch/snapshot.json (format, the journal's inode, offset, claims, owners' last
records, failures, moved-aside outputs, and the name of the per-field file) and the per-field file
it names, snapshot-<offset>.parquet (each field's last outcome, summary, compute seconds and output
identity: columns load a million fields in seconds, where the same as JSON takes tens). JSON and
Parquet, not pickle: the output directory may be shared, and loading must never run code. A snapshot
whose journal inode or offset does not match the journal is ignored (full replay).
"""

import gc
import json
import os
import sys
import threading
import time
from collections import defaultdict
from itertools import repeat

from app.batch.claims import ClaimBoard
from app.batch.journal import Journal
from app.batch.state import BatchState, Outcome
from app.hpc.atomic import atomic_path, atomic_write_bytes

FORMAT = "sure2-batch-snapshot/3"
SNAPSHOT_EVERY_S = 60.0
MIN_NEW_BYTES = 32 << 20  # a snapshot is not worth writing for less new journal than this
HEADER = "snapshot.json"


def write(layout, state: BatchState, offset: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = sorted(set(state.outcome) | set(state.summary) | set(state.files))
    outcome = [state.outcome.get(f) for f in fields]
    files = [state.files.get(f) for f in fields]
    table = pa.table({
        "field_id": fields,
        "kind": [o.kind if o else None for o in outcome],
        "t": [o.t if o else None for o in outcome],
        "why": [o.why if o else None for o in outcome],
        "summary": [_json_text(state.summary.raw(f)) if f in state.summary else None for f in fields],
        "seconds": [state.seconds.get(f) for f in fields],
        "context": [f[0] if f else None for f in files],
        **{name: pa.array([f[k] if f else None for f in files], type=pa.int64())
           for k, name in enumerate(("size", "mtime_ns", "inode"), start=1)},
    })
    name = f"snapshot-{offset}.parquet"
    with atomic_path(layout.root / name) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    header = {"format": FORMAT, "journal_ino": os.stat(layout.journal).st_ino, "offset": offset,
              "written_at": time.time(), "fields": name, "claim_of": state.claim_of,
              "last_seen": state.last_seen, "invalid": state.invalid,
              "failures": {fid: [list(f) for f in fs] for fid, fs in state.failures.items() if fs}}
    atomic_write_bytes(layout.root / HEADER, json.dumps(header, separators=(",", ":")).encode())
    for old in layout.root.glob("snapshot-*.parquet"):
        if old.name != name:
            old.unlink(missing_ok=True)


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def load(layout) -> tuple[BatchState, int]:
    """(state, offset) from the snapshot, or (empty state, 0) when there is none that fits the journal."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        header = json.loads((layout.root / HEADER).read_bytes())
        st = os.stat(layout.journal)
        if header.get("format") != FORMAT or header["journal_ino"] != st.st_ino or header["offset"] > st.st_size:
            return BatchState(), 0
        return _state(header, pq.read_table(layout.root / header["fields"])), header["offset"]
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):  # torn, foreign or another layout: replay
        return BatchState(), 0


def _state(header: dict, table) -> BatchState:
    """The state, built in bulk: rows filtered in Arrow, columns turned into lists once, dicts made from
    zips, outcomes made by tuple.__new__ (no Python-level call per field), with the cyclic garbage
    collector paused (millions of new tuples would otherwise trigger full collections over a growing
    heap, and none of them can be garbage)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _bulk_state(header, table)
    finally:
        if enabled:
            gc.enable()


def _bulk_state(header: dict, table) -> BatchState:
    import pyarrow.compute as pc

    state = BatchState()
    state.claim_of = dict(header["claim_of"])
    state.held = defaultdict(set)
    for fid, owner in state.claim_of.items():
        state.held[owner].add(fid)
    state.last_seen = dict(header["last_seen"])
    state.invalid = [tuple(m) for m in header["invalid"]]
    state.failures = defaultdict(list, {fid: [Outcome(*f) for f in fs] for fid, fs in header["failures"].items()})

    def where_present(name: str, *columns: str) -> list:
        rows = table.filter(pc.is_valid(table[name]))
        return [rows[c].to_pylist() for c in ("field_id", *columns)]

    ids, kind, t, why = where_present("kind", "kind", "t", "why")
    state.outcome = dict(zip(ids, map(tuple.__new__, repeat(Outcome), zip(kind, t, why))))
    ids, summary = where_present("summary", "summary")
    state.summary.update(zip(ids, summary))  # JSON text, decoded when read
    ids, seconds = where_present("seconds", "seconds")
    state.seconds = dict(zip(ids, seconds))
    ids, *identity = where_present("size", "context", "size", "mtime_ns", "inode")
    state.files = dict(zip(ids, zip(*identity)))
    return state


def open_board(layout, lease_s: float) -> ClaimBoard:
    """A claim board on the journal, its state from the snapshot plus the lines after it."""
    layout.root.mkdir(parents=True, exist_ok=True)
    Journal(layout.journal).close()  # exists before its inode is compared
    state, offset = load(layout)
    board = ClaimBoard(Journal(layout.journal, offset=offset), lease_s=lease_s, state=state)
    board.snapshot_offset = offset
    return board


class Snapshotter:
    """Writes a snapshot when the journal grew enough (and, for a run, often enough).

    Between the forced ones (after planning, at the end) a run's snapshots are written by a background
    thread from a copy of the state: copying a million-entry dict takes milliseconds, building and
    writing the snapshot takes seconds, and the dispatcher that would otherwise do it is what every
    worker waits on for its next chunk. One writer at a time; a failed background write is reported in
    one line and costs only the next reader a longer replay."""

    def __init__(self, layout, board: ClaimBoard, every_s: float = SNAPSHOT_EVERY_S):
        self.layout, self.board, self.every_s = layout, board, every_s
        self._last_offset = board.snapshot_offset
        self._last_time = time.monotonic()
        self._writer: threading.Thread | None = None

    def maybe(self, force: bool = False) -> None:
        offset = self.board.journal.position()
        grown = offset - self._last_offset
        due = time.monotonic() - self._last_time >= self.every_s
        if grown > 0 and (force or (grown >= MIN_NEW_BYTES and due)):
            self._wait()
            if force:
                write(self.layout, self.board.state, offset)
            else:
                self._writer = threading.Thread(target=self._write_quietly, name="snapshot",
                                                args=(self.board.state.copy(), offset))
                self._writer.start()
            self._last_offset, self._last_time = offset, time.monotonic()

    def _wait(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def _write_quietly(self, state: BatchState, offset: int) -> None:
        try:
            write(self.layout, state, offset)
        except OSError as exc:
            print(f"batch: snapshot not written ({' '.join(str(exc).split())}): the next reader replays more",
                  file=sys.stderr)
