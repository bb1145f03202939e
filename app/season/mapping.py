"""mapping.toml: how an insurer's columns become the season contract (documented in the README).

    season_year = 2025                      # the year of harvest; "MM-DD" dates belong to it
    id = "SKIFTE_ID"                        # the source column with the field ID (kept as written)
    date_format = "%d.%m.%Y"                # optional: strptime pattern(s) of the file's text dates
    crop = { column = "VEKST", values = { BYGG = "barley", HVETE = "spring_wheat", HAVRE = "oats" } }
    region_id = { column = "KOMMUNENR", values = { "3401" = "NO-Hedmarken" } }
    sowing_date = { column = "SAADATO", per_crop = { barley = "05-05", winter_wheat = "09-10" } }
    harvest_date = { column = "HOSTEDATO" }
    insured_sum = { column = "FORS_SUM", per_ha = { barley = 9000 } }   # or unit = "per_daa", scale = 1000
    currency = "NOK"                        # a code: a bare string is the value, never a column
    index = { value = "ndvi_integral", per_crop = { potato = "ndvi_peak" } }
    trigger = { column = "TERSKEL_PST", unit = "percent", value = 12 }
    exit = 0.5
    # or, instead of trigger/exit, percentile terms priced on the region × crop's history:
    # trigger_percentile = 20
    # exit_percentile = { column = "UTLOP_PST" }

Contract terms: `region_id`, `sowing_date`, `harvest_date`, `insured_sum`, `currency`, `index` (all
required) and payout terms: `trigger` + `exit` (loss-index fractions) and/or `trigger_percentile` +
`exit_percentile` (percent of the history's NDVI distribution). With both pairs, a row whose percentile
terms are both filled is a percentile contract (its fixed terms stay empty), any other row a fixed one
(so give the percentile terms as columns then). Each term is a table with any of:
  column       a source column; its value wins when the row has one
  values       a map from the column's values to the season's (a value not in it is not filled)
  per_crop     a value per season crop, when the row's column is empty (or there is no column)
  value        one value for every field, when neither of the above gave one
  per_ha       (insured_sum only) a rate per hectare per crop, times the field's area
  unit         insured_sum: "total" (default), "per_ha", "per_daa" (decare, 0.1 ha), "per_m2": the column,
               value and per_crop numbers are per field or a rate times the field's area;
               trigger/exit: "fraction" (default) or "percent"; *_percentile: "percent" (default) or "fraction"
  scale        (numbers) a factor for column, value and per_crop numbers, e.g. 1000 for sums in kNOK
  date_format  (dates) strptime pattern(s) for this column, overriding the top-level `date_format`
A bare value is shorthand: a number or a date (ISO, or "MM-DD") is `value`; a string is `column` — except
for `currency` (an ISO 4217 code, "NOK") and `index` (ndvi_integral, ndvi_peak), whose bare strings are
values: a literal is never taken for a column name.
`crop` has `column` and `values` (required: the source's codes mapped to barley, spring_wheat, oats,
potato, winter_wheat; a code not in the map, e.g. a land-use code, leaves the crop empty).

Dates, as insurers write them: date cells, ISO (2025-05-03, also with a time), DD.MM.YYYY, DD/MM/YYYY,
MM/DD/YYYY, DD-MM-YYYY, YYYY/MM/DD, YYYYMMDD, spreadsheet serial numbers (days since 1899-12-30, for dates
1950–2099), "MM-DD" in `season_year`; `date_format` replaces the text patterns (ISO stays). A column is read
as a whole: where DD/MM and MM/DD readings differ, the one that reads every such cell wins; if both do
(no day above 12 anywhere) the column is ambiguous and refused with examples. A sowing "MM-DD" later in
the year than the field's harvest is the autumn before (winter crops).

A mapping that names a column the file does not have, an unknown key, or a value of the wrong kind
is bad input (the whole import stops: exit 2), and so is a contract column that cannot be read for
most of its rows (more than half of its non-empty cells: not a date, not a number, not in `values`):
the first bad values are quoted, nothing is written. A row the mapping cannot complete keeps the
column empty (null) and gets a note saying why; the assessment gives that field a `not_assessable`
outcome (`app.season build --strict` refuses the whole import instead).
"""

import datetime as dt
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import BadInput

CROPS = ("barley", "spring_wheat", "oats", "potato", "winter_wheat")
INDEX_KINDS = ("ndvi_integral", "ndvi_peak")
REQUIRED_TERMS = ("region_id", "sowing_date", "harvest_date", "insured_sum", "currency", "index")
PAIRS = {"fixed": ("trigger", "exit"), "percentile": ("trigger_percentile", "exit_percentile")}
TERMS = REQUIRED_TERMS + PAIRS["fixed"] + PAIRS["percentile"]
KINDS = {"region_id": "text", "sowing_date": "date", "harvest_date": "date", "insured_sum": "number",
         "currency": "text", "index": "text", "trigger": "number", "exit": "number",
         "trigger_percentile": "number", "exit_percentile": "number"}
LITERAL_TERMS = ("currency", "index")  # a bare string is the value (a code), never a column name
TERM_KEYS = {"column", "values", "per_crop", "value", "per_ha", "unit", "scale", "date_format"}
# unit → factor: insured_sum per area unit → × area in ha × factor; the others: × factor
UNITS: dict[str, dict[str, float | None]] = {"insured_sum": {"total": None, "per_ha": 1.0, "per_daa": 10.0, "per_m2": 1e4},
         "trigger": {"fraction": 1.0, "percent": 0.01}, "exit": {"fraction": 1.0, "percent": 0.01},
         "trigger_percentile": {"percent": 1.0, "fraction": 100.0},
         "exit_percentile": {"percent": 1.0, "fraction": 100.0}}
CURRENCY = re.compile(r"[A-Z]{3}")
AUTO_DATE_FORMATS = ("%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y", "%Y/%m/%d", "%Y%m%d")
SERIAL_EPOCH = dt.date(1899, 12, 30)  # day 0 of spreadsheet serial dates (Excel's 1900 system, LibreOffice)
SERIAL_DAYS = ((dt.date(1950, 1, 1) - SERIAL_EPOCH).days, (dt.date(2100, 1, 1) - SERIAL_EPOCH).days)
EXAMPLES = 3  # bad values quoted in a refusal


@dataclass
class Term:
    name: str
    column: str | None = None
    values: dict | None = None
    per_crop: dict = field(default_factory=dict)
    value: object = None
    per_ha: dict = field(default_factory=dict)
    unit: str | None = None
    scale: float = 1.0
    date_formats: tuple = ()


@dataclass
class Mapping:
    path: Path
    season_year: int
    id_column: str
    crop_column: str
    crop_values: dict
    terms: dict  # name -> Term (the required terms and one pair)
    layer: str | None = None
    pairs: tuple = ("fixed",)  # the payout terms it maps: fixed and/or percentile

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
    top = ("season_year", "id", "crop", "layer", "date_format")
    unknown = set(raw) - {*top, *TERMS}
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(top)}, "
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
    date_formats = _date_formats(where, "date_format", raw.get("date_format"))
    pairs = tuple(kind for kind, names in PAIRS.items() if any(n in raw for n in names))
    if not pairs:
        raise BadInput(f"{where}: payout terms are required: trigger + exit (loss fractions) and/or "
                       "trigger_percentile + exit_percentile (percent of the history)")
    terms = {}
    for name in REQUIRED_TERMS + sum((PAIRS[k] for k in pairs), ()):
        spec = raw.get(name)
        if spec is None:
            raise BadInput(f"{where}: '{name}' is required (a column name or {{ column/value/per_crop }})")
        terms[name] = _term(where, name, _table_of(where, name, spec), date_formats, year)
    layer = raw.get("layer")
    if layer is not None and not isinstance(layer, str):
        raise BadInput(f"{where}: layer must be a layer name")
    return Mapping(path, year, raw["id"], crop["column"], {str(k): v for k, v in crop["values"].items()}, terms,
                   layer, pairs)


def _table_of(where, name, spec) -> dict:
    """A term's table from its TOML value (bare values: see the module docstring)."""
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, bool):
        raise BadInput(f"{where}: '{name}' must be a column name, a value or a table, not {spec!r}")
    if isinstance(spec, (int, float, dt.date)):
        return {"value": spec}
    if isinstance(spec, str):
        literal = name in LITERAL_TERMS or (KINDS[name] == "date" and _literal_date(spec, 2000) is not None)
        return {"value": spec} if literal else {"column": spec}
    raise BadInput(f"{where}: '{name}' must be a column name, a value or a table, not {spec!r}")


def _date_formats(where, key, spec) -> tuple:
    if spec is None:
        return ()
    patterns = [spec] if isinstance(spec, str) else spec
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise BadInput(f"{where}: {key} must be a strptime pattern or a list of them, e.g. \"%d.%m.%Y\"")
    probe = dt.date(2025, 11, 23)
    for p in patterns:
        try:
            ok = dt.datetime.strptime(probe.strftime(p), p).date() == probe
        except ValueError:
            ok = False
        if not ok:
            raise BadInput(f"{where}: {key} {p!r} does not read a whole date back (needs day, month and year, "
                           "e.g. \"%d.%m.%Y\")")
    return tuple(patterns)


def _term(where, name, spec, date_formats, year) -> Term:
    unknown = set(spec) - TERM_KEYS
    kind = KINDS[name]
    misplaced = ({"per_ha"} & set(spec) if name != "insured_sum" else set()) | \
                ({"unit", "scale"} & set(spec) if kind != "number" else set()) | \
                ({"date_format"} & set(spec) if kind != "date" else set())
    if unknown or misplaced:
        raise BadInput(f"{where}: {name}: unknown key(s) {', '.join(sorted(unknown | misplaced))}")
    term = Term(name, spec.get("column"), spec.get("values"), spec.get("per_crop", {}), spec.get("value"),
                spec.get("per_ha", {}), spec.get("unit"), spec.get("scale", 1.0),
                _date_formats(where, f"{name}.date_format", spec["date_format"]) if "date_format" in spec
                else date_formats)
    if term.column is not None and not isinstance(term.column, str):
        raise BadInput(f"{where}: {name}.column must be a column name")
    for key in ("per_crop", "per_ha"):
        table = getattr(term, key)
        if not isinstance(table, dict) or set(table) - set(CROPS):
            raise BadInput(f"{where}: {name}.{key} must map crops ({', '.join(CROPS)}) to values")
    if term.values is not None and not isinstance(term.values, dict):
        raise BadInput(f"{where}: {name}.values must be a table of source value = season value")
    if name in UNITS and term.unit is not None and term.unit not in UNITS[name]:
        raise BadInput(f"{where}: {name}.unit must be one of {', '.join(UNITS[name])}, not {term.unit!r}")
    if isinstance(term.scale, bool) or not isinstance(term.scale, (int, float)) or not term.scale > 0:
        raise BadInput(f"{where}: {name}.scale must be a positive number, not {term.scale!r}")
    fixed = [term.value, *term.per_crop.values(), *(term.values or {}).values()]
    for v in fixed:
        if v is not None and _convert(kind, v, year, term.date_formats)[0] is None:
            raise BadInput(f"{where}: {name}: {v!r} is not a valid {kind}")
    for v in term.per_ha.values():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise BadInput(f"{where}: insured_sum.per_ha rates must be positive numbers, not {v!r}")
    if name == "index":
        bad = [v for v in fixed if v is not None and v not in INDEX_KINDS]
        if bad:
            raise BadInput(f"{where}: index must be one of {', '.join(INDEX_KINDS)}, not {bad[0]!r}")
    if name == "currency":
        bad = [v for v in fixed if v is not None and not CURRENCY.fullmatch(str(v))]
        if bad:
            raise BadInput(f"{where}: currency {bad[0]!r} is not an ISO 4217 code like \"NOK\" (a column: "
                           "currency = { column = \"NAME\" })")
    if term.column is None and term.value is None and not term.per_crop and not term.per_ha:
        raise BadInput(f"{where}: {name} needs a column, a value, or per-crop values")
    return term


def check_columns(mapping: Mapping, available, file_name: str) -> None:
    """BadInput naming every column the mapping uses that the file does not have."""
    missing = sorted(mapping.columns() - set(available))
    if missing:
        raise BadInput(f"mapping {mapping.path.name} names column(s) {', '.join(missing)} that {file_name} does not "
                       f"have (it has: {', '.join(sorted(available))})")


# --- columns, read as a whole ----------------------------------------------------------------------------

def read_columns(mapping: Mapping, columns: dict) -> dict:
    """term name → one (value, why, yearless) per row for each term with a column (None where the cell is
    empty): the whole column parsed at once, so a date format is decided per column. BadInput for an
    ambiguous date column or a column most of whose cells cannot be read (module docstring)."""
    out = {}
    for name, term in mapping.terms.items():
        if term.column:
            out[name] = _read_column(mapping, term, columns[term.column])
    return out


def _empty(cell) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell)) or _text(cell) == ""


def _read_column(mapping: Mapping, term: Term, cells: list) -> list:
    kind = KINDS[term.name]
    where = f"mapping {mapping.path.name}: {term.name}: column {term.column}"
    out: list = [None] * len(cells)
    present = [i for i, c in enumerate(cells) if not _empty(c)]
    mapped = {}
    for i in present:
        cell = cells[i]
        if term.values is not None:
            season_value = term.values.get(_text(cell))
            if season_value is None:
                out[i] = (None, f"value {_text(cell)!r} is not in the mapping's values", False)
                continue
            cell = season_value
        mapped[i] = cell
    if kind == "date":
        readings = _resolve_dates(where, {i: _date_readings(c, mapping.season_year, term.date_formats)
                                          for i, c in mapped.items()}, cells)
        for i, cell in mapped.items():
            got = readings[i]
            out[i] = (got[0], None, got[1]) if got else (None, f"{_text(cell)!r} is not a date", False)
    else:
        for i, cell in mapped.items():
            value, why = _convert(kind, cell, mapping.season_year, term.date_formats)
            out[i] = (value, why, False)
    bad = [i for i in present if out[i][0] is None]
    if present and len(bad) * 2 > len(present):
        examples = ", ".join(repr(_text(cells[i])) for i in bad[:EXAMPLES])
        hint = (f" (recognised: date cells, ISO, {', '.join(term.date_formats or AUTO_DATE_FORMATS)}, spreadsheet "
                "serial numbers, MM-DD; set date_format for others)" if kind == "date" else
                " (not in the mapping's values)" if term.values is not None else f" (not a {kind})")
        raise BadInput(f"{where}: {len(bad)} of {len(present)} values cannot be read, e.g. {examples}{hint}; "
                       "nothing was written")
    return out


def _date_readings(cell, year, formats) -> dict:
    """pattern → (date, yearless) for each way the cell reads as a date."""
    if isinstance(cell, dt.datetime):
        return {"cell": (cell.date(), False)}
    if isinstance(cell, dt.date):
        return {"cell": (cell, False)}
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        if not float(cell).is_integer():
            return {}
        digits = str(int(cell))
        return _digit_date(digits)
    text = _text(cell)
    literal = _literal_date(text, year)
    if literal is not None:
        return {"iso" if len(text) != 5 else "mm-dd": (literal, len(text) == 5)}
    if text.isdigit() and len(text) <= 5:
        return _digit_date(text)
    out = {}
    for pattern in formats or AUTO_DATE_FORMATS:
        try:
            out[pattern] = (dt.datetime.strptime(text, pattern).date(), False)
        except ValueError:
            pass
    return out


def _digit_date(digits: str) -> dict:
    if len(digits) == 8:
        try:
            return {"%Y%m%d": (dt.datetime.strptime(digits, "%Y%m%d").date(), False)}
        except ValueError:
            return {}
    n = int(digits)
    if SERIAL_DAYS[0] <= n < SERIAL_DAYS[1]:
        return {"serial": (SERIAL_EPOCH + dt.timedelta(days=n), False)}
    return {}


def _literal_date(text: str, year):
    """An ISO date (a time after it ignored) or "MM-DD" of `year`; None otherwise."""
    try:
        if _is_mmdd(text):
            return dt.date(year, int(text[:2]), int(text[3:]))
        if len(text) >= 10 and text[4] == "-" and (len(text) == 10 or text[10] in "T "):
            return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None
    return None


def _resolve_dates(where, readings: dict, cells: list) -> dict:
    """row → (date, yearless) or None: one reading per cell; where patterns disagree on a cell (DD/MM vs
    MM/DD) the pattern that reads every such cell wins, and if none or several do: BadInput with examples."""
    conflicts = [i for i, r in readings.items() if len({d for d, _ in r.values()}) > 1]
    chosen = None
    if conflicts:
        rival = sorted({p for i in conflicts for p in readings[i]})
        readable = {i for i, r in readings.items() if set(r) & set(rival)}
        consistent = [p for p in rival if all(p in readings[i] for i in readable)]
        if len(consistent) != 1:
            examples = ", ".join(f"{_text(cells[i])!r} (" + " or ".join(
                f"{readings[i][p][0].isoformat()} as {p}" for p in rival if p in readings[i]) + ")"
                for i in conflicts[:EXAMPLES])
            raise BadInput(f"{where} is ambiguous: {examples}; every value reads both ways: set date_format "
                           f"(e.g. date_format = \"{rival[0]}\") in the mapping")
        chosen = consistent[0]
    out = {}
    for i, r in readings.items():
        if not r:
            out[i] = None
        elif chosen in r:
            out[i] = r[chosen]
        else:
            out[i] = next(iter(r.values()))
    return out


# --- one row ---------------------------------------------------------------------------------------------

def map_row(mapping: Mapping, row: dict, area_ha: float | None, read: dict | None = None,
            index: int | None = None) -> tuple[dict, list[str]]:
    """(contract values, notes) for one source row; a value that cannot be filled is None + a note.
    `read`/`index`: the columns as read_columns read them and this row's index (default: read this
    row alone)."""
    if read is None:
        read, index = read_columns(mapping, {c: [row.get(c)] for c in mapping.columns()}), 0
    notes = []
    code = row.get(mapping.crop_column)
    crop = mapping.crop_values.get(_text(code)) if not _empty(code) else None
    if crop is None:
        notes.append(f"crop: code {_text(code)!r} is not in the mapping's crop values" if not _empty(code)
                     else f"crop: column {mapping.crop_column} is empty")
    out, why_not = {"crop": crop}, {}
    yearless = False
    for name, term in mapping.terms.items():
        cell = read[name][index] if name in read else None
        value, why, from_mmdd = _fill(mapping, term, cell, crop, area_ha)
        out[name] = value
        yearless = yearless or (name == "sowing_date" and from_mmdd)
        if why:
            why_not[name] = why
    if len(mapping.pairs) == 2:  # the row's own pair: percentile terms where both are filled, else fixed
        unused = PAIRS["fixed" if all(out[n] is not None for n in PAIRS["percentile"]) else "percentile"]
        for name in unused:
            out[name] = None
            why_not.pop(name, None)
    notes += [f"{name}: {why}" for name, why in why_not.items()]
    for name in TERMS:
        out.setdefault(name, None)
    if yearless and out["sowing_date"] is not None and out["harvest_date"] is not None \
            and out["sowing_date"] > out["harvest_date"]:
        out["sowing_date"] = out["sowing_date"].replace(year=out["sowing_date"].year - 1)  # winter crops
    return out, notes


def _fill(mapping: Mapping, term: Term, cell, crop, area_ha):
    """(value, why not, from a yearless "MM-DD") for one term of one row."""
    kind = KINDS[term.name]
    tried = []
    if term.column:
        if cell is not None:
            value, why, yearless = cell
            if why:
                return None, f"column {term.column}: {why}", False
            return *_in_season_units(term, value, area_ha), yearless
        tried.append(f"column {term.column} is empty")
    if term.per_ha:
        if crop in term.per_ha and area_ha is not None:
            return round(term.per_ha[crop] * area_ha, 2), None, False
        tried.append(f"no per-hectare rate for {crop or 'an unknown crop'}" if area_ha is not None else "no area")
    constant = term.per_crop.get(crop) if term.per_crop and crop in term.per_crop else term.value
    if term.per_crop and crop not in term.per_crop:
        tried.append(f"no per-crop value for {crop or 'an unknown crop'}")
    if constant is not None:
        value = _convert(kind, constant, mapping.season_year, term.date_formats)[0]
        yearless = kind == "date" and isinstance(constant, str) and _is_mmdd(_text(constant))
        return *_in_season_units(term, value, area_ha), yearless
    return None, "; ".join(tried) or "no value", False


def _in_season_units(term: Term, value, area_ha):
    """(value, why) with the term's scale and unit applied (numbers only)."""
    if KINDS[term.name] != "number" or value is None:
        return value, None
    value = value * term.scale
    factor = UNITS.get(term.name, {}).get(term.unit or "")
    if term.name == "insured_sum" and factor is not None:
        if area_ha is None:
            return None, f"a sum {term.unit} needs the field's area, and it has none"
        return round(value * area_ha * factor, 2), None
    return (round(value * factor, 10) if factor is not None else value), None


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _is_mmdd(text: str) -> bool:
    return len(text) == 5 and text[2] == "-" and text.replace("-", "").isdigit()


def _number(value):
    """A number from a cell: numbers as they are; text with a decimal comma or point, spaces (also
    non-breaking) as thousands separators, and with both ',' and '.' the last one the decimal mark."""
    if isinstance(value, (int, float)):
        return float(value)
    text = re.sub(r"[\s\u00a0\u202f']", "", str(value))
    if "," in text and "." in text:
        decimal = max(text.rfind(","), text.rfind("."))
        text = text[:decimal].replace(",", "").replace(".", "") + "." + text[decimal + 1:]
    return float(text.replace(",", "."))


def _convert(kind: str, value, year, formats=()):
    """(value, None) or (None, why) for a cell or mapping constant of the given kind."""
    if kind == "text":
        text = _text(value)
        return (text, None) if text else (None, "empty text")
    if kind == "number":
        if isinstance(value, bool):
            return None, f"{value!r} is not a number"
        try:
            number = _number(value)
        except (TypeError, ValueError):
            return None, f"{_text(value)!r} is not a number"
        return (number, None) if math.isfinite(number) else (None, f"{value!r} is not a finite number")
    readings = _date_readings(value, year or 2000, formats)
    dates = {d for d, _ in readings.values()}
    if len(dates) == 1:
        return dates.pop(), None
    return None, (f"{_text(value)!r} is not a date" if not dates else f"{_text(value)!r} is ambiguous")
