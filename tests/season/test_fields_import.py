"""The insurer's field file: every format, the awkward rows, the ID rule, the mapping, refusals."""

import json
import re
import shutil

import pyarrow.parquet as pq
import pytest
import shapely

from app.season.field_ids import season_id
from season_helpers import build_args, season_cli

FORMATS = ["fields.gpkg", "fields.shp.zip", "fields.geojson", "fields.fgb", "fields.parquet"]


def catalogue(season) -> dict:
    return {r["source_id"]: r for r in pq.read_table(season / "fields.parquet").to_pylist()}


def log_entries(season) -> list:
    return [json.loads(line) for line in (season / "import_log.jsonl").read_text().splitlines()]


def test_awkward_rows_each_end_as_documented(built, raw):
    season, stderr = built
    rows = catalogue(season)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", r["field_id"]) for r in rows.values())
    geom = lambda sid: shapely.from_wkb(rows[sid]["geometry"])
    assert rows["KV-BOWTIE"]["note"].startswith("repaired: Self-intersection")
    assert geom("KV-BOWTIE").is_valid and geom("KV-BOWTIE").area > 0
    assert geom("KV-MULTI").geom_type == "MultiPolygon" and len(geom("KV-MULTI").geoms) == 2
    assert geom("KV-HOLE").geom_type == "Polygon" and len(geom("KV-HOLE").interiors) == 1
    assert re.fullmatch(r"sliver: [\d.]+ pixels", rows["KV-SLIVER"]["note"])
    assert rows["KV-OUTSIDE"]["stack"] is None and rows["KV-OUTSIDE"]["note"] == "outside every scene"
    assert rows["KV-GRASS"]["crop"] is None and "crop: code 'GRA'" in rows["KV-GRASS"]["note"]
    assert rows["NO/2025/0042"]["field_id"] == "NO_2025_0042" and rows["Ås-7"]["field_id"] == "As-7"
    # refused: both duplicate rows and both rows of the collision, with the list in the log and on stderr
    for sid in ("KV-DUP1", "KV DUP2", "KV_DUP2"):
        assert sid not in rows
    refused = [e for e in log_entries(season) if e["outcome"] == "refused"]
    assert sorted(e["source_id"] for e in refused) == ["KV DUP2", "KV-DUP1", "KV-DUP1", "KV_DUP2"]
    assert stderr.count("refused row") == 4 and "duplicate ID: 'KV-DUP1' is on 2 rows" in stderr
    manifest = json.loads((season / "season.json").read_text())
    assert manifest["audit"]["fields_import"]["refused"] == [{k: e for k, e in r.items()} for r in
                                                             manifest["audit"]["fields_import"]["refused"]]
    assert len(manifest["audit"]["fields_import"]["refused"]) == 4 and manifest["n_fields"] == len(rows)


def test_straddling_field_is_in_one_stack_by_the_documented_rule(built, raw):
    season, _ = built
    rows = list(pq.read_table(season / "fields.parquet").to_pylist())
    straddler = [r for r in rows if r["source_id"] == "KV-STRADDLE"]
    assert len(straddler) == 1
    assert straddler[0]["stack"] == "utm33"  # its centroid lies east of 12°E
    assert "straddles UTM zones (covered by utm32, utm33): assessed in utm33" in straddler[0]["note"]
    truth = {t["source_id"]: t for t in pq.read_table(raw / "truth.parquet").to_pylist()}
    for r in rows:
        want = {None: None, "EPSG:32632": "utm32", "EPSG:32633": "utm33"}[truth[r["source_id"]]["zone"]]
        assert r["stack"] == want, r["source_id"]


def test_every_format_gives_the_same_catalogue(built, raw, baseline, tmp_path):
    """GPKG, zipped Shapefile, GeoJSON, FlatGeobuf, GeoParquet → byte-identical fields.parquet. Built
    into one season directory in turn: the stacks are valid after the first and are skipped."""
    season, _ = built
    want = (season / "fields.parquet").read_bytes()
    out = tmp_path / "season"
    shutil.copytree(season, out)
    for name in FORMATS[1:]:
        got = season_cli(*build_args(raw, out, name, baseline))
        assert got.returncode == 0, got.stderr
        assert got.stderr.count("valid, skipped") == 2
        assert (out / "fields.parquet").read_bytes() == want, name


def test_area_is_kept(built, raw):
    season, _ = built
    source = {r["skifte_id"]: r for r in pq.read_table(raw / "fields.parquet").to_pylist()}
    for sid, row in catalogue(season).items():
        if row["area_ha"] is not None:
            assert row["area_ha"] == pytest.approx(source[sid]["areal_daa"] / 10, rel=0.01, abs=0.01), sid


def test_file_without_crs_is_refused_and_nothing_written(raw, tmp_path):
    out = tmp_path / "season"
    got = season_cli(*build_args(raw, out, "fields_nocrs.shp.zip"))
    assert got.returncode == 2
    assert got.stderr.strip().splitlines() == [
        "season: fields_nocrs.shp.zip has no CRS (a .prj or CRS definition is missing); "
        "add it to the file, a CRS is never guessed"]
    assert not out.exists()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + 'colour = "red"\n', "unknown key(s) colour"),
    (lambda t: t.replace('id = "skifte_id"', 'id = "parcel"'), "names column(s) parcel that fields.gpkg does not have"),
    (lambda t: t.replace('"ndvi_peak"', '"ndvi_max"'), "index must be one of ndvi_integral, ndvi_peak"),
    (lambda t: t.replace("season_year", "season_yaer"), "unknown key(s) season_yaer"),
    (lambda t: t + "[[", "is not valid TOML"),
])
def test_bad_mapping_is_bad_input(raw, tmp_path, edit, message):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(edit((raw / "mapping.toml").read_text()))
    out = tmp_path / "season"
    got = season_cli("build", "--fields", raw / "fields.gpkg", "--mapping", mapping, "--scenes", raw / "scenes",
                     "--out", out)
    assert got.returncode == 2 and message in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr
    assert not out.exists()


def test_row_the_mapping_cannot_complete_gets_null_and_a_note(raw, tmp_path, baseline):
    """No per-crop sowing default for oats and no per-hectare rate: fields of oats with empty cells
    get null there, with the reason, and stay in the catalogue."""
    text = (raw / "mapping.toml").read_text().replace('oats = "05-09", ', "").replace("oats = 8000, ", "")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(text)
    out = tmp_path / "season"
    got = season_cli("build", "--fields", raw / "fields.gpkg", "--mapping", mapping, "--scenes", raw / "scenes",
                     "--out", out)
    assert got.returncode == 0, got.stderr
    oats = [r for r in catalogue(out).values() if r["crop"] == "oats"]
    no_sowing = [r for r in oats if r["sowing_date"] is None]
    assert no_sowing and all("sowing_date: column saadato is empty; no per-crop value for oats" in r["note"]
                             for r in no_sowing)


@pytest.mark.parametrize("source, want", [
    ("KV-0001", "KV-0001"), ("NO/2025/0042", "NO_2025_0042"), ("Ås-7", "As-7"), ("Øvre Æsø", "Ovre_AEso"),
    (" 12.5 ", "12_5"), ("///", None), ("x" * 70, None),
])
def test_id_rule(source, want):
    got = season_id(source)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", got)
    if want is not None:
        assert got == want
    assert season_id(source) == got  # deterministic
    if len(source) > 64:
        assert got.startswith("x" * 55 + "-") and len(got) == 64
