"""Physical cores available to this process.

Never `os.cpu_count()`: on Betzy it says 256 (SMT siblings) on a 128-core node, and it ignores
both the affinity mask Slurm gives a step and the allocation itself.

Slurm's CPU counts (SLURM_CPUS_PER_TASK, ...) are logical CPUs where the node counts hyperthreads
(Betzy: `-c 256` is 128 cores), and Betzy's normal partition does not bind a step to its CPUs: so the
allocation caps cores as CPUs / threads per core, and the affinity mask is deduplicated by siblings.
"""

import os
import re
from pathlib import Path

_SYS_CPU = Path("/sys/devices/system/cpu")


def _core_key(cpu: int, sys_cpu: Path) -> tuple:
    """Identify the physical core a logical CPU belongs to (SMT siblings share the key)."""
    topo = sys_cpu / f"cpu{cpu}" / "topology"
    for name in ("core_cpus_list", "thread_siblings_list"):
        try:
            return ("siblings", (topo / name).read_text().strip())
        except OSError:
            continue
    return ("cpu", cpu)  # no topology exported (some containers): count logical CPUs


def slurm_cpu_cap(environ=os.environ) -> int | None:
    """CPUs Slurm allocated to this task or node, if running under Slurm."""
    per_task = environ.get("SLURM_CPUS_PER_TASK")
    if per_task and per_task.isdigit():
        return int(per_task)
    # "128(x4)" or "64,32": the first entry is this node's count in the common case.
    per_node = environ.get("SLURM_JOB_CPUS_PER_NODE") or environ.get("SLURM_CPUS_ON_NODE")
    if per_node:
        m = re.match(r"\d+", per_node)
        if m:
            return int(m.group())
    return None


def _list_len(cpu_list: str) -> int:
    """Number of CPUs in a sysfs list such as "0,128" or "0-1"."""
    n = 0
    for part in cpu_list.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi) - int(lo) + 1 if hi else 1
    return n


def physical_cores(environ=os.environ, affinity=None, sys_cpu: Path = _SYS_CPU) -> int:
    """Distinct physical cores in this process's affinity mask, capped by Slurm's allocation
    (logical CPUs, converted to cores with the node's threads per core)."""
    cpus = affinity if affinity is not None else os.sched_getaffinity(0)
    keys = {_core_key(c, sys_cpu) for c in cpus}
    n = len(keys) or 1
    cap = slurm_cpu_cap(environ)
    if cap:
        threads = max((_list_len(v) for kind, v in keys if kind == "siblings"), default=1)
        n = min(n, -(-cap // threads))
    return max(1, n)
