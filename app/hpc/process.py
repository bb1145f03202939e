"""A process's identity on this machine, exact across pid reuse: the boot, the PID namespace
(Apptainer's --containall gives each container its own) and the pid's start time in clock ticks."""

import os
import socket
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def start_ticks(pid: int) -> str | None:
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


def boot_and_pidns() -> tuple[str, str]:
    """(boot id prefix, PID namespace inode): where a pid and its start ticks mean one process."""
    boot = _read("/proc/sys/kernel/random/boot_id")[:8]
    try:
        pidns = os.readlink("/proc/self/ns/pid").split("[")[-1].rstrip("]")
    except OSError:
        pidns = "?"
    return boot, pidns


def place() -> str:
    return "|".join((socket.gethostname(), *boot_and_pidns()))
