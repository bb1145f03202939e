"""Claiming fields exactly once, across processes and nodes, through the journal.

A claim is made under the journal's flock after replaying every record, so two live workers can
never hold the same field. A field is free when nobody holds it, or its holder is dead (see
owner.Liveness): a dead worker's claims are taken over, a live worker's never are.

Which fields a worker takes: a contiguous run of the plan (spatial order, so a worker's GDAL block
cache keeps serving neighbouring fields). It continues from where its last chunk ended; when that
spot is taken it jumps to the middle of the largest free stretch (a stretch at the plan's start is
taken from its beginning), so workers spread out and rarely collide.

At a national scale (a million fields, a hundred workers) a claim must cost what changed, not what
exists: the picker keeps a "closed" flag per field of its plan (settled, or failed too often: both
only ever become true), updated from the fields whose outcome the last replay changed, and finds the
largest free stretch with one vectorised pass.
"""

import threading
import time
from collections.abc import Sequence

from app.batch.journal import Journal
from app.batch.owner import Liveness, Owner
from app.batch.policy import FailurePolicy
from app.batch.state import SETTLED, BatchState, compact


class ClaimBoard:
    def __init__(self, journal: Journal, lease_s: float = 120.0, owner: Owner | None = None,
                 state: BatchState | None = None):
        self.journal = journal
        self.owner = str(owner or Owner.me())
        self.liveness = Liveness(lease_s)
        self.state = state or BatchState()
        self._changed = {}  # consumer -> fields whose outcome changed since it last asked
        self.snapshot_offset = 0  # where the journal's replay started (app.batch.snapshot sets it)

    def sync(self) -> BatchState:
        changed = self.state.apply(self.journal.read_new())
        for fields in self._changed.values():
            fields.update(changed)
        return self.state

    def take_changed(self, consumer: str) -> set:
        """Fields whose outcome changed since this consumer's last call (all it has not seen yet at the
        first call is the picker's business: Picker.observe looks at everything once)."""
        changed = self._changed.get(consumer, set())
        self._changed[consumer] = set()
        return changed

    def _own(self, records: list[dict]) -> list[dict]:
        """Per-field outcomes folded into one record each (state.compact), signed by this owner (a
        record naming another owner, as the parent's on behalf of a hung worker, keeps it)."""
        return [{"o": self.owner, **r} for r in compact(records)]

    def record(self, records: list[dict]) -> None:
        """Append records as this owner (one locked write)."""
        if not records:
            return
        with self.journal.locked():
            self.sync()
            self.journal.append(self._own(records))

    def live_claims(self, now: float | None = None) -> dict:
        """field -> owner, for fields held by live owners other than this one."""
        now = time.time() if now is None else now
        live = self.state.live_owners(self.liveness, now) - {self.owner}
        return {fid: o for fid, o in self.state.claim_of.items() if o in live}

    def claim(self, picker: "Picker", n: int, release: Sequence[str] = (), extra: Sequence[dict] = (), slot=0) -> list[str]:
        """Append `extra` outcomes, release `release`, then claim up to n free fields: one lock.

        Free: not held by a live other owner, nor by this owner already (a dispatcher claims for
        several workers; `slot` names the worker, whose own cursor in the plan continues)."""
        with self.journal.locked():
            self.sync()
            finished = list(extra) + ([{"release": list(release)}] if release else [])
            if finished:  # replayed before picking, so this worker's own outcomes count
                self.journal.append(self._own(finished))
                self.sync()
            picker.observe(self.state, self.take_changed("picker"))
            taken = self.live_claims()
            taken.update(dict.fromkeys(self.state.held.get(self.owner, ()), self.owner))
            chosen = picker.pick(n, taken, slot)
            if chosen:
                self.journal.append([{"o": self.owner, "claim": chosen}])
        return chosen

    def waiting_on_others(self, picker: "Picker") -> bool:
        """True while a live owner elsewhere holds a field this worker still wants (it may die)."""
        with self.journal.locked():
            self.sync()
            taken = self.live_claims()
        return any(picker.wanted(self.state, fid) for fid in taken if fid in picker.position)

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

    def __init__(self, fields: list[str], since: float, failures: FailurePolicy):
        self.fields = fields
        self.position = {fid: i for i, fid in enumerate(fields)}
        self.since = since  # outcomes before this (an older run's) do not settle a field
        self.failures = failures
        self.closed = bytearray(len(fields))  # 1: not wanted any more (settled, or failed too often)
        self.cursors = {}  # slot -> where that worker's next chunk starts
        self._observed = False

    def wanted(self, state: BatchState, fid: str) -> bool:
        return not state.settled_since(fid, self.since) and not self.failures.given_up(
            self.failures.failures(state, fid))

    def observe(self, state: BatchState, changed) -> None:
        """Close the fields that are no longer wanted: all of them the first time, then those changed."""
        if not self._observed:
            self._observed = True
            for fid, out in state.outcome.items():  # inlined wanted(): a national season is a million
                i = self.position.get(fid)
                if i is not None and out.kind in SETTLED and out.t >= self.since:
                    self.closed[i] = 1
            changed = state.failures
        for fid in changed:
            i = self.position.get(fid)
            if i is not None and not self.closed[i] and not self.wanted(state, fid):
                self.closed[i] = 1

    def pick(self, n: int, taken, slot=0) -> list[str]:
        """Up to n free fields (not closed, not in `taken`) from where slot's last chunk ended."""
        total = len(self.fields)
        if total == 0 or n <= 0:
            return []
        free = lambda i: not self.closed[i] and self.fields[i] not in taken
        cursor = self.cursors.get(slot)
        if cursor is None or cursor >= total or not free(cursor):
            cursor = self._largest_free_stretch(taken)
            if cursor is None:
                return []
        chosen = []
        i = cursor
        while i < total and len(chosen) < n and free(i):
            chosen.append(self.fields[i])
            i += 1
        self.cursors[slot] = i
        return chosen

    def _largest_free_stretch(self, taken) -> int | None:
        import numpy as np

        free = np.frombuffer(self.closed, dtype=np.uint8) == 0
        held = [self.position[f] for f in taken if f in self.position]
        free[held] = False
        edges = np.diff(np.concatenate(([0], free.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if len(starts) == 0:
            return None
        longest = int(np.argmax(ends - starts))
        best_start, best_len = int(starts[longest]), int(ends[longest] - starts[longest])
        # the plan's start (a first worker) or a short stretch: take it from its beginning;
        # otherwise someone is working up to it: begin in its middle, leaving them room.
        if best_start == 0 or best_len < 4:
            return best_start
        return best_start + best_len // 2
