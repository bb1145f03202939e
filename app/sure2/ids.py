"""Field IDs: the one thing a caller controls that becomes a path, so it is checked before anything else."""

import re
import sys
from pathlib import Path

from app.errors import BadInput

FIELD_ID_RE = r"[A-Za-z0-9_-]{1,64}"
_FIELD_ID = re.compile(FIELD_ID_RE)


def validate_field_id(s) -> str:
    """Return s if it is a well-formed field id, else raise BadInput with a one-line reason."""
    if not isinstance(s, str):
        raise BadInput(f"field id must be a string, got {type(s).__name__}")
    if s == "":
        raise BadInput("empty field id")
    if "\0" in s:
        raise BadInput("malformed field id (contains NUL)")
    if len(s) > 64:
        raise BadInput(f"malformed field id (longer than 64 characters: {len(s)})")
    if _FIELD_ID.fullmatch(s) is None:
        raise BadInput(f"malformed field id {s!r} (allowed: {FIELD_ID_RE})")
    return s


def read_id_list(path) -> list[str]:
    """IDs from a file ('-' = stdin), one per line; blank lines and '#' comments ignored (an ID never
    holds '#'). The one reader of ID lists: `assess --ids-from` and the batch's --fields."""
    if str(path) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
            raise BadInput(f"cannot read the field list {path}: {why}") from None
    return [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]
