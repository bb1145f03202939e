"""The batch's state, rebuilt by replaying the journal's records in order.

Record kinds (every record also has "t" and "o" = owner):
  claim [ids] / release [ids] / exit          who holds which fields (exit releases all)
  hb                                           heartbeat: the owner is alive
  start [ids]                                  an assessment is about to run (the attempt log)
  ok id sec s f c | skip id f c | fail id why | bad id why   outcomes (skip: found valid after claiming)
  verified [[id, s, f], ...] c                 outputs a planner checked in full and found valid
  invalid id why moved                         an invalid output was moved aside

`s` is the assessment's summary (outcome, payout, ...); `f` the output file's identity when it was
known valid ([size, mtime_ns, inode]); `c` the validity context it was valid in (code version, data
fingerprint and settings, hashed): the planner trusts a file whose identity and context still match
(app.batch.outputs) and checks every other file in full.
"""

from collections import defaultdict
from dataclasses import dataclass, field

SETTLED = ("ok", "skip", "bad")


@dataclass
class Outcome:
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
    starts: dict = field(default_factory=lambda: defaultdict(int))  # field -> attempts started
    summary: dict = field(default_factory=dict)  # field -> latest assessment summary
    seconds: dict = field(default_factory=dict)  # field -> latest assessment compute time
    files: dict = field(default_factory=dict)  # field -> (context, size, mtime_ns, inode) known valid
    invalid: list = field(default_factory=list)  # records of outputs moved aside

    def apply(self, records: list[dict]) -> None:
        for r in records:
            owner, t = r.get("o", "?"), r.get("t", 0.0)
            self.last_seen[owner] = max(t, self.last_seen.get(owner, 0.0))
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
            for fid in r.get("start", ()):
                self.starts[fid] += 1
            for kind in ("ok", "skip", "fail", "bad"):
                if kind in r:
                    fid = r[kind]
                    out = Outcome(kind, t, r.get("why", ""))
                    self.outcome[fid] = out
                    if kind in ("fail", "bad"):
                        self.failures[fid].append(out)
                    if "s" in r:
                        self.summary[fid] = r["s"]
                    if kind == "ok":
                        self.seconds[fid] = r.get("sec", 0.0)
                    if "f" in r:
                        self.files[fid] = (r.get("c"), *r["f"])
            for fid, summary, identity in r.get("verified", ()):
                self.summary[fid] = summary
                self.files[fid] = (r.get("c"), *identity)
            if "invalid" in r:
                self.invalid.append(r)
                self.files.pop(r["invalid"], None)

    def _release(self, owner: str, fid: str) -> None:
        if self.claim_of.get(fid) == owner:
            del self.claim_of[fid]
        self.held[owner].discard(fid)

    def settled_since(self, fid: str, since: float) -> bool:
        out = self.outcome.get(fid)
        return out is not None and out.kind in SETTLED and out.t >= since

    def failure_count(self, fid: str, since: float) -> int:
        return sum(1 for f in self.failures.get(fid, ()) if f.t >= since)

    def live_owners(self, liveness, now: float) -> set:
        return {o for o, fids in self.held.items() if fids and liveness.alive(o, self.last_seen[o], now)}
