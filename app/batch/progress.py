"""Progress of a run: a live line on a terminal, a plain line every N seconds otherwise (Slurm logs)."""

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, total: int, stream=sys.stderr, every_s: float = 30.0, live: bool | None = None):
        self.total = total
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.every_s = 0.5 if self.live else every_s
        self.t0 = time.monotonic()
        self._last = -1e9

    def line(self, done: int, failed: int, skipped: int, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.t0
        finished = done + failed + skipped
        remaining = max(0, self.total - finished)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = _duration(remaining / rate) if rate > 0 else "?"
        return (
            f"batch: {finished}/{self.total} | done {done} failed {failed} skipped {skipped} "
            f"remaining {remaining} | {rate:.1f} fields/s | elapsed {_duration(elapsed)} ETA {eta}"
        )

    def update(self, done: int, failed: int, skipped: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        text = self.line(done, failed, skipped, now)
        if self.live:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, done: int, failed: int, skipped: int) -> None:
        self.update(done, failed, skipped, force=True)
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
