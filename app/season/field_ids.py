"""The rule that turns an insurer's field ID into a season field ID (`[A-Za-z0-9_-]{1,64}`).

An ID that already fits is kept as it is. Otherwise, in this order:
  1. Nordic letters are transliterated (æ→ae, ø→o, å→a, upper case alike) and other accents dropped
     (Unicode NFKD, combining marks removed): "Ås-7" → "As-7";
  2. every run of characters outside [A-Za-z0-9_-] becomes one "_": "NO/2025/0042" → "NO_2025_0042";
  3. "_" at either end is removed;
  4. a result longer than 64 characters keeps its first 55 and appends "-" + the first 8 hex digits of
     the sha256 of the original ID (distinct long IDs stay distinct);
  5. an empty result (an ID of only symbols) becomes "id-" + those 8 hex digits.
The original is kept in the catalogue's `source_id`. Two rows whose IDs map to the same season ID
(also when one of them needed no mapping) are both refused by the import: a claim lookup by that ID
could otherwise pay the wrong field.
"""

import hashlib
import re
import unicodedata

VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_LEN = 64
NORDIC = str.maketrans({"æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "å": "a", "Å": "A"})
OUTSIDE = re.compile(r"[^A-Za-z0-9_-]+")


def source_text(value) -> str | None:
    """A source ID cell as text: integers without a '.0', whitespace stripped; None if empty."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def season_id(source: str) -> str:
    """The season field ID for a source ID (see the module docstring)."""
    if VALID.fullmatch(source):
        return source
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    text = unicodedata.normalize("NFKD", source.translate(NORDIC))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = OUTSIDE.sub("_", text).strip("_")
    if not text:
        return f"id-{digest}"
    if len(text) > MAX_LEN:
        return f"{text[:55]}-{digest}"
    return text
