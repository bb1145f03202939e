"""The code version every output records: derived from the assessment's compiled content.

`code_version()` = "<package version>+<12 hex of sha256 over the compiled modules of app.sure2>".
The modules are hashed by file name and bytes, so changed science (a rebuilt .so) changes the version
and the batch redoes outputs made by other code; nobody edits it by hand. The in-place build of the
venv and the wheel in sure2.sif compile the same sources with the same compiler into identical bytes,
so both report the same version (`build.py` labels the image with the same digest of its wheel).
"""

import hashlib
import importlib.machinery
from functools import lru_cache
from pathlib import Path

import app

PACKAGE_DIR = Path(__file__).resolve().parent
EXTENSION_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"


def digest_of(modules) -> str:
    """sha256 over (file name, bytes) pairs, in name order."""
    h = hashlib.sha256()
    for name, data in sorted(modules):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def version_string(digest: str) -> str:
    return f"{app.__version__}+{digest[:12]}"


@lru_cache(maxsize=1)
def code_version() -> str:
    compiled = sorted(PACKAGE_DIR.glob(f"*{EXTENSION_SUFFIX}"))
    if not compiled:
        raise RuntimeError(f"no compiled modules in {PACKAGE_DIR}: build them (python setup.py build_ext --inplace)")
    return version_string(digest_of((p.name, p.read_bytes()) for p in compiled))
