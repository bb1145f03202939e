"""Thread caps for every numeric library, set from physical cores (or 1 per worker process)."""

import os
import sys

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "GDAL_NUM_THREADS",
)


def cap_threads(n: int, environ=os.environ) -> dict:
    """Set every library's thread count to n; returns the variables set.

    Must run before numpy/torch import to reach their pools; torch is also set live if imported.
    """
    n = max(1, int(n))
    values = {var: str(n) for var in THREAD_VARS}
    environ.update(values)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return values
