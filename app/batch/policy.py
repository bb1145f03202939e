"""The batch's rules, decided in one place and built once from the command line (`policy_from_args`):
which failures count (one clock: the run's start, for --retry-failed), when a field is given up, what
to do about outputs of other settings, how outputs are verified. Planning, the claim picker, the
report and status all ask the same object."""

from dataclasses import dataclass

from app.sure2.settings import Settings


@dataclass(frozen=True)
class FailurePolicy:
    max_failures: int = 3
    since: float = 0.0  # failures before this moment do not count (--retry-failed: the command's start)

    def failures(self, state, fid: str) -> list:
        """The field's failures that count, oldest first."""
        return [f for f in state.failures.get(fid, ()) if f.t >= self.since]

    def given_up(self, failures: list) -> bool:
        """Given up: failed --max-failures times, or its input was bad (retrying cannot help)."""
        return len(failures) >= self.max_failures or bool(failures and failures[-1].kind == "bad")


@dataclass(frozen=True)
class BatchPolicy:
    settings: Settings
    failures: FailurePolicy = FailurePolicy()
    settings_change: str = "refuse"  # outputs of other settings: refuse | redo | keep
    verify_all: bool = False  # --verify full: check every output, trust no recorded identity

    @property
    def keep_other_settings(self) -> bool:
        return self.settings_change == "keep"


def policy_from_args(args, now: float) -> BatchPolicy:
    """The policy of one command; `now` is its start, the one clock --retry-failed counts from."""
    return BatchPolicy(settings=args.settings,
                       failures=FailurePolicy(args.max_failures, now if args.retry_failed else 0.0),
                       settings_change=args.settings_change, verify_all=args.verify == "full")
