"""Claiming fields exactly once, across processes and nodes, through the journal.

A claim is made under the journal's flock after replaying every record, so two live workers can
never hold the same field. A field is free when nobody holds it, or its holder is dead (see
owner.Liveness): a dead worker's claims are taken over, a live worker's never are.

Which fields a worker takes: a contiguous run of the plan (spatial order, so a worker's GDAL block
cache keeps serving neighbouring fields). It continues from where its last chunk ended; when that
spot is taken it jumps to the middle of the largest free stretch (a stretch at the plan's start is
taken from its beginning), so workers spread out and rarely collide.
"""

import threading
import time

from app.batch.journal import Journal
from app.batch.owner import Liveness, Owner
from app.batch.state import BatchState


class ClaimBoard:
    def __init__(self, journal: Journal, lease_s: float = 120.0, owner: Owner | None = None):
        self.journal = journal
        self.owner = str(owner or Owner.me())
        self.liveness = Liveness(lease_s)
        self.state = BatchState()

    def sync(self) -> BatchState:
        self.state.apply(self.journal.read_new())
        return self.state

    def record(self, records: list[dict]) -> None:
        """Append records as this owner (one locked write)."""
        with self.journal.locked():
            self.sync()
            self.journal.append([{"o": self.owner, **r} for r in records])

    def live_claims(self, now: float | None = None) -> dict:
        """field -> owner, for fields held by live owners other than this one."""
        now = time.time() if now is None else now
        live = self.state.live_owners(self.liveness, now) - {self.owner}
        return {fid: o for fid, o in self.state.claim_of.items() if o in live}

    def claim(self, picker: "Picker", n: int, release: list[str] = (), extra: list[dict] = ()) -> list[str]:
        """Append `extra` outcomes, release `release`, then claim up to n free fields: one lock."""
        with self.journal.locked():
            self.sync()
            finished = list(extra) + ([{"release": list(release)}] if release else [])
            if finished:  # replayed before picking, so this worker's own outcomes count
                self.journal.append([{"o": self.owner, **r} for r in finished])
                self.sync()
            taken = self.live_claims()
            chosen = picker.pick(n, lambda fid: fid not in taken and picker.wanted(self.state, fid))
            if chosen:
                self.journal.append([{"o": self.owner, "claim": chosen}])
        return chosen

    def waiting_on_others(self, picker: "Picker") -> bool:
        """True while a live owner elsewhere holds a field this worker still wants (it may die)."""
        with self.journal.locked():
            self.sync()
            taken = self.live_claims()
        return any(fid in taken and picker.wanted(self.state, fid) for fid in picker.fields)

    def heartbeat_every(self, seconds: float) -> "threading.Event":
        """Append a heartbeat every `seconds` from a daemon thread; set the returned event to stop."""
        stop = threading.Event()

        def beat():
            while not stop.wait(seconds):
                try:
                    self.record([{"hb": 1}])
                except OSError:
                    return  # storage trouble: the worker's own writes will report it

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()
        return stop


class Picker:
    """Chooses contiguous chunks of the plan (see module docstring)."""

    def __init__(self, fields: list[str], since: float, max_failures: int, failures_since: float):
        self.fields = fields
        self.since = since  # outcomes before this (an older run's) do not settle a field
        self.max_failures = max_failures
        self.failures_since = failures_since
        self.cursor = None

    def wanted(self, state: BatchState, fid: str) -> bool:
        return not state.settled_since(fid, self.since) and (
            state.failure_count(fid, self.failures_since) < self.max_failures
        )

    def pick(self, n: int, free) -> list[str]:
        total = len(self.fields)
        if total == 0 or n <= 0:
            return []
        if self.cursor is None or self.cursor >= total or not free(self.fields[self.cursor]):
            self.cursor = self._largest_free_stretch(free)
            if self.cursor is None:
                return []
        chosen = []
        i = self.cursor
        while i < total and len(chosen) < n and free(self.fields[i]):
            chosen.append(self.fields[i])
            i += 1
        self.cursor = i
        return chosen

    def _largest_free_stretch(self, free) -> int | None:
        best_start, best_len, start = None, 0, None
        for i, fid in enumerate(self.fields + [None]):
            if fid is not None and free(fid):
                if start is None:
                    start = i
                continue
            if start is not None and i - start > best_len:
                best_start, best_len = start, i - start
            start = None
        if best_start is None:
            return None
        # the plan's start (a first worker) or a short stretch: take it from its beginning;
        # otherwise someone is working up to it: begin in its middle, leaving them room.
        if best_start == 0 or best_len < 4:
            return best_start
        return best_start + best_len // 2
