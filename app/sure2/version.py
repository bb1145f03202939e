"""The code version every output records: "<package version>+<12 hex of code_digest('assessment')>".

The digest (app.code_digest) covers the bytes of every compiled module of app.sure2, so changed science
(a rebuilt .so) changes the version and the batch redoes outputs made by other code; nobody edits it by
hand. The in-place build of the venv and the wheel in sure2.sif compile the same sources with the same
compiler into identical bytes, so both report the same version (`build.py` labels the image with the
same digest of its wheel, `version_string(digest_of(...))`).
"""

from functools import lru_cache

import app
from app.code_digest import code_digest


def version_string(digest: str) -> str:
    return f"{app.__version__}+{digest[:12]}"


@lru_cache(maxsize=1)
def code_version() -> str:
    return version_string(code_digest("assessment"))
