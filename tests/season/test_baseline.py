"""`app.season baseline`: from past seasons built the same way (history + a documented minimum of
years), and from a user table (checked; a bad row refuses the table, nothing written)."""

import json

import pyarrow.parquet as pq

from season_helpers import build_args, season_cli


def test_baseline_from_past_seasons(tmp_path):
    seasons = []
    for year in (2022, 2023, 2024):
        raw, season = tmp_path / f"raw{year}", tmp_path / f"season{year}"
        got = season_cli("raw", "--out", raw, "--fields", 6, "--tile", 384, "--dates", 37, "--seed", year - 2022,
                         "--year", year)
        assert got.returncode == 0, got.stderr
        got = season_cli(*build_args(raw, season))
        assert got.returncode == 0, got.stderr
        seasons.append(season)
    out = tmp_path / "baseline"
    got = season_cli("baseline", "--seasons", *seasons, "--out", out, "--min-years", 3)
    assert got.returncode == 0, got.stderr
    history = pq.read_table(out / "history.parquet").to_pylist()
    base = pq.read_table(out / "baseline.parquet").to_pylist()
    assert {r["year"] for r in history} == {2022, 2023, 2024}
    units = {(r["region_id"], r["crop"]) for r in base}
    assert units
    for region, crop in units:  # every unit in the baseline has all three years of history
        assert {r["year"] for r in history if (r["region_id"], r["crop"]) == (region, crop)} == {2022, 2023, 2024}
    summer = [r for r in base if 190 <= r["doy"] <= 200 and r["crop"] != "potato"]
    assert summer and all(0.3 < r["ndvi_mean"] < 0.95 and 0 <= r["ndvi_std"] < 0.35 for r in summer)  # damaged years included
    # a season built on that baseline carries its history too (percentile terms are priced on it)
    priced = tmp_path / "priced"
    got = season_cli(*build_args(raw, priced, "fields.gpkg", out / "baseline.parquet"))
    assert got.returncode == 0, got.stderr
    assert (priced / "history.parquet").read_bytes() == (out / "history.parquet").read_bytes()
    assert "history.parquet" in json.loads((priced / "season.json").read_text())["files"]
    strict = season_cli("baseline", "--seasons", *seasons, "--out", tmp_path / "strict", "--min-years", 4)
    assert strict.returncode == 0
    assert pq.read_table(tmp_path / "strict" / "baseline.parquet").num_rows == 0  # too short a history


def test_bad_baseline_table_is_refused(raw, tmp_path):
    table = tmp_path / "table.csv"
    text = (raw / "baseline_table.csv").read_text().splitlines()
    text[3] = text[3].replace("barley", "rye")
    table.write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    got = season_cli("baseline", "--table", table, "--out", out)
    assert got.returncode == 2 and "row 3: crop 'rye'" in got.stderr and not out.exists()
