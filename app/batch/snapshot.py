"""Snapshots of the batch state: nobody replays a national season's journal from byte 0.

The journal only grows (append-only, shared by every process on every node); a snapshot is the state
as of a line boundary (`offset`) of it, and a reader loads the snapshot and replays only the lines
after it. The parent of a run writes two (atomically, outside the journal lock: its state is exactly
that of the lines before its offset) after planning, every SNAPSHOT_EVERY_S while the journal grows,
and at the end:
  OUT/.batch/snapshot.json       everything: for planners and the report (summaries, file identities)
  OUT/.batch/snapshot-work.json  what a worker needs to claim: claims, failures, and outcomes since
                                 the writer's run began (an older run's outcomes only settle a field
                                 for that run; a worker that claims such a field finds its output
                                 valid and records a skip)
JSON, not pickle: the output directory may be shared, and loading must never run code. A snapshot
names the journal's inode and is ignored (full replay) if it does not match or lies past its end.
"""

import json
import os
import time
from collections import defaultdict

from app.batch.claims import ClaimBoard
from app.batch.journal import Journal
from app.batch.state import BatchState, Outcome
from app.hpc.atomic import atomic_write_bytes

FORMAT = "sure2-batch-snapshot/1"
SNAPSHOT_EVERY_S = 60.0
MIN_NEW_BYTES = 4 << 20  # a snapshot is not worth writing for less new journal than this


def _paths(layout):
    return layout.root / "snapshot.json", layout.root / "snapshot-work.json"


def write(layout, state: BatchState, offset: int, since: float) -> None:
    full, work = _paths(layout)
    ino = os.stat(layout.journal).st_ino
    outcome = {fid: list(o) for fid, o in state.outcome.items()}
    common = {"format": FORMAT, "journal_ino": ino, "offset": offset, "written_at": time.time(),
              "claim_of": state.claim_of,
              "last_seen": {o: t for o, t in state.last_seen.items() if state.held.get(o)},
              "failures": {fid: [list(f) for f in fs] for fid, fs in state.failures.items() if fs}}
    for path, extra in (
        (full, {"outcome": outcome, "summary": state.summary, "seconds": state.seconds,
                "files": {fid: list(f) for fid, f in state.files.items()}, "invalid": state.invalid,
                "last_seen": state.last_seen}),
        (work, {"outcome": {fid: o for fid, o in outcome.items() if o[1] >= since or o[0] in ("fail", "bad")}}),
    ):
        atomic_write_bytes(path, json.dumps({**common, **extra}, separators=(",", ":")).encode())


def load(layout, worker: bool) -> tuple[BatchState, int]:
    """(state, offset) from the snapshot for this kind of reader, or (empty state, 0)."""
    path = _paths(layout)[1 if worker else 0]
    try:
        snap = json.loads(path.read_bytes())
        st = os.stat(layout.journal)
    except (OSError, ValueError):
        return BatchState(), 0
    if snap.get("format") != FORMAT or snap.get("journal_ino") != st.st_ino or snap.get("offset", 0) > st.st_size:
        return BatchState(), 0
    state = BatchState()
    state.claim_of = dict(snap["claim_of"])
    state.held = defaultdict(set)
    for fid, owner in state.claim_of.items():
        state.held[owner].add(fid)
    state.last_seen = dict(snap["last_seen"])
    state.outcome = {fid: Outcome(*o) for fid, o in snap["outcome"].items()}
    state.failures = defaultdict(list, {fid: [Outcome(*f) for f in fs] for fid, fs in snap["failures"].items()})
    if not worker:
        state.summary, state.seconds = snap["summary"], snap["seconds"]
        state.files = {fid: tuple(f) for fid, f in snap["files"].items()}
        state.invalid = snap["invalid"]
    return state, snap["offset"]


def open_board(layout, lease_s: float, worker: bool = False) -> ClaimBoard:
    """A claim board on the journal, its state from the newest usable snapshot plus the lines after it."""
    layout.root.mkdir(parents=True, exist_ok=True)
    Journal(layout.journal).close()  # exists before its inode is compared
    state, offset = load(layout, worker)
    return ClaimBoard(Journal(layout.journal, offset=offset), lease_s=lease_s, state=state, worker=worker)


class Snapshotter:
    """The run parent's: write snapshots after planning, while the journal grows, and at the end."""

    def __init__(self, layout, board: ClaimBoard, since: float):
        self.layout, self.board, self.since = layout, board, since
        self._last_offset, self._last_time = -1, 0.0

    def maybe(self, force: bool = False) -> None:
        offset = self.board.journal.position()
        grown = offset - self._last_offset
        if force or (grown >= MIN_NEW_BYTES and time.monotonic() - self._last_time >= SNAPSHOT_EVERY_S):
            write(self.layout, self.board.state, offset, self.since)
            self._last_offset, self._last_time = offset, time.monotonic()
