"""The mapping against an insurer's awkward columns, through real files (GeoPackage, zipped Shapefile,
GeoJSON): dates as insurers write them, ambiguous and unreadable columns refused (exit 2, bad values
quoted, nothing written), numbers with local separators, literals never taken for columns, units."""

import datetime as dt

import pyarrow as pa
import pytest
import shapely
from season_helpers import season_cli

from app.errors import BadInput
from app.season.fields_import import import_fields
from app.season.mapping import load_mapping
from app.season.raw_inputs import write_fields_files

TEXT = pa.string()
MAPPING = """\
season_year = 2025
id = "ID"
crop = {{ column = "CROP", values = {{ BYGG = "barley" }} }}
region_id = {{ value = "NO-Hedmarken" }}
sowing_date = {{ column = "SOWN"{sown_extra} }}
harvest_date = "08-20"
insured_sum = {insured}
currency = {currency}
index = "ndvi_integral"
trigger = {trigger}
exit = 0.5
{extra}"""


def make(tmp_path, sown, sums=("10000",) * 4, *, sown_extra="", insured='{ column = "SUM" }', currency='"NOK"',
         trigger="0.12", extra="", sown_type=TEXT, sum_type=TEXT):
    """The four-row file in every format and its mapping; returns (directory, mapping path)."""
    rows = [{"ID": f"3401-01/{k + 1}", "CROP": "BYGG", "SOWN": sown[k], "SUM": sums[k], "TERSKEL": "12",
             "geometry": shapely.box(330_000 + 300 * k, 6_680_000, 330_100 + 300 * k, 6_680_100)} for k in range(4)]
    write_fields_files(tmp_path, rows, {"SOWN": sown_type, "SUM": sum_type})
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING.format(sown_extra=sown_extra, insured=insured, currency=currency, trigger=trigger,
                                      extra=extra))
    return tmp_path, mapping


def contract(path, mapping) -> list:
    fields = import_fields(path, load_mapping(mapping))
    return [dict(c, source_id=s, notes=n) for c, s, n in zip(fields.contract, fields.source_id, fields.notes)]


D = dt.date


@pytest.mark.parametrize("name", ["fields.gpkg", "fields.shp.zip", "fields.geojson"])
@pytest.mark.parametrize("sown, want", [
    (["01.05.2025", "15.05.2025", "30.04.2025", "02.06.2025"], [D(2025, 5, 1), D(2025, 5, 15), D(2025, 4, 30), D(2025, 6, 2)]),
    (["13/05/2025", "01/05/2025", "02/06/2025", "05/05/2025"], [D(2025, 5, 13), D(2025, 5, 1), D(2025, 6, 2), D(2025, 5, 5)]),
    (["05/13/2025", "05/01/2025", "06/02/2025", "05/05/2025"], [D(2025, 5, 13), D(2025, 5, 1), D(2025, 6, 2), D(2025, 5, 5)]),
    (["20250501", "2025-05-02", "2025-05-03T00:00:00", "45783"], [D(2025, 5, 1), D(2025, 5, 2), D(2025, 5, 3), D(2025, 5, 6)]),
])
def test_dates_as_insurers_write_them(tmp_path, name, sown, want):
    """DD.MM.YYYY; DD/MM or MM/DD decided by the one value that only one of them reads; YYYYMMDD, ISO
    (with a time) and spreadsheet serial numbers side by side."""
    d, mapping = make(tmp_path, sown)
    assert [c["sowing_date"] for c in contract(d / name, mapping)] == want


@pytest.mark.parametrize("name", ["fields.gpkg", "fields.shp.zip"])
def test_date_and_serial_number_cells(tmp_path, name):
    """Numeric cells: YYYYMMDD integers and spreadsheet serials (45778 = 2025-05-01)."""
    d, mapping = make(tmp_path, [20250501, 45778.0, 45779.0, 20250601], sown_type=pa.float64())
    assert [c["sowing_date"] for c in contract(d / name, mapping)] == [D(2025, 5, 1), D(2025, 5, 1), D(2025, 5, 2),
                                                                      D(2025, 6, 1)]


def test_ambiguous_column_is_refused_with_examples_and_date_format_settles_it(tmp_path):
    sown = ["01/05/2025", "02/06/2025", "03/05/2025", "05/05/2025"]
    d, mapping = make(tmp_path, sown)
    with pytest.raises(BadInput, match=r"column SOWN is ambiguous: '01/05/2025' \(2025-05-01 as %d/%m/%Y or "
                                       r"2025-01-05 as %m/%d/%Y\).*set date_format"):
        contract(d / "fields.gpkg", mapping)
    d, mapping = make(tmp_path, sown, sown_extra=', date_format = "%m/%d/%Y"')
    assert [c["sowing_date"] for c in contract(d / "fields.gpkg", mapping)] == [D(2025, 1, 5), D(2025, 2, 6),
                                                                               D(2025, 3, 5), D(2025, 5, 5)]
    d, mapping = make(tmp_path, ["1 mai 2025", "2 mai 2025", "3 mai 2025", "4 juni 2025"], extra='date_format = "%d %b %Y"\n')
    with pytest.raises(BadInput, match="4 of 4 values cannot be read"):  # %b is the C locale's 'May'
        contract(d / "fields.gpkg", mapping)


def test_unreadable_contract_column_is_exit_2_quoting_values_and_nothing_written(tmp_path):
    d, mapping = make(tmp_path, ["mai", "?", "01.05.2025", "xx"])
    out = tmp_path / "season"
    got = season_cli("build", "--fields", d / "fields.geojson", "--mapping", mapping, "--scenes", tmp_path / "none",
                     "--out", out)
    assert got.returncode == 2
    assert got.stderr.strip().splitlines() == [(
        "season: mapping mapping.toml: sowing_date: column SOWN: 3 of 4 values cannot be read, e.g. 'mai', '?', "
        "'xx' (recognised: date cells, ISO, %d.%m.%Y, %d/%m/%Y, %m/%d/%Y, %d-%m-%Y, %Y/%m/%d, %Y%m%d, spreadsheet "
        "serial numbers, MM-DD; set date_format for others); nothing was written")]
    assert not out.exists()


def test_a_few_bad_values_are_null_with_a_note(tmp_path):
    d, mapping = make(tmp_path, ["01.05.2025", "31.02.2025", "02.05.2025", "03.05.2025"])
    rows = contract(d / "fields.shp.zip", mapping)
    assert [r["sowing_date"] for r in rows] == [D(2025, 5, 1), None, D(2025, 5, 2), D(2025, 5, 3)]
    assert rows[1]["notes"] == ["sowing_date: column SOWN: '31.02.2025' is not a date"]


def test_numbers_with_local_separators(tmp_path):
    d, mapping = make(tmp_path, ["01.05.2025"] * 4, sums=["12 500,50", "12\u00a0500", "1.250,5", "800"])
    assert [r["insured_sum"] for r in contract(d / "fields.gpkg", mapping)] == [12500.5, 12500.0, 1250.5, 800.0]


def test_literals_are_never_columns_and_units_apply(tmp_path):
    """`currency = "NOK"` is the currency; a sum per decare in kNOK × the field's area (1 ha = 10 daa);
    a trigger column in percent."""
    d, mapping = make(tmp_path, ["01.05.2025"] * 4, sums=["2", "2", "2", "2"],
                      insured='{ column = "SUM", unit = "per_daa", scale = 1000 }',
                      trigger='{ column = "TERSKEL", unit = "percent" }')
    rows = contract(d / "fields.gpkg", mapping)
    assert all(r["currency"] == "NOK" and r["index"] == "ndvi_integral" for r in rows)
    assert [r["insured_sum"] for r in rows] == pytest.approx([20000.0] * 4, rel=1e-3)  # area measured in UTM 33
    assert [r["trigger"] for r in rows] == [0.12] * 4
    for currency, message in (('"VALUTA"', "currency 'VALUTA' is not an ISO 4217 code"),
                              ('{ column = "VALUTA" }', r"names column\(s\) VALUTA that fields.gpkg does not have")):
        d, mapping = make(tmp_path, ["01.05.2025"] * 4, currency=currency)
        with pytest.raises(BadInput, match=message):
            contract(d / "fields.gpkg", mapping)


def test_percentile_terms_are_mappable(tmp_path):
    d, mapping = make(tmp_path, ["01.05.2025"] * 4, trigger="0.12",
                      extra='trigger_percentile = { column = "TERSKEL" }\nexit_percentile = 1\n')
    rows = contract(d / "fields.gpkg", mapping)
    assert [(r["trigger_percentile"], r["exit_percentile"], r["trigger"]) for r in rows] == [(12.0, 1.0, None)] * 4
    text = mapping.read_text().replace("trigger = 0.12\nexit = 0.5\n", "")
    mapping.write_text(text)
    rows = contract(d / "fields.gpkg", mapping)
    assert [(r["trigger_percentile"], r["exit_percentile"], r["trigger"], r["exit"]) for r in rows] == [
        (12.0, 1.0, None, None)] * 4
    mapping.write_text(text.replace('trigger_percentile = { column = "TERSKEL" }\nexit_percentile = 1\n', ""))
    with pytest.raises(BadInput, match="payout terms are required"):
        load_mapping(mapping)


def test_row_without_id_is_refused_with_its_geometry(tmp_path):
    rows = [{"ID": ident, "CROP": "BYGG", "SOWN": "01.05.2025", "SUM": "100",
             "geometry": shapely.box(330_000 + 300 * k, 6_680_000, 330_100 + 300 * k, 6_680_100)}
            for k, ident in enumerate(["3401-01/1", "  ", "3401-01/3"])]
    write_fields_files(tmp_path, rows, {})
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING.format(sown_extra="", insured='{ column = "SUM" }', currency='"NOK"', trigger="0.12",
                                      extra=""))
    fields = import_fields(tmp_path / "fields.gpkg", load_mapping(mapping))
    assert fields.source_id == ["3401-01/1", "3401-01/3"]
    assert [(r["row"], r["source_id"], r["reason"]) for r in fields.refused] == [(2, None, "no_id")]
    assert fields.refused[0]["geometry"].area > 0
