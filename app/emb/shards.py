"""Shards: a few large chip-major arrays per split, each with a JSON manifest that makes it valid.

One directory holds everything `prepare` made:

    index.json            splits → shard names; chip size, bands, classes + names, quantisation, source tiles
    train-00000.x.npy     int8  [n, 64, chip, chip]  embeddings as published (app.emb.quant), bytes unchanged
    train-00000.y.npy     uint8 [n, chip, chip]      labels: 0 non-crop, 1..K-1 crops, 255 ignore
    train-00000.json      manifest: each chip's georeferencing, size + sha256 of both arrays, fingerprint

A shard counts as done only when its manifest exists (written last, atomically), names the same
fingerprint as the plan, and both arrays have the recorded size and checksum. Chips are stored
contiguously so a batch of neighbouring chips is one large sequential read.

Imports numpy and app.hpc only: the GPU benchmark writes shards on a machine without rasterio.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.emb import BANDS
from app.hpc.atomic import atomic_path, atomic_write_bytes, sha256_file

INDEX = "index.json"
FORMAT = "emb-shards/1"


def shard_files(root, name) -> tuple[Path, Path, Path]:
    root = Path(root)
    return root / f"{name}.x.npy", root / f"{name}.y.npy", root / f"{name}.json"


def write_shard(root, name: str, count: int, chip: int, fill, meta: dict) -> dict:
    """Create both arrays as memmaps under temp names, let `fill(x, y)` write the chips, then commit.

    The manifest (meta + sizes + checksums) is written last: it is what makes the shard valid.
    """
    x_path, y_path, m_path = shard_files(root, name)
    files = {}
    with atomic_path(x_path) as x_tmp, atomic_path(y_path) as y_tmp:
        x = np.lib.format.open_memmap(x_tmp, "w+", np.int8, (count, BANDS, chip, chip))
        y = np.lib.format.open_memmap(y_tmp, "w+", np.uint8, (count, chip, chip))
        fill(x, y)
        x.flush()
        y.flush()
        del x, y
        for key, tmp, final in (("x", x_tmp, x_path), ("y", y_tmp, y_path)):
            files[key] = {"file": final.name, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp)}
    manifest = {"format": FORMAT, "name": name, "count": count, "chip": chip, "bands": BANDS,
                "files": files, **meta}
    atomic_write_bytes(m_path, json.dumps(manifest).encode())
    return manifest


def read_manifest(root, name) -> dict | None:
    try:
        manifest = json.loads(shard_files(root, name)[2].read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def shard_is_valid(root, name: str, fingerprint: str | None = None, checksums: bool = True) -> bool:
    """True when the manifest is complete, matches `fingerprint` (if given) and the arrays match it."""
    manifest = read_manifest(root, name)
    if manifest is None or (fingerprint is not None and manifest.get("fingerprint") != fingerprint):
        return False
    for entry in manifest["files"].values():
        path = Path(root) / entry["file"]
        try:
            if path.stat().st_size != entry["bytes"]:
                return False
        except OSError:
            return False
        if checksums and sha256_file(path) != entry["sha256"]:
            return False
    return True


def write_index(root, index: dict) -> None:
    atomic_write_bytes(Path(root) / INDEX, json.dumps({"format": FORMAT, **index}, indent=1).encode())


def read_index(root) -> dict:
    """The shard directory's index; FileNotFoundError / ValueError when it is missing or not ours."""
    index = json.loads((Path(root) / INDEX).read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{root}/{INDEX} is not an {FORMAT} index")
    return index


@dataclass
class Shard:
    """One shard opened for reading: memmaps for random access, raw fds + offsets for fast preads."""

    name: str
    count: int
    x: np.ndarray
    y: np.ndarray
    x_fd: int
    y_fd: int
    x_offset: int
    y_offset: int

    @property
    def chip(self) -> int:
        return self.y.shape[-1]


class ShardSet:
    """All shards of one split, in index order."""

    def __init__(self, root, split: str):
        self.root = Path(root)
        self.index = read_index(root)
        names = self.index["splits"].get(split, [])
        self.shards = [self._open(name) for name in names]
        self.counts = [s.count for s in self.shards]

    def _open(self, name) -> Shard:
        x_path, y_path, _ = shard_files(self.root, name)
        x, y = np.load(x_path, mmap_mode="r"), np.load(y_path, mmap_mode="r")
        return Shard(name, x.shape[0], x, y, os.open(x_path, os.O_RDONLY), os.open(y_path, os.O_RDONLY),
                     x.offset, y.offset)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def read_into(self, shard: int, start: int, count: int, x_out: np.ndarray, y_out: np.ndarray) -> None:
        """Copy chips [start, start+count) of one shard into x_out/y_out with two sequential preads.

        pread into the (pinned) destination skips page-faulting through a memmap and releases the
        GIL, so several reader threads run in parallel.
        """
        s = self.shards[shard]
        x_bytes = x_out[:count].nbytes
        y_bytes = y_out[:count].nbytes
        per_x, per_y = x_bytes // count, y_bytes // count
        _pread_full(s.x_fd, x_out[:count].reshape(-1).data.cast("B"), s.x_offset + start * per_x)
        _pread_full(s.y_fd, y_out[:count].reshape(-1).data.cast("B"), s.y_offset + start * per_y)

    def close(self) -> None:
        for s in self.shards:
            os.close(s.x_fd)
            os.close(s.y_fd)
        self.shards = []


def _pread_full(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(f"short read from shard at byte {offset + done}")
        done += n
