"""The batch's state, rebuilt by replaying the journal's records in order (after a snapshot, if any).

Record kinds (every record also has "t" and "o" = owner):
  claim [ids] / release [ids] / exit          who holds which fields (exit releases all)
  hb                                           heartbeat: the owner is alive
  start [ids]                                  assessments are about to run (the attempt log)
  ok [ids] | skip [ids] | fail [[id, why]] | bad [[id, why]]   outcomes, a chunk's in one record
                                               (skip: found valid after claiming; a single id, or
                                               "fail": id + "why", is read too)
  r [[id, sec, s, f, c], ...]                  results: what an output says and how to trust it
  invalid id why moved | invalid [[id, why, moved], ...]   invalid outputs moved aside

Only a run's parent reads the journal (workers never do: app.batch.pool), and snapshots spare it the
replay of a national season's million results (app.batch.snapshot). `s` is the
assessment's summary (outcome, payout, ...); `f` the output file's identity when it was known valid
([size, mtime_ns, inode]); `c` the validity context it was valid in (code version, data fingerprint
and settings, hashed): the planner trusts a file whose identity and context still match
(app.batch.outputs) and checks every other file in full.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

SETTLED = ("ok", "skip", "bad")
OUTCOMES = ("ok", "skip", "fail", "bad")


class JsonValues(dict):
    """A dict whose values may stay JSON text until read: a snapshot's million summaries cost their
    decoding only if a reader (the report) asks for them, not for every plan."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, str):
            value = json.loads(value)
            super().__setitem__(key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def raw(self, key):
        """The value as stored: JSON text, or the decoded object."""
        return super().__getitem__(key)


class Outcome(NamedTuple):
    kind: str
    t: float
    why: str = ""


@dataclass
class BatchState:
    claim_of: dict = field(default_factory=dict)  # field -> owner
    held: dict = field(default_factory=lambda: defaultdict(set))  # owner -> fields
    last_seen: dict = field(default_factory=dict)  # owner -> time of its last record
    outcome: dict = field(default_factory=dict)  # field -> last Outcome
    failures: dict = field(default_factory=lambda: defaultdict(list))  # field -> [Outcome]
    summary: JsonValues = field(default_factory=JsonValues)  # field -> latest assessment summary
    seconds: dict = field(default_factory=dict)  # field -> latest assessment compute time
    files: dict = field(default_factory=dict)  # field -> (context, size, mtime_ns, inode) known valid
    invalid: list = field(default_factory=list)  # (field, t) of outputs moved aside

    def apply(self, records: list[dict]) -> set:
        """Replay records; return the fields whose outcome changed."""
        changed = set()
        for r in records:
            owner, t = r.get("o", "?"), r.get("t", 0.0)
            self.last_seen[owner] = max(t, self.last_seen.get(owner, 0.0))
            for fid, sec, summary, identity, context in r.get("r", ()):
                if summary is not None:
                    self.summary[fid] = summary
                if sec is not None:
                    self.seconds[fid] = sec
                if identity is not None:
                    self.files[fid] = (context, *identity)
            for fid in r.get("claim", ()):
                previous = self.claim_of.get(fid)
                if previous is not None:  # a takeover
                    self.held[previous].discard(fid)
                self.claim_of[fid] = owner
                self.held[owner].add(fid)
            for fid in r.get("release", ()):
                self._release(owner, fid)
            if "exit" in r:
                for fid in list(self.held.get(owner, ())):
                    self._release(owner, fid)
            for kind in OUTCOMES:
                if kind in r:
                    for fid, why in _outcome_items(r, kind):
                        out = Outcome(kind, t, why)
                        self.outcome[fid] = out
                        changed.add(fid)
                        if kind in ("fail", "bad"):
                            self.failures[fid].append(out)
            if "invalid" in r:
                moved = [r["invalid"]] if isinstance(r["invalid"], str) else [m[0] for m in r["invalid"]]
                for fid in moved:
                    self.invalid.append((fid, t))
                    self.files.pop(fid, None)
        return changed

    def copy(self) -> "BatchState":
        """A copy that later records do not change (containers copied, their immutable items shared;
        summaries kept as they are, JSON text or decoded)."""
        return BatchState(
            claim_of=dict(self.claim_of), held=defaultdict(set, {o: set(f) for o, f in self.held.items() if f}),
            last_seen=dict(self.last_seen), outcome=dict(self.outcome),
            failures=defaultdict(list, {fid: list(fs) for fid, fs in self.failures.items() if fs}),
            summary=JsonValues(self.summary), seconds=dict(self.seconds), files=dict(self.files),
            invalid=list(self.invalid))

    def _release(self, owner: str, fid: str) -> None:
        if self.claim_of.get(fid) == owner:
            del self.claim_of[fid]
        self.held[owner].discard(fid)

    def settled_since(self, fid: str, since: float) -> bool:
        out = self.outcome.get(fid)
        return out is not None and out.kind in SETTLED and out.t >= since

    def live_owners(self, liveness, now: float) -> set:
        return {o for o, fids in self.held.items() if fids and liveness.alive(o, self.last_seen[o], now)}


def _outcome_items(r: dict, kind: str):
    """(field, why) pairs of one outcome kind in a record, in either of its two forms."""
    value = r[kind]
    if isinstance(value, str):
        return [(value, r.get("why", ""))]
    return [(item, "") if isinstance(item, str) else (item[0], item[1]) for item in value]


def compact(records: list[dict]) -> list[dict]:
    """Per-field outcome records (as backends yield them: {"ok": id, "sec", "s", "f", "c"},
    {"fail": id, "why"}, ...) folded into one results record and one outcomes record; others (records
    that name their owner, too) kept as they are."""
    results, outcomes, others = [], {}, []
    for r in records:
        kind = None if "o" in r else next((k for k in OUTCOMES if k in r and isinstance(r[k], str)), None)
        if kind is None:
            others.append(r)
            continue
        fid = r[kind]
        outcomes.setdefault(kind, []).append([fid, r.get("why", "")] if kind in ("fail", "bad") else fid)
        if any(k in r for k in ("sec", "s", "f")):
            results.append([fid, r.get("sec"), r.get("s"), r.get("f"), r.get("c")])
    return ([{"r": results}] if results else []) + ([outcomes] if outcomes else []) + others
