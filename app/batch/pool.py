"""The worker processes of one `run`: start them, feed them the plan, watch their progress (see
app.batch.watch), replace a worker whose field hung, stop them all on storage failure or a signal.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from app.batch.owner import Owner
from app.batch.watch import WorkerWatch
from app.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED

POLL_S = 0.25


class Worker:
    def __init__(self, proc: subprocess.Popen, watch: WorkerWatch):
        self.proc, self.watch = proc, watch
        self.owner = None  # its journal identity, read once it runs
        self.killed = False  # for a hung field: not waited for (a D-state read may never return)


class WorkerPool:
    def __init__(self, cmd: list[str], env: dict, plan: list[str], board, field_timeout_s: float):
        self.cmd, self.env, self.board, self.field_timeout_s = cmd, env, board, field_timeout_s
        self.plan_text = "".join(f + "\n" for f in plan).encode()
        self.workers: list[Worker] = []
        self.replaced = 0

    def start(self, n: int) -> None:
        for _ in range(n):
            self._spawn()

    def _spawn(self) -> None:
        read_fd, write_fd = os.pipe()
        # same process group as the batch: kill -9 of the batch's group takes every worker and container
        proc = subprocess.Popen(self.cmd + ["--progress-fd", str(write_fd)], stdin=subprocess.PIPE, env=self.env,
                                pass_fds=(write_fd,))
        os.close(write_fd)
        # a season's plan outgrows the pipe buffer: feed each worker from a thread, so N workers
        # start their imports together instead of one after another
        threading.Thread(target=_feed, args=(proc, self.plan_text), daemon=True).start()
        self.workers.append(Worker(proc, WorkerWatch(read_fd)))

    def supervise(self, tick) -> int:
        """Wait for the workers; 0 when all ended normally, else the exit code that stops the batch."""
        stopped = 0
        interrupted = []
        previous = signal.signal(signal.SIGTERM, lambda *a: interrupted.append(1))
        try:
            while any(w.proc.poll() is None and not w.killed for w in self.workers):
                if interrupted:
                    stopped = EXIT_INTERRUPTED
                    break
                if any(w.proc.returncode == EXIT_ENVIRONMENT for w in self.workers):
                    stopped = EXIT_ENVIRONMENT
                    break
                self._release_hung_fields()
                tick()
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            stopped = EXIT_INTERRUPTED
        finally:
            for w in self.workers:
                if w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)  # workers unwind: atomic writers drop their temp files
            for w in self.workers:
                try:
                    w.proc.wait(timeout=10 if w.killed else None)
                except subprocess.TimeoutExpired:
                    print(f"batch: worker {w.proc.pid} does not die (stuck in the kernel); left behind", file=sys.stderr)
                w.watch.close()
            signal.signal(signal.SIGTERM, previous)
        if interrupted:  # even if the last worker finished meanwhile: the caller asked us to stop
            return EXIT_INTERRUPTED
        if not stopped and any(w.proc.returncode == EXIT_ENVIRONMENT for w in self.workers):
            stopped = EXIT_ENVIRONMENT
        return stopped

    def _release_hung_fields(self) -> None:
        for w in list(self.workers):
            if w.killed or w.proc.poll() is not None:
                continue
            if w.owner is None:
                w.owner = str(Owner.of(w.proc.pid))
            w.watch.read()
            fid = w.watch.hung_field(self.field_timeout_s)
            if fid is None:
                continue
            why = f"timeout: no progress for {self.field_timeout_s:g} s (a hung read or container?)"
            print(f"batch: {fid}: {why}; its worker is replaced", file=sys.stderr)
            self.board.record([{"o": w.owner, "fail": fid, "why": why}, {"o": w.owner, "exit": 1}])
            kill_tree(w.proc.pid)  # the worker and what it started (a container, a stopped command)
            w.killed = True
            self.replaced += 1
            self._spawn()


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


def _feed(proc, data: bytes) -> None:
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the worker died early; its exit code tells the rest
