"""Fetch progress on stderr: items, MB, MB/s, ETA. On a terminal one line redrawn in place; otherwise
(Slurm logs, pipes) a plain line every `every` seconds, so logs stay readable."""

import sys
import threading
import time


class Progress:
    def __init__(self, total_items: int, total_bytes: int, stream=sys.stderr, every: float = 10.0,
                 label: str = "fetch"):
        self.total_items, self.total_bytes = total_items, total_bytes
        self.items = self.bytes = 0
        self.stream, self.every, self.label = stream, every, label
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = self.last = time.monotonic()
        self.lock = threading.Lock()

    def add(self, nbytes: int = 0, items: int = 0) -> None:
        with self.lock:
            self.bytes += nbytes
            self.items += items
            now = time.monotonic()
            if now - self.last >= (0.5 if self.tty else self.every):
                self.last = now
                self._show(now)

    def line(self, now=None) -> str:
        elapsed = max(1e-6, (now or time.monotonic()) - self.start)
        rate = self.bytes / elapsed
        left = max(0, self.total_bytes - self.bytes)
        eta = f"{left / rate:.0f} s" if rate > 0 and left else "-"
        return (f"{self.label}: {self.items}/{self.total_items} items, {self.bytes / 1e6:.1f}/"
                f"{self.total_bytes / 1e6:.1f} MB, {rate / 1e6:.2f} MB/s, ETA {eta}")

    def _show(self, now) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(now) + "\033[K")
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        with self.lock:
            if self.tty:
                self.stream.write("\r" + self.line() + "\033[K\n")
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()
