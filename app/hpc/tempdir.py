"""Temp directories on RAM or node-local disk, never on a parallel filesystem, and private.

Tools that write hundreds of small temp files to Lustre deadlock metadata servers; under
`--containall` the container's own /tmp is a 64 MiB tmpfs. So: pick RAM (/dev/shm) or a local
disk explicitly, and refuse a shared parallel filesystem unless forced.

/dev/shm (and /tmp, or a laptop's disk) is shared between users: a temp dir is never a path another
user could have prepared. `private_temp_dir` makes a fresh directory (random name, mode 700) under a
base whose every component is trusted: owned by root (and, if others may write to it, sticky, like
/dev/shm itself) or by us and writable by nobody else; a symlink is trusted only if root owns it.
Anything else is refused (EnvironmentFailure, exit 3). slurm/common.sh applies the same rule in bash.

A process killed with SIGKILL (walltime, OOM, kill -9) cannot remove its temp dir, and RAM-backed
/dev/shm is not emptied until the node reboots: the dir's name carries its maker's process identity
(app.hpc.process), and the next private_temp_dir with the same prefix on this machine removes those
whose maker is gone.
"""

import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.errors import EnvironmentFailure
from app.hpc.filesystems import mount_entry
from app.hpc.process import boot_and_pidns, start_ticks

PARALLEL_FS = frozenset({"lustre", "gpfs", "beegfs", "pvfs2", "orangefs", "cephfs"})
TEMP_ENV = "APP_TMPDIR"


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def mount_of(path, mountinfo: str | None = None) -> Mount:
    """The mount (longest matching mount point) holding `path`, from /proc/self/mountinfo."""
    entry = mount_entry(path, mountinfo)
    return Mount(entry[0], entry[1]) if entry else Mount("/", "unknown")


def check_temp_dir(path, force: bool = False, mountinfo: str | None = None) -> Path:
    """Return `path` if it is a writable dir on RAM/local storage; raise EnvironmentFailure if not."""
    path = Path(path)
    why = untrusted_component(path)
    if why:
        raise EnvironmentFailure(f"temp dir {path} is not safe on a shared machine: {why}")
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


def untrusted_component(path) -> str | None:
    """Why some component of `path` could be changed by another user, or None if none could."""
    me = os.geteuid()
    current = Path("/")
    for part in Path(os.path.abspath(path)).parts[1:]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None  # what does not exist yet is ours to create (mkdir fails if someone races us)
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != 0:
                return f"{current} is a symlink owned by uid {st.st_uid}"
            current = Path(os.path.realpath(current))
            st = os.stat(current)
        others_write = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if st.st_uid == 0:
            if others_write and not st.st_mode & stat.S_ISVTX:
                return f"{current} is writable by others and not sticky"
        elif st.st_uid != me:
            return f"{current} is owned by uid {st.st_uid}, not by us (uid {me})"
        elif others_write:
            return f"{current} is ours but writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_temp_dir(base, prefix: str) -> Path:
    """A fresh directory of our own (mode 700) under `base` (a pick_temp_dir result: already trusted),
    named for this process; those of the same prefix whose process is gone are removed first."""
    removed = remove_orphans(base, prefix)
    if removed:
        print(f"temp: removed {removed} temp dir(s) under {base} left by killed processes", file=sys.stderr)
    pid = os.getpid()
    boot, pidns = boot_and_pidns()
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{boot}.{pidns}.{pid}.{start_ticks(pid)}.", dir=base))
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != 0o700:
        raise EnvironmentFailure(f"temp dir {path} was not created private (owner {st.st_uid}, "
                                 f"mode {stat.S_IMODE(st.st_mode):o})")
    return path


def remove_orphans(base, prefix: str) -> int:
    """Remove our own private temp dirs under `base` whose maker (same boot and PID namespace, so its
    pid means one process) no longer runs; return how many. Another user's, a symlink, a live or an
    unknown process's (another container's namespace, another name) are left alone."""
    here = boot_and_pidns()
    removed = 0
    for entry in os.scandir(base):
        parts = entry.name[len(prefix):].split(".") if entry.name.startswith(prefix) else []
        if len(parts) != 5 or tuple(parts[:2]) != here or not parts[2].isdigit():
            continue
        st = entry.stat(follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or start_ticks(int(parts[2])) == parts[3]:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.lexists(entry.path)
    return removed


def pick_temp_dir(force: bool = False, environ=os.environ, mountinfo: str | None = None) -> Path:
    """$APP_TMPDIR if set (checked), else /dev/shm if usable, else $TMPDIR or /tmp (checked)."""
    chosen = environ.get(TEMP_ENV)
    if chosen:
        return check_temp_dir(chosen, force, mountinfo)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return check_temp_dir(shm, force, mountinfo)
    return check_temp_dir(environ.get("TMPDIR") or "/tmp", force, mountinfo)


def free_bytes(path) -> int:
    return shutil.disk_usage(path).free


def memory_cgroup_room(cgroup_file: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's memory cgroup (and its parents: Slurm limits the job and the step) can still
    take, or None where no limit is visible (no cgroup, or a container that hides it)."""
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, limit_file, usage_file = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
            break
        if controllers == "":
            base, limit_file, usage_file = root, "memory.max", "memory.current"
    else:
        return None
    room = None
    here = Path(path)
    while True:
        try:
            limit = int((base / here.relative_to("/") / limit_file).read_text())
            usage = int((base / here.relative_to("/") / usage_file).read_text())
            room = min(room, limit - usage) if room is not None else limit - usage
        except (OSError, ValueError):  # "max", or a level we cannot read
            pass
        if here == here.parent:
            return room if room is not None and room < 1 << 60 else None
        here = here.parent


def temp_room(path) -> tuple[int, str]:
    """Bytes that can still be written under `path`, and what bounds it: free space, and for RAM-backed
    temp (tmpfs: its pages count against the job's memory) the memory cgroup's room as well."""
    free = free_bytes(path)
    what = f"{free >> 20} MiB free on {mount_of(path).fstype}"
    if mount_of(path).fstype == "tmpfs":
        room = memory_cgroup_room()
        if room is not None and room < free:
            return room, f"{what}, {room >> 20} MiB left in the job's memory limit"
    return free, what
