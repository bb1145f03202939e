"""mapping.toml: how an insurer's columns become the season contract (documented in the README).

    season_year = 2025                      # the year of harvest; "MM-DD" dates belong to it
    id = "skifte_id"                        # the source column with the field ID
    crop = { column = "vekstkode", values = { BYG = "barley", HVE = "spring_wheat" } }
    region_id = { column = "kommune", values = { "3401" = "NO-Hedmarken" } }
    sowing_date = { column = "saadato", per_crop = { barley = "05-05", winter_wheat = "09-10" } }
    harvest_date = { column = "hostedato" }
    insured_sum = { column = "forsikring", per_ha = { barley = 9000 } }
    currency = { value = "NOK" }
    index = { value = "ndvi_integral", per_crop = { potato = "ndvi_peak" } }
    trigger = { column = "terskel", value = 0.12 }
    exit = { value = 0.5 }

Every contract term (`region_id`, `sowing_date`, `harvest_date`, `insured_sum`, `currency`, `index`,
`trigger`, `exit`) is a table (or a bare string: the name of its column) with any of:
  column    a source column; its value wins when the row has one
  values    a map from the column's values to the season's (a value not in it is not filled)
  per_crop  a value per season crop, when the row's column is empty (or there is no column)
  value     one value for every field, when neither of the above gave one
  per_ha    (insured_sum only) a rate per hectare per crop, times the field's area
`crop` has `column` and `values` (required: the source's codes mapped to barley, spring_wheat, oats,
potato, winter_wheat; a code not in the map, e.g. a land-use code, leaves the crop empty).
Dates are ISO dates (2025-05-03), date cells, or "MM-DD" in `season_year`; a sowing "MM-DD" later in
the year than the field's harvest is the autumn before (winter crops).

A mapping that names a column the file does not have, an unknown key, or a value of the wrong kind
is bad input (the whole import stops: exit 2). A row the mapping cannot complete keeps the column
empty (null) and gets a note saying why; the assessment gives that field a `not_assessable` outcome.
"""

import datetime as dt
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import BadInput

CROPS = ("barley", "spring_wheat", "oats", "potato", "winter_wheat")
INDEX_KINDS = ("ndvi_integral", "ndvi_peak")
TERMS = ("region_id", "sowing_date", "harvest_date", "insured_sum", "currency", "index", "trigger", "exit")
KINDS = {"region_id": "text", "sowing_date": "date", "harvest_date": "date", "insured_sum": "number",
         "currency": "text", "index": "text", "trigger": "number", "exit": "number"}
TERM_KEYS = {"column", "values", "per_crop", "value", "per_ha"}


@dataclass
class Term:
    name: str
    column: str | None = None
    values: dict | None = None
    per_crop: dict = field(default_factory=dict)
    value: object = None
    per_ha: dict = field(default_factory=dict)


@dataclass
class Mapping:
    path: Path
    season_year: int
    id_column: str
    crop_column: str
    crop_values: dict
    terms: dict  # name -> Term
    layer: str | None = None

    def columns(self) -> set:
        return {self.id_column, self.crop_column} | {t.column for t in self.terms.values() if t.column}


def load_mapping(path) -> Mapping:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"mapping file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"mapping {path.name} is not valid TOML: {exc}") from None
    where = f"mapping {path.name}"
    unknown = set(raw) - {"season_year", "id", "crop", "layer", *TERMS}
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: season_year, id, crop, layer, "
                       f"{', '.join(TERMS)})")
    for key in ("season_year", "id", "crop"):
        if key not in raw:
            raise BadInput(f"{where}: '{key}' is required")
    year = raw["season_year"]
    if not isinstance(year, int) or not 1980 <= year <= 2100:
        raise BadInput(f"{where}: season_year must be a year, not {year!r}")
    if not isinstance(raw["id"], str) or not raw["id"]:
        raise BadInput(f"{where}: 'id' must be the name of the ID column")
    crop = raw["crop"]
    if not isinstance(crop, dict) or not isinstance(crop.get("column"), str) or not isinstance(crop.get("values"), dict):
        raise BadInput(f"{where}: 'crop' must be {{ column = \"NAME\", values = {{ CODE = \"barley\", ... }} }}")
    if set(crop) - {"column", "values"}:
        raise BadInput(f"{where}: crop: unknown key(s) {', '.join(sorted(set(crop) - {'column', 'values'}))}")
    bad = {k: v for k, v in crop["values"].items() if v not in CROPS}
    if bad:
        raise BadInput(f"{where}: crop values must be one of {', '.join(CROPS)}; got {bad}")
    terms = {}
    for name in TERMS:
        spec = raw.get(name)
        if spec is None:
            raise BadInput(f"{where}: '{name}' is required (a column name or {{ column/value/per_crop }})")
        terms[name] = _term(where, name, {"column": spec} if isinstance(spec, str) else spec)
    layer = raw.get("layer")
    if layer is not None and not isinstance(layer, str):
        raise BadInput(f"{where}: layer must be a layer name")
    return Mapping(path, year, raw["id"], crop["column"], {str(k): v for k, v in crop["values"].items()}, terms, layer)


def _term(where, name, spec) -> Term:
    if not isinstance(spec, dict):
        raise BadInput(f"{where}: '{name}' must be a column name or a table, not {spec!r}")
    unknown = set(spec) - TERM_KEYS
    if unknown or ("per_ha" in spec and name != "insured_sum"):
        raise BadInput(f"{where}: {name}: unknown key(s) {', '.join(sorted(unknown | ({'per_ha'} & set(spec))))}")
    term = Term(name, spec.get("column"), spec.get("values"), spec.get("per_crop", {}), spec.get("value"),
                spec.get("per_ha", {}))
    if term.column is not None and not isinstance(term.column, str):
        raise BadInput(f"{where}: {name}.column must be a column name")
    for key in ("per_crop", "per_ha"):
        table = getattr(term, key)
        if not isinstance(table, dict) or set(table) - set(CROPS):
            raise BadInput(f"{where}: {name}.{key} must map crops ({', '.join(CROPS)}) to values")
    if term.values is not None and not isinstance(term.values, dict):
        raise BadInput(f"{where}: {name}.values must be a table of source value = season value")
    fixed = [term.value, *term.per_crop.values(), *(term.values or {}).values()]
    for v in fixed:
        if v is not None and _convert(KINDS[name], v, None)[0] is None:
            raise BadInput(f"{where}: {name}: {v!r} is not a valid {KINDS[name]}")
    for v in term.per_ha.values():
        if not isinstance(v, (int, float)) or v <= 0:
            raise BadInput(f"{where}: insured_sum.per_ha rates must be positive numbers, not {v!r}")
    if name == "index":
        bad = [v for v in fixed if v is not None and v not in INDEX_KINDS]
        if bad:
            raise BadInput(f"{where}: index must be one of {', '.join(INDEX_KINDS)}, not {bad[0]!r}")
    if term.column is None and term.value is None and not term.per_crop and not term.per_ha:
        raise BadInput(f"{where}: {name} needs a column, a value, or per-crop values")
    return term


def check_columns(mapping: Mapping, available, file_name: str) -> None:
    """BadInput naming every column the mapping uses that the file does not have."""
    missing = sorted(mapping.columns() - set(available))
    if missing:
        raise BadInput(f"mapping {mapping.path.name} names column(s) {', '.join(missing)} that {file_name} does not "
                       f"have (it has: {', '.join(sorted(available))})")


def map_row(mapping: Mapping, row: dict, area_ha: float | None) -> tuple[dict, list[str]]:
    """(contract values, notes) for one source row; a value that cannot be filled is None + a note."""
    notes = []
    code = row.get(mapping.crop_column)
    crop = mapping.crop_values.get(_text(code)) if code is not None else None
    if crop is None:
        notes.append(f"crop: code {_text(code)!r} is not in the mapping's crop values" if code is not None
                     else f"crop: column {mapping.crop_column} is empty")
    out = {"crop": crop}
    for name, term in mapping.terms.items():
        value, why = _fill(mapping, term, row, crop, area_ha)
        out[name] = value
        if why:
            notes.append(f"{name}: {why}")
    out["sowing_date"] = _autumn_before(out["sowing_date"], out["harvest_date"], _sowing_without_year(mapping, row, crop))
    return out, notes


def _sowing_without_year(mapping: Mapping, row: dict, crop) -> bool:
    """Only a sowing given as "MM-DD" (no year) may move to the autumn before."""
    term = mapping.terms["sowing_date"]
    cell = row.get(term.column) if term.column else None
    if cell is None or _text(cell) == "":
        cell = term.per_crop.get(crop, term.value)
    return isinstance(cell, str) and _is_mmdd(_text(cell))


def _autumn_before(sowing, harvest, from_mmdd: bool):
    if from_mmdd and sowing is not None and harvest is not None and sowing > harvest:
        return sowing.replace(year=sowing.year - 1)
    return sowing


def _fill(mapping: Mapping, term: Term, row: dict, crop, area_ha):
    kind = KINDS[term.name]
    tried = []
    if term.column:
        cell = row.get(term.column)
        if cell is not None and not (isinstance(cell, float) and math.isnan(cell)) and _text(cell) != "":
            if term.values is not None:
                mapped = term.values.get(_text(cell))
                if mapped is None:
                    return None, f"value {_text(cell)!r} of column {term.column} is not in the mapping's values"
                cell = mapped
            value, why = _convert(kind, cell, mapping.season_year)
            return (value, None) if why is None else (None, f"column {term.column}: {why}")
        tried.append(f"column {term.column} is empty")
    if term.per_ha:
        if crop in term.per_ha and area_ha is not None:
            return round(term.per_ha[crop] * area_ha, 2), None
        tried.append(f"no per-hectare rate for {crop or 'an unknown crop'}" if area_ha is not None else "no area")
    if term.per_crop:
        if crop in term.per_crop:
            return _convert(kind, term.per_crop[crop], mapping.season_year)[0], None
        tried.append(f"no per-crop value for {crop or 'an unknown crop'}")
    if term.value is not None:
        return _convert(kind, term.value, mapping.season_year)[0], None
    return None, "; ".join(tried) or "no value"


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _is_mmdd(text: str) -> bool:
    return len(text) == 5 and text[2] == "-" and text.replace("-", "").isdigit()


def _convert(kind: str, value, year):
    """(value, None) or (None, why) for a cell or mapping constant of the given kind."""
    if kind == "text":
        text = _text(value)
        return (text, None) if text else (None, "empty text")
    if kind == "number":
        if isinstance(value, bool):
            return None, f"{value!r} is not a number"
        try:
            number = float(str(value).replace(",", ".")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            return None, f"{value!r} is not a number"
        return (number, None) if math.isfinite(number) else (None, f"{value!r} is not a finite number")
    if isinstance(value, dt.datetime):
        return value.date(), None
    if isinstance(value, dt.date):
        return value, None
    text = _text(value)
    try:
        if _is_mmdd(text):
            return dt.date(year or 2000, int(text[:2]), int(text[3:])), None
        return dt.date.fromisoformat(text[:10]), None
    except ValueError:
        return None, f"{text!r} is not a date (ISO YYYY-MM-DD or MM-DD)"
