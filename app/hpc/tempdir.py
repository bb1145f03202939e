"""Temp directories on RAM or node-local disk, never on a parallel filesystem.

Tools that write hundreds of small temp files to Lustre deadlock metadata servers; under
`--containall` the container's own /tmp is a 64 MiB tmpfs. So: pick RAM (/dev/shm) or a local
disk explicitly, and refuse a shared parallel filesystem unless forced.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.errors import EnvironmentFailure

PARALLEL_FS = frozenset({"lustre", "gpfs", "beegfs", "pvfs2", "orangefs", "cephfs"})
TEMP_ENV = "APP_TMPDIR"


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape")


def mount_of(path, mountinfo: str | None = None) -> Mount:
    """The mount (longest matching mount point) holding `path`, from /proc/self/mountinfo."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    target = os.path.realpath(path)
    best = Mount("/", "unknown")
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = _unescape(fields[4])
        fstype = right.split()[0]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.point):
            best = Mount(point, fstype)
    return best


def check_temp_dir(path, force: bool = False, mountinfo: str | None = None) -> Path:
    """Return `path` if it is a writable dir on RAM/local storage; raise EnvironmentFailure if not."""
    path = Path(path)
    if not path.is_dir():
        raise EnvironmentFailure(f"temp dir {path} does not exist")
    if not os.access(path, os.W_OK | os.X_OK):
        raise EnvironmentFailure(f"temp dir {path} is not writable")
    mount = mount_of(path, mountinfo)
    base = mount.fstype.split(".")[0]
    if base in PARALLEL_FS and not force:
        raise EnvironmentFailure(
            f"temp dir {path} is on {mount.fstype} ({mount.point}): a parallel filesystem; "
            f"use /dev/shm or node-local disk (set {TEMP_ENV}), or force it explicitly"
        )
    return path


def pick_temp_dir(force: bool = False, environ=os.environ, mountinfo: str | None = None) -> Path:
    """$APP_TMPDIR if set (checked), else /dev/shm if usable, else $TMPDIR or /tmp (checked)."""
    chosen = environ.get(TEMP_ENV)
    if chosen:
        return check_temp_dir(chosen, force, mountinfo)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return check_temp_dir(environ.get("TMPDIR") or "/tmp", force, mountinfo)


def free_bytes(path) -> int:
    return shutil.disk_usage(path).free
