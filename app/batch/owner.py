"""Who holds a claim, and whether that holder is still alive.

An owner is one worker process: "host|boot|pidns|pid|starttime". On the same host, boot and PID
namespace (Apptainer's --containall gives each container its own PID namespace), liveness is exact:
the pid exists and started at the same clock tick (no pid-reuse confusion). Anywhere else
(another node, another container) liveness is the lease: the owner's last journal record is younger
than `lease_s`; workers append a heartbeat every lease/4 while they hold claims.
"""

import os
from dataclasses import dataclass

from app.hpc.process import place, start_ticks


@dataclass(frozen=True)
class Owner:
    place: str
    pid: int
    start: str

    @classmethod
    def me(cls) -> "Owner":
        pid = os.getpid()
        return cls(place(), pid, start_ticks(pid) or "?")

    @classmethod
    def of(cls, pid: int) -> "Owner":
        """Another process of this host and PID namespace (a worker, seen from its parent)."""
        return cls(place(), pid, start_ticks(pid) or "?")

    @classmethod
    def parse(cls, text: str) -> "Owner":
        where, pid, start = text.rsplit("|", 2)
        return cls(where, int(pid), start)

    def __str__(self) -> str:
        return f"{self.place}|{self.pid}|{self.start}"


class Liveness:
    """Decides whether owners are alive, from here."""

    def __init__(self, lease_s: float):
        self.lease_s = lease_s
        self.here = place()

    def alive(self, owner: str, last_seen: float, now: float) -> bool:
        try:
            who = Owner.parse(owner)
        except ValueError:
            return now - last_seen < self.lease_s
        if who.place == self.here:
            return start_ticks(who.pid) == who.start
        return now - last_seen < self.lease_s
