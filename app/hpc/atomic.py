"""Atomic outputs: temp name in the same directory, fsync, rename, fsync the directory.

A crash, kill -9, EDQUOT or ENOSPC leaves either the old state or a complete file, never a partial
one. Temp names start with '.' and contain '.tmp.' so planners can recognise and sweep them.
"""

import hashlib
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp."


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path):
    """Yield a temp path to write; on success it is fsynced and renamed onto `path`.

    On any exception the temp file is removed and the exception propagates.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def sweep_temp_files(directory) -> list[Path]:
    """Remove temp files left by killed writers (call only when no writer is active there)."""
    removed = []
    for entry in os.scandir(directory):
        if entry.is_file() and is_temp_name(entry.name):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def sha256_file(path) -> str:
    """sha256 of a file, read in 16 MiB blocks (stacks, shards and images are GB-sized): what a
    manifest records of a finished file and checks it against."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            h.update(block)
    return h.hexdigest()
