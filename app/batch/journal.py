"""One append-only JSON-lines journal per output dir, shared by every process on every node.

Why one file: claims as one-file-per-field would put ~13,510 (times retries) small files on Lustre.
A writer takes `flock` on the file, reads what others appended since its last look, decides, and
appends its records in one `write()` on an O_APPEND descriptor. Readers that only watch (progress)
read without the lock and consume complete lines only.

A writer killed mid-`write` (kill -9, ENOSPC) can leave a partial last line: the next writer starts
its records on a fresh line, and readers skip lines that are not JSON. Records are not fsynced: a
kill loses nothing (the page cache survives the process), and a lost node is covered by validating
outputs, which never trusts the journal alone.

Cross-node locking needs a filesystem with coherent flock (Lustre mounted with `flock`, NFSv4);
Lustre's `localflock` only locks within one node.
"""

import errno
import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from app.errors import EnvironmentFailure


class Journal:
    def __init__(self, path, offset: int = 0):
        """offset: start reading there (a line boundary: where a snapshot's state ends)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._offset = offset
        self._pending = b""  # bytes after the last newline seen: a line still being written
        # flock is held per open file, not per thread: threads of one process serialise here.
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def locked(self):
        with self._thread_lock:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise EnvironmentFailure(
                        f"{self.path.parent}: this filesystem refuses flock ({exc.strerror}); the batch's "
                        "claims need it (Lustre: mounted with -o flock; NFS: v4 or lockd)"
                    ) from exc
                raise
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def position(self) -> int:
        """The offset up to which every complete line has been read."""
        return self._offset - len(self._pending)

    def read_new(self) -> list[dict]:
        """Records appended since the last call (complete lines only; garbage lines skipped)."""
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return []
        data = self._pending + os.pread(self._fd, size - self._offset, self._offset)
        self._offset = size
        lines = data.split(b"\n")
        self._pending = lines.pop()
        records = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records

    def append(self, records: list[dict]) -> None:
        """Append records; call while holding `locked()` and after `read_new()`.

        The offset is left alone: the next `read_new()` returns these records too, so every
        process builds its state by replaying the same lines in the same order.
        """
        if not records:
            return
        now = time.time()
        text = "".join(json.dumps({**r, "t": now}, separators=(",", ":")) + "\n" for r in records)
        data = text.encode()
        if self._pending:  # a killed writer's partial line: start ours on a fresh line
            data = b"\n" + data
        written = os.write(self._fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"short write to {self.path} (disk full?)")
