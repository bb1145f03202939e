"""CPU threads for EMB processes: physical cores split over this node's ranks, OpenMP workers passive.

Call before torch is imported. Why passive: an EMB process also runs shard-reader threads, and on
CPU several ranks may share cores; spinning OpenMP workers (the ACTIVE default) starve both.
Measured on a loaded 2-core machine, one smoke-model step: 2-8 s spinning vs 0.05 s passive.
An OMP_WAIT_POLICY already in the environment wins.
"""

import os

from app.hpc.cores import physical_cores
from app.hpc.threads import cap_threads


def setup_threads(environ=os.environ) -> int:
    ranks_here = int(environ.get("LOCAL_WORLD_SIZE", "1"))
    n = max(1, physical_cores(environ) // ranks_here)
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cap_threads(n, environ)
    return n
