"""The knobs that change a result: validated once, recorded in every output, part of its validity.

An output made with other settings is not "done" for this run (see app.batch.plan for what the batch
does about it). Command-line flags of `app.sure2 assess` and `app.batch` map one to one onto fields.

Defaults are what the product does: λ chosen per series by the V-curve (`--lambda auto`; a number
forces that λ everywhere) and the pixel level on (`--pixel-level off` assesses from the field-mean
series alone, as before the pixel level existed; with `--lambda 10` that is the earlier assessment).
"""

import json
import math
from dataclasses import asdict, dataclass, fields

from app.errors import BadInput

AUTO = "auto"
FIXED_LAMBDA = 10.0  # the fixed λ of earlier assessments (and of the baseline's smoothing)
DEFAULT_LAMBDA = AUTO
DEFAULT_MIN_COVERAGE = 0.5  # a date with fewer valid inner pixels than this fraction is missing
DEFAULT_MIN_FIELD_COVERAGE = 0.9  # share of the field's pixels the stack must cover (else insufficient_data)
DEFAULT_MIN_OBSERVED_SHARE = 0.25  # share of sowing→harvest dates that must be observed (else insufficient_data)
DEFAULT_DAMAGE_DROP = 0.10  # NDVI fall of a pixel below its own pre-event level that counts as damage
DEFAULT_DAMAGE_Z = 2.0  # ... while it lies this many baseline standard deviations below the baseline
DEFAULT_PURE_FRACTION = 1.0  # share of a pixel inside the field that makes it pure (1: wholly inside)
DEFAULT_MIN_PURE_PIXELS = 4.0  # fewer pure pixels: the field is too_small (the import's sliver note agrees)
DEFAULT_MAX_SHIFT_DAYS = 30.0  # bound of a field's green-up shift against its baseline (0: no alignment)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadInput(f"not a number: {text!r}") from None


def _lambda(text: str):
    return AUTO if text == AUTO else _number(text)


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise BadInput(f"expected on or off, got {text!r}")
    return text == "on"


# flag → (field, parse the flag's text, help)
FLAGS = {
    "--lambda": ("lam", _lambda, "Whittaker smoothing strength: auto (V-curve per series, the default) or a "
                                 "number > 0 forcing that λ"),
    "--min-coverage": ("min_coverage", _number, "valid share of a field's inner pixels below which a date is "
                                                f"missing (default {DEFAULT_MIN_COVERAGE:g})"),
    "--min-field-coverage": ("min_field_coverage", _number, "share of the field's pixels the NDVI stack must "
                                                            "cover, else insufficient_data (default "
                                                            f"{DEFAULT_MIN_FIELD_COVERAGE:g})"),
    "--min-observed-share": ("min_observed_share", _number, "share of the sowing→harvest acquisitions that must "
                                                            "be observed, else insufficient_data (default "
                                                            f"{DEFAULT_MIN_OBSERVED_SHARE:g})"),
    "--pixel-level": ("pixel_level", _on_off, "on (default): smooth every inner pixel, map damage per pixel and "
                                              "assess from the pixels' curves; off: the field-mean series only"),
    "--damage-drop": ("damage_drop", _number, "NDVI fall of a pixel below its own pre-event level that counts as "
                                              f"damage, > 0 (default {DEFAULT_DAMAGE_DROP:g})"),
    "--pure-fraction": ("pure_fraction", _number, "share of a pixel's area inside the field that makes it a pure "
                                                  "pixel, the only ones assessed (mixed edge pixels carry the "
                                                  f"neighbours' signal); in [0.5, 1], default {DEFAULT_PURE_FRACTION:g}"),
    "--min-pure-pixels": ("min_pure_pixels", _number, "pure pixels a field needs, else not_assessable/too_small; "
                                                      f"a whole number >= 1 (default {DEFAULT_MIN_PURE_PIXELS:g})"),
    "--max-shift-days": ("max_shift_days", _number, "bound, in days, of a field's green-up shift against its "
                                                    "baseline, which is moved by that shift before comparing "
                                                    f"(0: no alignment; default {DEFAULT_MAX_SHIFT_DAYS:g})"),
    "--damage-z": ("damage_z", _number, "baseline standard deviations a damaged pixel must also lie below the "
                                        f"baseline, >= 0 (default {DEFAULT_DAMAGE_Z:g})"),
}


@dataclass(frozen=True)
class Settings:
    lam: object = DEFAULT_LAMBDA  # AUTO or a float
    min_coverage: float = DEFAULT_MIN_COVERAGE
    min_field_coverage: float = DEFAULT_MIN_FIELD_COVERAGE
    min_observed_share: float = DEFAULT_MIN_OBSERVED_SHARE
    pixel_level: bool = True
    damage_drop: float = DEFAULT_DAMAGE_DROP
    damage_z: float = DEFAULT_DAMAGE_Z
    max_shift_days: float = DEFAULT_MAX_SHIFT_DAYS
    pure_fraction: float = DEFAULT_PURE_FRACTION
    min_pure_pixels: float = DEFAULT_MIN_PURE_PIXELS

    def __post_init__(self):
        if not isinstance(self.pixel_level, bool):
            raise BadInput(f"--pixel-level must be on or off, got {self.pixel_level!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "pixel_level" or (f.name == "lam" and value == AUTO):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                what = "auto or a finite number" if f.name == "lam" else "a finite number"
                raise BadInput(f"{_flag(f.name)} must be {what}, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if self.lam == 0:
            raise BadInput("--lambda 0 switches smoothing off, which cannot fill the cloudy (missing) dates "
                           "a season has: use auto (the default) or a value > 0")
        if self.lam != AUTO and self.lam < 0:
            raise BadInput(f"--lambda must be > 0 (or auto), got {self.lam:g}")
        for name in ("min_coverage", "min_field_coverage"):
            if not 0 < getattr(self, name) <= 1:
                raise BadInput(f"{_flag(name)} must be in (0, 1], got {getattr(self, name):g}")
        if not 0 <= self.min_observed_share <= 1:
            raise BadInput(f"--min-observed-share must be in [0, 1], got {self.min_observed_share:g}")
        if not 0 < self.damage_drop <= 2:
            raise BadInput(f"--damage-drop must be in (0, 2] (NDVI units), got {self.damage_drop:g}")
        if not 0 <= self.damage_z <= 10:
            raise BadInput(f"--damage-z must be in [0, 10] (baseline standard deviations), got {self.damage_z:g}")
        if not 0.5 <= self.pure_fraction <= 1:
            raise BadInput(f"--pure-fraction must be in [0.5, 1], got {self.pure_fraction:g}")
        if self.min_pure_pixels < 1 or self.min_pure_pixels != int(self.min_pure_pixels):
            raise BadInput(f"--min-pure-pixels must be a whole number >= 1, got {self.min_pure_pixels:g}")
        if not 0 <= self.max_shift_days <= 60:
            raise BadInput(f"--max-shift-days must be in [0, 60] days, got {self.max_shift_days:g}")

    @property
    def auto_lambda(self) -> bool:
        return self.lam == AUTO

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
        diffs = [f"{_flag(k)} {_text(theirs.get(k, '?'))} (now {_text(mine.get(k, '?'))})"
                 for k in sorted(set(mine) | set(theirs)) if theirs.get(k) != mine.get(k)]
        return "made with " + ", ".join(diffs) if diffs else None

    def cli_args(self) -> list[str]:
        """These settings as flags of `python -m app.sure2 assess` (for the command backends)."""
        return [a for flag, (name, _, _) in FLAGS.items() for a in (flag, _text(getattr(self, name)))]


def _text(value) -> str:
    """A setting as its flag's text: on/off, auto, or the number's repr."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value if isinstance(value, str) else repr(value)


def _flag(name: str) -> str:
    return next((flag for flag, (field, _, _) in FLAGS.items() if field == name), name)


def add_arguments(parser) -> None:
    for flag, (name, _, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=name, default=None, help=help_text)


def from_args(args) -> Settings:
    """Settings from parsed flags (unset flags keep the defaults); BadInput when a value is invalid."""
    given = {}
    for flag, (name, parse, _) in FLAGS.items():
        text = getattr(args, name, None)
        if text is not None:
            try:
                given[name] = parse(text) if isinstance(text, str) else text
            except BadInput as exc:
                raise BadInput(f"{flag}: {exc}") from None
    return Settings(**given)
