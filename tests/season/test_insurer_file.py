"""A real insurer's file end to end without silent loss (issue 17): the generator's insurer variant
(Norwegian attributes, IDs with '/', DD.MM.YYYY text dates, percentile terms, slivers, shifted fields)
through the import, the assessment and the batch's report: every source row has an outcome."""

import datetime as dt
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from season_helpers import ROOT, build_args, season_cli


def source_rows(raw) -> list:
    return pq.read_table(raw / "fields.parquet").to_pylist()


def catalogue(season) -> dict:
    return {r["source_id"]: r for r in pq.read_table(season / "fields.parquet").to_pylist()}


def test_insurer_file_imports_dates_ids_and_terms(insurer_built, insurer_raw):
    season, stderr = insurer_built
    rows, source = catalogue(season), source_rows(insurer_raw)
    # every DD.MM.YYYY text became its date; the IDs with '/' are kept as written in source_id
    for s in source:
        if s["SKIFTE_ID"] in rows and s["SAADATO"]:
            assert rows[s["SKIFTE_ID"]]["sowing_date"] == dt.datetime.strptime(s["SAADATO"], "%d.%m.%Y").date()
        if s["SKIFTE_ID"] in rows:
            assert rows[s["SKIFTE_ID"]]["harvest_date"] == dt.datetime.strptime(s["HOSTEDATO"], "%d.%m.%Y").date()
    first = source[0]["SKIFTE_ID"]  # 'KOMMUNE-GNR/BNR', e.g. '3401-01/1'
    assert "/" in first and rows[first]["field_id"] == first.replace("/", "_")
    assert all("id mapped" not in (r["note"] or "") for r in rows.values())
    # percentile terms from their columns, fixed terms on the other rows: never both
    for s in source:
        r = rows.get(s["SKIFTE_ID"])
        if r is None or r["crop"] is None:
            continue
        if s["UTL_PST"] is not None:
            assert (r["trigger_percentile"], r["exit_percentile"], r["trigger"], r["exit"]) == (20.0, 1.0, None, None)
        else:
            assert (r["trigger_percentile"], r["exit_percentile"], r["trigger"], r["exit"]) == (None, None, 0.12, 0.5)
        assert r["currency"] == "NOK"
    # the build's summary: rows in = imported + refused, by reason; the ID mapping counted, not a note
    n = len(source)
    assert f"import: {n} rows read = {n - 4} imported + 4 refused (duplicate_id 2, id_collision 2)" in stderr
    audit = json.loads((season / "season.json").read_text())["audit"]["fields_import"]
    assert audit["rows"] == n and audit["imported"] == n - 4 and audit["refused_by_reason"] == {
        "duplicate_id": 2, "id_collision": 2}
    assert audit["ids_mapped"] == 16 + 1 + 1  # the 16 'KOMMUNE-GNR/BNR' IDs, 'NO/2025/0042' and 'Ås-7'
    assert audit["notes_by_kind"]["sliver"] == 4 and not any(k.startswith("id") for k in audit["notes_by_kind"])
    assert audit["nulls"]["crop"] == 1 and audit["nulls"]["trigger"] == 0 and audit["nulls"]["insured_sum"] == 0


@pytest.mark.parametrize("name", ["fields.shp.zip", "fields.geojson"])
def test_insurer_file_in_every_format_gives_the_same_catalogue(insurer_built, insurer_raw, insurer_baseline, tmp_path,
                                                               name):
    season, _ = insurer_built
    out = tmp_path / "season"
    shutil.copytree(season, out)
    got = season_cli(*build_args(insurer_raw, out, name, insurer_baseline))
    assert got.returncode == 0, got.stderr
    assert (out / "fields.parquet").read_bytes() == (season / "fields.parquet").read_bytes()
    assert (out / "refused.parquet").read_bytes() == (season / "refused.parquet").read_bytes()


def test_strict_refuses_empty_contract_values_and_writes_nothing(insurer_raw, tmp_path):
    out = tmp_path / "season"
    got = season_cli(*build_args(insurer_raw, out, "fields.gpkg", None, "--strict"))
    assert got.returncode == 2, got.stderr
    last = got.stderr.strip().splitlines()[-1]
    assert last.startswith("season: --strict: contract values are empty: crop on 1 field(s), e.g. 'KV-GRASS'")
    assert "nothing was written" in last and not out.exists()


def test_csv_given_as_baseline_names_the_command(insurer_raw, tmp_path):
    out = tmp_path / "season"
    got = season_cli(*build_args(insurer_raw, out, "fields.gpkg", insurer_raw / "baseline_table.csv"))
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1] == (
        "season: --baseline baseline_table.csv is a table, not a baseline.parquet: make one first with "
        "`python -m app.season baseline --table baseline_table.csv --out DIR`, then give --baseline "
        "DIR/baseline.parquet")
    assert not out.exists()


def run(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def assessed(insurer_built, tmp_path_factory):
    """The whole insurer season through the batch (in the venv): (out dir, its report.json)."""
    season, _ = insurer_built
    out = tmp_path_factory.mktemp("insurer_out")
    got = run("app.batch", "run", "--data", season, "--out", out, "--workers", 1, "--quiet")
    assert got.returncode == 0, got.stderr
    return out, json.loads((out / ".batch" / "report.json").read_text())


def test_every_source_row_has_one_outcome(assessed, insurer_raw):
    """Reconciliation: rows in = assessed + explained + refused, in the result layer and the report."""
    out, report = assessed
    source = [r["SKIFTE_ID"] for r in source_rows(insurer_raw)]
    layer = pq.read_table(out / ".batch" / "season_result.parquet").to_pylist()
    assert sorted(r["source_id"] for r in layer) == sorted(source)  # one feature per source row, duplicates too
    refused = [r for r in layer if r["outcome"] == "refused"]
    assert sorted((r["source_id"], r["reason"]) for r in refused) == [
        ("KV DUP2", "id_collision"), ("KV-DUP1", "duplicate_id"), ("KV-DUP1", "duplicate_id"),
        ("KV_DUP2", "id_collision")]
    assert all(r["field_id"] is None and r["geometry"] and r["detail"] for r in refused)
    outcomes = {o: sum(r["outcome"] == o for r in layer) for o in ("assessed", "not_assessable", "insufficient_data")}
    rec = report["reconciliation"]
    assert rec == {"rows_in": len(source), "assessed": outcomes["assessed"],
                   "explained": outcomes["not_assessable"] + outcomes["insufficient_data"], "refused": 4, "open": 0,
                   "balanced": True}
    assert rec["assessed"] + rec["explained"] + rec["refused"] == len(source)
    text = (out / ".batch" / "report.txt").read_text()
    assert (f"{len(source)} = {rec['assessed']} assessed + {rec['explained']} explained + 4 refused by the import"
            in text)
    assert "refused by the import: duplicate_id (2 rows of the insurer's file)" in text
    assert "KV-SLIVER-3M" in text  # explained fields named by the insurer's ID


def test_percentile_terms_from_the_mapping_reach_the_payout(assessed, insurer_raw):
    """UTL_PST/MAKS_PST → trigger_percentile/exit_percentile → trigger and exit priced on the history
    table → the payout record; the same terms as the truth derives from the same history."""
    out, _ = assessed
    truth = {t["source_id"]: t for t in pq.read_table(insurer_raw / "truth.parquet").to_pylist()}
    layer = {r["source_id"]: r for r in pq.read_table(out / ".batch" / "season_result.parquet").to_pylist()}
    checked = 0
    for sid, t in truth.items():
        r = layer[sid]
        if t["terms"] != "percentile" or r["outcome"] != "assessed" or t["shift_days"]:
            continue
        payout = json.loads(pq.read_metadata(out / f"{r['field_id']}.parquet").metadata[b"payout"])
        assert payout["terms"] == "percentile" and payout["trigger_percentile"] == 20.0
        assert payout["trigger"] == pytest.approx(t["trigger"], abs=2e-3) and payout["exit"] == pytest.approx(
            t["exit"], abs=2e-3)
        assert (payout["amount_cents"] > 0) == (t["true_payout_fraction"] > 0.05) or abs(
            payout["index_value"] - t["trigger"]) < 0.03, (sid, payout, t)
        checked += 1
    assert checked >= 3


def test_the_insurers_id_works_everywhere(assessed, insurer_built, tmp_path):
    """`assess 3401-01/2` and `batch --fields` take the ID as the insurer wrote it; a refused row's ID
    gets its reason; the answer line shows both IDs."""
    season, _ = insurer_built
    first, second = sorted(s for s in catalogue(season) if s[:4].isdigit())[:2]  # 'KOMMUNE-GNR/BNR' IDs
    got = run("app.sure2", "assess", first, "KV-DUP1", "--data", season, "--out", tmp_path / "a")
    lines = {d["field_id"]: d for d in map(json.loads, got.stdout.splitlines())}
    assert got.returncode == 2  # one good ID assessed, one refused: exit 2 as for any bad ID
    fid = first.replace("/", "_")
    assert lines[fid]["status"] == "ok" and lines[fid]["source_id"] == first
    assert (tmp_path / "a" / f"{fid}.parquet").is_file()
    assert lines["KV-DUP1"]["status"] == "bad_input" and "refused by the season's import (duplicate_id)" in \
        lines["KV-DUP1"]["reason"]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{second}\nNO/2025/0042\n")
    got = run("app.batch", "run", "--data", season, "--out", tmp_path / "b", "--fields", ids, "--workers", 1, "--quiet")
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in (tmp_path / "b").glob("*.parquet")) == sorted(
        [second.replace("/", "_") + ".parquet", "NO_2025_0042.parquet"])


def test_slivers_are_flagged_by_the_import(insurer_built):
    season, _ = insurer_built
    rows = catalogue(season)
    for sid in ("KV-SLIVER-3M", "KV-SLIVER-6M", "KV-SLIVER-8M"):
        assert rows[sid]["note"].startswith("sliver: "), rows[sid]


@pytest.mark.xfail(strict=True, reason="needs issue-17b's coverage-weighted pixels (item 5): the integrator removes "
                                       "this mark after merging 17b")
def test_slivers_are_never_paid_AFTER_17B(assessed):
    out, _ = assessed
    layer = {r["source_id"]: r for r in pq.read_table(out / ".batch" / "season_result.parquet").to_pylist()}
    for sid in ("KV-SLIVER", "KV-SLIVER-3M", "KV-SLIVER-6M", "KV-SLIVER-8M"):
        assert layer[sid]["outcome"] == "not_assessable" and not layer[sid]["payout"], layer[sid]
