"""The knobs that change a result: validated once, recorded in every output, part of its validity.

An output made with other settings is not "done" for this run (see app.batch.plan for what the batch
does about it). Command-line flags of `app.sure2 assess` and `app.batch` map one to one onto fields.
"""

import json
import math
from dataclasses import asdict, dataclass, fields

from app.errors import BadInput

DEFAULT_LAMBDA = 10.0  # Whittaker smoothing strength for 5-day acquisitions
DEFAULT_MIN_COVERAGE = 0.5  # a date with fewer valid inner pixels than this fraction is missing
DEFAULT_MIN_FIELD_COVERAGE = 0.9  # share of the field's pixels the stack must cover (else insufficient_data)
DEFAULT_MIN_OBSERVED_SHARE = 0.25  # share of sowing→harvest dates that must be observed (else insufficient_data)

# flag → (field, help)
FLAGS = {
    "--lambda": ("lam", f"Whittaker smoothing strength, > 0 (default {DEFAULT_LAMBDA:g})"),
    "--min-coverage": ("min_coverage", f"valid share of a field's inner pixels below which a date is missing "
                                       f"(default {DEFAULT_MIN_COVERAGE:g})"),
    "--min-field-coverage": ("min_field_coverage", "share of the field's pixels the NDVI stack must cover, "
                                                   f"else insufficient_data (default {DEFAULT_MIN_FIELD_COVERAGE:g})"),
    "--min-observed-share": ("min_observed_share", "share of the sowing→harvest acquisitions that must be "
                                                   f"observed, else insufficient_data (default {DEFAULT_MIN_OBSERVED_SHARE:g})"),
}


@dataclass(frozen=True)
class Settings:
    lam: float = DEFAULT_LAMBDA
    min_coverage: float = DEFAULT_MIN_COVERAGE
    min_field_coverage: float = DEFAULT_MIN_FIELD_COVERAGE
    min_observed_share: float = DEFAULT_MIN_OBSERVED_SHARE

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadInput(f"{_flag(f.name)} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if self.lam == 0:
            raise BadInput("--lambda 0 switches smoothing off, which cannot fill the cloudy (missing) dates "
                           f"a season has: use a value > 0 (default {DEFAULT_LAMBDA:g})")
        if self.lam < 0:
            raise BadInput(f"--lambda must be > 0, got {self.lam:g}")
        for name in ("min_coverage", "min_field_coverage"):
            if not 0 < getattr(self, name) <= 1:
                raise BadInput(f"{_flag(name)} must be in (0, 1], got {getattr(self, name):g}")
        if not 0 <= self.min_observed_share <= 1:
            raise BadInput(f"--min-observed-share must be in [0, 1], got {self.min_observed_share:g}")

    def as_dict(self) -> dict:
        return asdict(self)

    def canonical(self) -> str:
        """The JSON recorded in outputs and compared for validity."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    def difference(self, recorded: str) -> str | None:
        """None when `recorded` (an output's settings JSON) equals these settings, else what differs."""
        if recorded == self.canonical():
            return None
        try:
            theirs = json.loads(recorded)
        except ValueError:
            return "settings unreadable"
        mine = self.as_dict()
        diffs = [f"{_flag(k)} {theirs.get(k, '?')} (now {mine.get(k, '?')})"
                 for k in sorted(set(mine) | set(theirs)) if theirs.get(k) != mine.get(k)]
        return "made with " + ", ".join(diffs) if diffs else None

    def cli_args(self) -> list[str]:
        """These settings as flags of `python -m app.sure2 assess` (for the command backends)."""
        return [a for flag, (name, _) in FLAGS.items() for a in (flag, repr(getattr(self, name)))]


def _flag(name: str) -> str:
    return next((flag for flag, (field, _) in FLAGS.items() if field == name), name)


def add_arguments(parser) -> None:
    for flag, (name, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=name, type=float, default=None, help=help_text)


def from_args(args) -> Settings:
    """Settings from parsed flags (unset flags keep the defaults); BadInput when a value is invalid."""
    given = {name: getattr(args, name) for _, (name, _) in FLAGS.items() if getattr(args, name, None) is not None}
    return Settings(**given)
