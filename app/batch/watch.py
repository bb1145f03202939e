"""The pipe from a worker to its parent: every event of a chunk, and the watch that notices a hung field.

A worker writes one line per event (one write() each, atomic on a pipe):
  B ["f1", ...]   a chunk arrived           S ["f1", ...]   these are about to be assessed (the attempt log)
  O {...}         one field's outcome (ok / skip / fail / bad, with its summary and file identity)
                  or an invalid output moved aside
  E               the chunk is done; the worker waits for the next
The parent (app.batch.pool) records them in the journal and keeps, per worker, the field it is on and
since when. A worker's own threads could not be trusted to notice a hang (a C call holding the GIL, a
D-state read on a dead Lustre OST, a stopped container): the parent, which only reads pipes, can.
"""

import json
import os
import time
from typing import Any

from app.batch.state import OUTCOMES

DEFAULT_FIELD_TIMEOUT_S = 300.0


class ProgressPipe:
    """Worker side: the events above; a no-op without a pipe (a worker run by hand)."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def _send(self, line: str) -> None:
        if self.fd is not None:
            os.write(self.fd, (line + "\n").encode())

    def begin(self, fields: list[str]) -> None:
        self._send("B " + json.dumps(fields))

    def starting(self, fields: list[str]) -> None:
        if fields:
            self._send("S " + json.dumps(fields))

    def outcome(self, record: dict) -> None:
        self._send("O " + json.dumps(record, separators=(",", ":")))

    def end(self) -> None:
        self._send("E")


class WorkerWatch:
    """Parent side, one per worker: its events, the fields of its chunk not done yet, since when."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self._buffer = b""
        self.remaining: list[str] = []  # of the current chunk, in order: the first is the one being worked on
        self.busy = False
        self.since = time.monotonic()

    def read(self) -> list[tuple[str, Any]]:
        """New events as (kind, payload); updates remaining/busy/since. [] when nothing came."""
        events = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                break
            self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            kind, _, rest = line.decode(errors="replace").partition(" ")
            payload: Any = json.loads(rest) if rest else None
            self.since = time.monotonic()
            if kind == "B":
                self.remaining, self.busy = list(payload), True
            elif kind == "O":
                fid = next((payload[k] for k in OUTCOMES if k in payload), None)
                if fid in self.remaining:
                    self.remaining.remove(fid)
            elif kind == "E":
                self.remaining, self.busy = [], False
            events.append((kind, payload))
        return events

    def hung_field(self, timeout_s: float, now: float | None = None) -> str | None:
        """The field this worker has been stuck on for longer than timeout_s, if any."""
        now = time.monotonic() if now is None else now
        if self.remaining and now - self.since > timeout_s:
            return self.remaining[0]
        return None

    def close(self) -> None:
        os.close(self.fd)
