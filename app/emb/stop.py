"""Stop signals of a training rank: only a flag, read at step boundaries, so a stop never tears a step.

SIGUSR2 (the walltime warning; never SIGUSR1, which NCCL owns) and SIGTERM (Slurm's stop before a
kill, torchrun's shutdown of its workers) mean "checkpoint, then requeue me" (exit 75); SIGINT (Ctrl-C,
`scancel --signal=INT`) means "checkpoint, then stop" (exit 130). When both arrived, the interrupt wins.
"""

import ctypes
import os
import signal

from app.errors import EXIT_INTERRUPTED

EXIT_REQUEUE = 75  # EX_TEMPFAIL: checkpointed, please requeue
STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """The stop signals received so far; the handlers only record them."""

    def __init__(self):
        self.received = set()
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        _sigterm_when_agent_dies()

    def _handle(self, signum, _frame):
        self.received.add(signum)

    @property
    def code(self) -> int:
        """What this rank's stop means: 0 none, EXIT_REQUEUE, or EXIT_INTERRUPTED (the interrupt wins)."""
        if signal.SIGINT in self.received:
            return EXIT_INTERRUPTED
        return EXIT_REQUEUE if self.received else 0


def _sigterm_when_agent_dies() -> None:
    """Under torchrun, ask the kernel for SIGTERM when the agent exits (Linux PR_SET_PDEATHSIG).

    A SIGUSR2 aimed at the whole job step also reaches torchrun's agent, which does not handle it and
    dies; without this the workers would train on as orphans. With it they checkpoint and exit 75.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the wrapper must signal the workers themselves
