"""Who holds a claim, and whether that holder is still alive.

An owner is one worker process: "host|boot|pidns|pid|starttime". On the same host, boot and PID
namespace (Apptainer's --containall gives each container its own PID namespace), liveness is exact:
the pid exists and started at the same clock tick (no pid-reuse confusion). Anywhere else
(another node, another container) liveness is the lease: the owner's last journal record is younger
than `lease_s`; workers append a heartbeat every lease/4 while they hold claims.
"""

import os
import socket
from dataclasses import dataclass
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def _start_ticks(pid: int) -> str | None:
    """Start time of pid in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: exited, just not reaped
        return None
    return fields[19]


def _place() -> str:
    boot = _read("/proc/sys/kernel/random/boot_id")[:8]
    try:
        pidns = os.readlink("/proc/self/ns/pid").split("[")[-1].rstrip("]")
    except OSError:
        pidns = "?"
    return f"{socket.gethostname()}|{boot}|{pidns}"


@dataclass(frozen=True)
class Owner:
    place: str
    pid: int
    start: str

    @classmethod
    def me(cls) -> "Owner":
        pid = os.getpid()
        return cls(_place(), pid, _start_ticks(pid) or "?")

    @classmethod
    def of(cls, pid: int) -> "Owner":
        """Another process of this host and PID namespace (a worker, seen from its parent)."""
        return cls(_place(), pid, _start_ticks(pid) or "?")

    @classmethod
    def parse(cls, text: str) -> "Owner":
        place, pid, start = text.rsplit("|", 2)
        return cls(place, int(pid), start)

    def __str__(self) -> str:
        return f"{self.place}|{self.pid}|{self.start}"


class Liveness:
    """Decides whether owners are alive, from here."""

    def __init__(self, lease_s: float):
        self.lease_s = lease_s
        self.here = _place()

    def alive(self, owner: str, last_seen: float, now: float) -> bool:
        try:
            who = Owner.parse(owner)
        except ValueError:
            return now - last_seen < self.lease_s
        if who.place == self.here:
            return _start_ticks(who.pid) == who.start
        return now - last_seen < self.lease_s
