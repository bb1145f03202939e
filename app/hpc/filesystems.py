"""How N identical copies of a batch divide the work: claims where file locks are coherent across
nodes, disjoint deterministic shares where they are not. The one place that decides it.

The batch's claims are made under `flock` on its journal. Whether that lock means anything across
nodes depends on how the output filesystem is mounted, which /proc/self/mountinfo says (inside an
Apptainer container too: a bind mount keeps its filesystem's type and super options):

- Lustre `flock`: coherent across the cluster → claims.
  Lustre `localflock`: flock SUCCEEDS on every node but locks only that node → runs on different nodes
  would claim the same fields, silently → shares. Lustre `noflock` (flock fails) or no option (the
  client's default has changed between releases) → shares.
- NFS: locks go through the server (NFSv4, or v3 with lockd) → claims; `nolock` or
  `local_lock=flock|all` keep flock on the client → shares.
- GPFS (Spectrum Scale) and CephFS: cluster-wide locks → claims.
- BeeGFS: flock is client-local unless the client sets tuneUseGlobalFileLocks, which the mount line
  does not show → shares.
- A local filesystem (ext4, xfs, btrfs, tmpfs, overlay...): only this node's processes can reach it,
  and its locks are coherent among them → claims.
- Anything else (a FUSE filesystem, unknown types) → shares: the safe choice.

A share is the runs' own identity: array task K of N (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1,
SLURM_ARRAY_TASK_COUNT) or task K of N of a multi-task step (SLURM_PROCID + 1, SLURM_NTASKS); run K
takes the fields at positions K-1, K-1+N, ... of the plan (catalogue order, the same in every run).
A single run takes everything either way.
"""

import os
from dataclasses import dataclass
from pathlib import Path

COHERENT_TYPES = frozenset({"gpfs", "ceph", "cephfs"})
LOCAL_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "ramfs",
                         "squashfs", "vfat"})


@dataclass(frozen=True)
class MountLocks:
    point: str
    fstype: str
    coherent: bool
    why: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape")


def mount_entry(path, mountinfo: str | None = None) -> tuple[str, str, frozenset] | None:
    """(mount point, fstype, mount options ∪ super options) of the mount holding `path` (the longest
    matching mount point in /proc/self/mountinfo), or None."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    target = os.path.realpath(path)
    best = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 6 or not rest:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            options = frozenset(fields[5].split(",")) | frozenset(rest[2].split(",") if len(rest) > 2 else ())
            best = (point, rest[0], options)
    return best


def lock_coherence(path, mountinfo: str | None = None) -> MountLocks:
    """Whether flock on `path` is coherent across the nodes that can reach it, and why."""
    entry = mount_entry(path, mountinfo)
    if entry is None:
        return MountLocks("/", "unknown", False, "no mount found for it")
    point, fstype, options = entry
    base = fstype.split(".")[0]

    def verdict(coherent: bool, why: str) -> MountLocks:
        return MountLocks(point, fstype, coherent, f"{fstype} at {point}: {why}")

    if base == "lustre":
        if "flock" in options:
            return verdict(True, "mounted with flock (cluster-wide locks)")
        if "localflock" in options:
            return verdict(False, "mounted with localflock (flock locks only within one node)")
        if "noflock" in options:
            return verdict(False, "mounted with noflock (flock refused)")
        return verdict(False, "no flock option in the mount (the client's default differs between releases)")
    if base in ("nfs", "nfs4"):
        if "nolock" in options or any(o in options for o in ("local_lock=flock", "local_lock=all")):
            return verdict(False, "locks are local to the client (nolock / local_lock)")
        return verdict(True, "locks go through the server")
    if base == "beegfs":
        return verdict(False, "flock is client-local unless tuneUseGlobalFileLocks is set (not visible here)")
    if base in COHERENT_TYPES:
        return verdict(True, "cluster-wide locks")
    if base in LOCAL_TYPES:
        return verdict(True, "a local filesystem (only this node reaches it)")
    return verdict(False, "lock coherence across nodes unknown")


@dataclass(frozen=True)
class Share:
    k: int  # 1-based
    n: int

    def take(self, todo: list) -> list:
        return todo[self.k - 1::self.n]


def run_identity(environ=os.environ) -> Share | None:
    """This run's place among identical copies (array task or step task), or None if it is alone."""
    count = environ.get("SLURM_ARRAY_TASK_COUNT", "")
    if count.isdigit() and int(count) > 1 and environ.get("SLURM_ARRAY_TASK_ID", "").isdigit():
        k = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN") or 1) + 1
        return Share(k, int(count))
    ntasks = environ.get("SLURM_NTASKS", "")
    if ntasks.isdigit() and int(ntasks) > 1 and environ.get("SLURM_PROCID", "").isdigit():
        return Share(int(environ["SLURM_PROCID"]) + 1, int(ntasks))
    return None


def work_share(out_dir, environ=os.environ, mountinfo: str | None = None) -> tuple[Share | None, str]:
    """(share to take or None to claim from the whole plan, one line saying why)."""
    me = run_identity(environ)
    locks = lock_coherence(out_dir, mountinfo)
    if me is None:
        return None, f"one run: claims ({locks.why})"
    if locks.coherent:
        return None, f"run {me.k} of {me.n}: claims ({locks.why})"
    return me, f"run {me.k} of {me.n}: share {me.k}/{me.n} of the plan, not claims ({locks.why})"
