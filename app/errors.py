"""Exit codes shared by every CLI, the image runscripts and the batch workers.

| code | meaning |
|------|---------|
| 0    | done |
| 1    | the work itself failed (an assessment or training step raised) |
| 2    | bad input or usage: unknown/malformed ID, bad config; nothing was written |
| 3    | environment or IO failure: missing data, disk full, quota, unusable temp dir |
| 130  | interrupted (SIGINT) |

`guarded(prog, main)` is the one error boundary every CLI runs inside: a user or environment error
becomes one stderr line and its exit code, never a traceback.
"""

import argparse
import errno
import os
import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130
DEBUG_ENV = "APP_DEBUG"  # set to 1 to see the traceback of an internal error

# errnos that mean "the storage said no": they stop a batch instead of being retried per item.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
# ... and "this process may not": the next item would be refused the same way.
PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


class UsageParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit 2 (nothing written), like every other
    bad input; every CLI's parser (and its subcommands' through parser_class=UsageParser)."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)


class BadInput(Exception):
    """The caller asked for something invalid (exit 2). The message is one line for stderr."""


class EnvironmentFailure(Exception):
    """The machine, filesystem or data is not usable (exit 3)."""


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


# What one item's failure (a field of a batch) means for the others: its input is bad (recorded, not
# retried), the item failed (retried up to --max-failures, then given up), or everything must stop
# (the environment or the storage: the next item would fail the same way). The in-process batch worker
# and the assessment CLI that containers run (`assess --ids-from -`) both classify by this, so the
# inproc and apptainer backends agree.
ITEM_BAD, ITEM_FAILED, STOP_ALL = "bad", "fail", "stop"


def item_failure(exc: BaseException) -> str:
    if isinstance(exc, BadInput):
        return ITEM_BAD
    if isinstance(exc, EnvironmentFailure) or is_storage_error(exc) or (
            isinstance(exc, OSError) and exc.errno in PERMISSION_ERRNOS):
        return STOP_ALL
    return ITEM_FAILED  # the item's own problem, any other OSError (a timed-out read) included


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


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message with whitespace collapsed, or its type's name."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def guarded(prog: str, main, *args, storage_message=None) -> int:
    """Run main(*args) and turn every failure into one stderr line and an exit code.

    BadInput → 2; EnvironmentFailure, OSError (storage, missing or unreadable files), MemoryError → 3;
    KeyboardInterrupt → 130; anything else is an internal error → 1, still one line (the traceback
    only with APP_DEBUG=1). SystemExit (argparse's usage errors, already one line) passes through.
    """
    try:
        return main(*args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BadInput, EnvironmentFailure) as exc:
        return exit_status(exc, prog)
    except OSError as exc:
        if is_storage_error(exc) and storage_message is not None:
            print(f"{prog}: {storage_message(exc)}", file=sys.stderr)
        else:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            print(f"{prog}: {where}{exc.strerror or one_line(exc)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except MemoryError:
        print(f"{prog}: out of memory", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            import traceback

            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED
