"""A private copy of the app package for tests that change the code: one module's bytes are changed
there and the real CLI runs from the copy, as a rebuilt image or an edited checkout would."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def app_copy(dest: Path) -> Path:
    """dest/app: the checkout's package with its compiled modules (run with cwd=dest)."""
    shutil.copytree(ROOT / "app", dest / "app", ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    return dest


def change_module(root: Path, pattern: str) -> Path:
    """Change the bytes of the one file matching `pattern` under root (a rebuilt .so, an edited .py)."""
    (path,) = root.glob(pattern)
    path.write_bytes(path.read_bytes() + (b"\0" if path.suffix == ".so" else b"\n# changed\n"))
    return path
