"""Exit codes shared by every CLI, the image runscripts and the batch workers.

| code | meaning |
|------|---------|
| 0    | done |
| 1    | the work itself failed (an assessment or training step raised) |
| 2    | bad input or usage: unknown/malformed ID, bad config; nothing was written |
| 3    | environment or IO failure: missing data, disk full, quota, unusable temp dir |
| 130  | interrupted (SIGINT) |
"""

import errno
import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130

# errnos that mean "the storage said no": they stop a batch instead of being retried per item.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class BadInput(Exception):
    """The caller asked for something invalid (exit 2). The message is one line for stderr."""


class EnvironmentFailure(Exception):
    """The machine, filesystem or data is not usable (exit 3)."""


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def exit_status(exc: BaseException, prog: str, storage_message=str) -> int:
    """One stderr line for a known failure, and its exit code; anything else is re-raised.

    For the `except (BadInput, EnvironmentFailure, OSError)` clause every CLI ends with.
    """
    if isinstance(exc, BadInput):
        code, message = EXIT_BAD_INPUT, str(exc)
    elif isinstance(exc, EnvironmentFailure):
        code, message = EXIT_ENVIRONMENT, str(exc)
    elif is_storage_error(exc):
        code, message = EXIT_ENVIRONMENT, storage_message(exc)
    else:
        raise exc
    print(f"{prog}: {message}", file=sys.stderr)
    return code
