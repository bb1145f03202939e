"""A hung field cannot hold a season: workers report per-field progress to `run`, which releases a
field that makes no progress for --field-timeout seconds.

A worker's heartbeat thread alone would keep its lease alive while its main thread hangs (a dead
Lustre OST, a FIFO, a stopped container), and a thread inside the worker cannot be trusted to notice
(a C call holding the GIL, a D-state read). So the watch lives in the parent: each worker writes one
line per event to a pipe the parent reads (`B f1,f2,…` a chunk begins, `D f` a field finished, `E` the
chunk ended). When a worker has been on the same field for longer than the timeout, the parent records
on the worker's behalf `fail <field> timeout` and `exit` (its claims are released, the field counts one
failure and is retried elsewhere, up to --max-failures), kills the worker and its descendants (its
container too) and starts a replacement.
"""

import os
import time

DEFAULT_FIELD_TIMEOUT_S = 300.0


class ProgressPipe:
    """Worker side: the events above, one write() each (atomic on a pipe); a no-op without a pipe."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def _send(self, line: str) -> None:
        if self.fd is not None:
            os.write(self.fd, (line + "\n").encode())

    def begin(self, fields: list[str]) -> None:
        if fields:
            self._send("B " + ",".join(fields))

    def done(self, fid: str) -> None:
        self._send(f"D {fid}")

    def end(self) -> None:
        self._send("E")


class WorkerWatch:
    """Parent side, one per worker: the field it is on and since when (monotonic)."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self._buffer = b""
        self.remaining: list[str] = []
        self.since = time.monotonic()

    def read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            self._buffer += data
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                self._event(line.decode(errors="replace"))

    def _event(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        self.since = time.monotonic()
        if kind == "B":
            self.remaining = rest.split(",")
        elif kind == "D" and rest in self.remaining:
            self.remaining.remove(rest)
        elif kind == "E":
            self.remaining = []

    def hung_field(self, timeout_s: float, now: float | None = None) -> str | None:
        """The field this worker has been stuck on for longer than timeout_s, if any."""
        now = time.monotonic() if now is None else now
        if self.remaining and now - self.since > timeout_s:
            return self.remaining[0]
        return None

    def close(self) -> None:
        os.close(self.fd)
