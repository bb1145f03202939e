"""The dispatcher of one `run`: the node's one journal participant, and its worker processes.

Workers never touch the journal (app.batch.worker): this parent claims a chunk for each idle worker
(one journal transaction, which also records the outcomes and releases of what came back), sends it
down the worker's stdin, and reads the worker's events (app.batch.watch). So at a national scale the
journal has one participant per node or run, not one per core: a hundred workers do not each replay
everyone's records at every claim.

Faults:
- a field with no progress for --field-timeout: `fail <field> timeout` and its release are recorded
  (it counts one failure and any worker, here or elsewhere, may retry it, up to --max-failures); the
  worker and what it started (a container) are killed, the rest of its chunk goes to other workers
  here, and a replacement worker starts;
- a worker that dies (killed, crashed): the field it was on gets a failure ("worker died"), the rest
  of its chunk is dispatched again, a replacement starts;
- a worker that exits 3 (storage full, quota, unreadable season): the batch stops (exit 3);
- SIGTERM / Ctrl-C: the workers get SIGTERM and unwind (atomic writers drop their temp files).
Every claim of this parent is released with one `exit` record at the end; if the parent itself is
killed, its workers die with it (PR_SET_PDEATHSIG) and its claims are free (exact liveness on this
host, the lease elsewhere).
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

from app.batch.state import OUTCOMES
from app.batch.watch import WorkerWatch
from app.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED

POLL_S = 0.05
FLUSH_S = 1.0  # outcomes reach the journal at the next claim, or at least this often
RETRY_CLAIM_S = 1.0  # while others hold fields this run still wants (they may die)


class Worker:
    def __init__(self, proc: subprocess.Popen, watch: WorkerWatch, slot: int):
        self.proc, self.watch, self.slot = proc, watch, slot
        assert proc.stdin is not None, "workers are started with stdin=PIPE"
        self.stdin = proc.stdin
        self.assigned = []  # the chunk sent and not reported done
        self.closed = False  # stdin closed: no more work for it
        self.killed = False  # for a hung field: not waited for (a D-state read may never return)

    @property
    def idle(self) -> bool:
        return not self.assigned and not self.closed and not self.killed and self.proc.poll() is None


class WorkerPool:
    def __init__(self, cmd: list[str], env: dict, board, picker, chunk: int, field_timeout_s: float,
                 heartbeat_s: float):
        self.cmd, self.env, self.board, self.picker = cmd, env, board, picker
        self.chunk, self.field_timeout_s, self.heartbeat_s = chunk, field_timeout_s, heartbeat_s
        self.workers: list[Worker] = []
        self.requeued: list[str] = []  # fields this parent holds whose worker died: dispatched first
        self.outcomes: list[dict] = []  # come back, not yet in the journal
        self._last_write = self._last_flush = time.monotonic()
        self._retry_at = 0.0

    def start(self, n: int) -> None:
        for slot in range(n):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        read_fd, write_fd = os.pipe()
        # same process group as the batch: kill -9 of the batch's group takes every worker and container
        proc = subprocess.Popen(self.cmd + ["--progress-fd", str(write_fd)], stdin=subprocess.PIPE, env=self.env,
                                pass_fds=(write_fd,), text=True)
        os.close(write_fd)
        self.workers.append(Worker(proc, WorkerWatch(read_fd), slot))

    # --- the loop --------------------------------------------------------------------------------

    def supervise(self, tick) -> int:
        """Dispatch until every worker ended; 0 when all ended normally, else the exit code that stops
        the batch (3 storage/environment, 130 interrupted)."""
        stopped = 0
        interrupted = []
        previous = signal.signal(signal.SIGTERM, lambda *a: interrupted.append(1))
        try:
            while any(not w.killed and w.proc.poll() is None for w in self.workers):
                if interrupted:
                    stopped = EXIT_INTERRUPTED
                    break
                live = [w for w in self.workers if not w.killed and w.proc.poll() is None]
                select.select([w.watch.fd for w in live], [], [], POLL_S)
                for w in self.workers:
                    if not w.killed:
                        self._events(w)
                if any(w.proc.returncode == EXIT_ENVIRONMENT for w in self.workers):
                    stopped = EXIT_ENVIRONMENT
                    break
                self._dead_workers()
                self._hung_fields()
                self._dispatch()
                self._keep_journal_current()
                tick()
        except KeyboardInterrupt:
            stopped = EXIT_INTERRUPTED
        finally:
            self._stop_all()
            signal.signal(signal.SIGTERM, previous)
        if interrupted:  # even if the last worker finished meanwhile: the caller asked us to stop
            return EXIT_INTERRUPTED
        if not stopped and any(w.proc.returncode == EXIT_ENVIRONMENT for w in self.workers):
            stopped = EXIT_ENVIRONMENT
        return stopped

    def _events(self, w: Worker) -> None:
        for kind, payload in w.watch.read():
            if kind == "S":
                self._write([{"start": payload}])  # before the assessments run: the attempt log
            elif kind == "O":
                self.outcomes.append(payload)
            elif kind == "E":
                w.assigned = []

    def _dispatch(self) -> None:
        for w in [w for w in self.workers if w.idle]:
            fields = self._next_chunk(w.slot)
            if fields:
                self._send(w, fields)
            elif time.monotonic() >= self._retry_at and not self.requeued:
                if self.board.waiting_on_others(self.picker):
                    self._retry_at = time.monotonic() + RETRY_CLAIM_S
                    return
                w.stdin.close()  # no more work: the worker ends
                w.closed = True

    def _next_chunk(self, slot: int) -> list[str]:
        """Fields given back here first, else a claim (which also records what came back)."""
        if self.requeued:
            fields, self.requeued = self.requeued[: self.chunk], self.requeued[self.chunk:]
            return fields
        if time.monotonic() < self._retry_at:
            return []
        fields = self.board.claim(self.picker, self.chunk, extra=self._flush(), slot=slot)
        self._last_write = self._last_flush = time.monotonic()
        return fields

    def _send(self, w: Worker, fields: list[str]) -> None:
        try:
            w.stdin.write(json.dumps(fields) + "\n")
            w.stdin.flush()
        except BrokenPipeError:
            self.requeued = fields + self.requeued  # it died meanwhile: _dead_workers replaces it
            return
        w.assigned = fields
        w.watch.remaining, w.watch.since = list(fields), time.monotonic()

    # --- faults ----------------------------------------------------------------------------------

    def _dead_workers(self) -> None:
        for w in self.workers:
            if w.killed or w.proc.poll() is None or not w.assigned:
                continue
            self._events(w)  # what it said before it died
            unfinished = [f for f in w.watch.remaining if f in w.assigned]
            w.assigned, w.killed = [], True
            if w.proc.returncode == EXIT_ENVIRONMENT or not unfinished:
                continue
            why = f"worker died (exit {w.proc.returncode}) on this field"
            self._give_back(unfinished, why)
            self._spawn(w.slot)

    def _hung_fields(self) -> None:
        for w in self.workers:
            if w.killed or w.proc.poll() is not None:
                continue
            fid = w.watch.hung_field(self.field_timeout_s)
            if fid is None:
                continue
            why = (f"timeout: no progress for {self.field_timeout_s:g} s in worker {w.proc.pid} "
                   "(a hung read or container?)")
            print(f"batch: {fid}: {why}; the worker is replaced", file=sys.stderr)
            kill_tree(w.proc.pid)  # the worker and what it started (a container, a stopped command)
            unfinished = [f for f in w.watch.remaining if f in w.assigned]
            w.assigned, w.killed = [], True
            self._give_back(unfinished, why)
            self._spawn(w.slot)

    def _give_back(self, unfinished: list[str], why: str) -> None:
        """The first unfinished field failed (and is released: any worker may retry it, up to the
        failure limit); the rest are dispatched again here."""
        self._write(self._flush() + [{"fail": unfinished[0], "why": why}, {"release": unfinished[:1]}])
        self.requeued = unfinished[1:] + self.requeued

    # --- the journal -----------------------------------------------------------------------------

    def _flush(self) -> list[dict]:
        """Outcomes come back so far, with the release of their fields (to be written now)."""
        done = [r[k] for r in self.outcomes for k in OUTCOMES if k in r]
        records, self.outcomes = self.outcomes, []
        return records + ([{"release": done}] if done else [])

    def _write(self, records: list[dict]) -> None:
        if records:
            self.board.record(records)
            self._last_write = time.monotonic()

    def _keep_journal_current(self) -> None:
        now = time.monotonic()
        if self.outcomes and now - self._last_flush >= FLUSH_S:
            self._write(self._flush())
            self._last_flush = now
        elif now - self._last_write >= self.heartbeat_s:
            self._write([{"hb": 1}])

    def _stop_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None and not w.killed:
                w.proc.send_signal(signal.SIGTERM)  # workers unwind: atomic writers drop their temp files
        for w in self.workers:
            try:
                w.proc.wait(timeout=10 if w.killed else None)
            except subprocess.TimeoutExpired:
                print(f"batch: worker {w.proc.pid} does not die (stuck in the kernel); left behind", file=sys.stderr)
            if not w.killed:
                self._events(w)  # its last outcomes, so the exit record does not release them unrecorded
            w.watch.close()
        try:
            self._write(self._flush() + [{"exit": 1}])  # every claim of this run released
        except OSError:
            pass  # disk full: the claims expire with this process anyway


def descendants(pid: int) -> list[int]:
    """Every process below pid (children of all its threads, recursively), from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL pid and its descendants (listed first: once pid dies its children are re-parented)."""
    for victim in [*descendants(pid), pid]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
