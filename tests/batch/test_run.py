"""The batch's CLI contract: plan/status/report, bad IDs, failing fields, exit codes, the report."""

import json
import shutil
import subprocess

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from app.hpc.cores import physical_cores
from app.sure2.output import read_footer
from tests.batch.conftest import ROOT, assert_complete, attempts, batch_cmd, run_batch, valid_fields


def cli(command, data, out, *extra, **kw):
    return subprocess.run(batch_cmd(command, data, out, *extra), cwd=ROOT, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def finished(season, season_dir, tmp_path_factory):
    """One complete run over the whole season (shared by the read-only tests below)."""
    out = tmp_path_factory.mktemp("finished")
    done = run_batch(season_dir, out, workers=0)  # 0: the default, physical cores
    assert done.returncode == 0, done.stderr
    return out, done


def test_report_counts_payouts_and_map(season, finished):
    out, done = finished
    report = json.loads((out / ".batch" / "report.json").read_text())
    n = len(season.field_ids)
    run = report["run"]
    assert run["requested"] == n and run["done"] == n and run["remaining"] == run["failed"] == 0
    counts = report["counts"]
    assert report["season"]["fields"] == n == sum(counts.values())
    assert counts["remaining"] == counts["failed"] == counts["given_up"] == 0
    # the total is the sum, in cents, of what the outputs themselves say
    footers = [read_footer(out / f"{fid}.parquet") for fid in season.field_ids]
    cents = [f["payout"]["amount_cents"] for f in footers if f["payout"]]
    assert report["payout_total"] == {"NOK": sum(cents) / 100} and sum(cents) > 0  # damaged fields pay
    assert report["paid_fields"] == sum(c > 0 for c in cents)
    assert counts["assessed"] == sum(f["status"] == "assessed" for f in footers)
    assert run["workers"] == physical_cores()
    assert len(run["slowest"]) == 10 and run["slowest"][0]["seconds"] >= run["slowest"][-1]["seconds"]
    table = (out / ".batch" / "report.txt").read_text()
    assert "total payout NOK" in table and "Slowest fields" not in table  # for people; engineering apart:
    assert "Slowest fields" in (out / ".batch" / "engineering.txt").read_text()
    png = (out / ".batch" / "payout_map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "batch: plan requested" in done.stderr and f"{n}/{n}" in done.stderr  # plain progress lines


def test_rerun_does_nothing_and_plan_is_empty(season, season_dir, finished):
    out, _ = finished
    before = attempts(out)
    plan = cli("plan", season_dir, out)
    assert plan.returncode == 0 and plan.stdout == ""
    again = run_batch(season_dir, out)
    assert again.returncode == 0, again.stderr
    assert attempts(out) == before  # valid outputs are never redone


def test_status_reports_without_changing_anything(season, season_dir, finished):
    out, _ = finished
    status = cli("status", season_dir, out, "--json")
    assert status.returncode == 0, status.stderr
    s = json.loads(status.stdout)
    assert s["valid"] == len(season.field_ids) and s["todo"] == 0 and s["live_runs"] == 0


def test_bad_ids_in_a_list_are_reported_and_the_rest_done(season, season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    good = season.field_ids[:3]
    bad = ["../../etc/passwd", "NO25-99999", "a b", "x" * 200]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join([good[0], *bad, good[1], good[2], good[0]]) + "\n")
    run = run_batch(season_dir, out, "--fields", ids)
    assert run.returncode == 1, run.stderr
    assert valid_fields(season, out) == set(good)
    assert sorted(p.name for p in out.iterdir()) == sorted([".batch"] + [f"{g}.parquet" for g in good])
    report = json.loads((out / ".batch" / "report.json").read_text())
    assert set(report["run"]["bad_ids"]) == set(bad)
    assert report["run"]["requested"] == 7 and report["run"]["done"] == 3


@pytest.fixture
def broken_season(season_dir, season, tmp_path):
    """A copy of the season whose first field has an impossible contract (exit == trigger)."""
    copy = tmp_path / "season"
    shutil.copytree(season_dir, copy)
    table = pq.read_table(copy / "fields.parquet")
    victim = season.field_ids[0]
    is_victim = pc.equal(table["field_id"], victim)
    fixed = pc.if_else(is_victim, table["trigger"], table["exit"])
    table = table.set_column(table.schema.get_field_index("exit"), "exit", fixed)
    pq.write_table(table, copy / "fields.parquet")
    return copy, victim


def test_an_impossible_contract_is_the_fields_explained_outcome_not_a_failure(season, broken_season, tmp_path):
    from app.sure2.output import read_footer

    data, victim = broken_season
    out = tmp_path / "out"
    first = run_batch(data, out, "--max-failures", 2)
    assert first.returncode == 0, first.stderr  # every field ended assessed or explained
    footer = read_footer(out / f"{victim}.parquet")
    assert (footer["status"], footer["reason"]) == ("not_assessable", "bad_contract")
    assert "must satisfy 0 <= trigger < exit" in footer["coverage"]["detail"] and footer["payout"] is None
    assert attempts(out)[victim] == 1  # assessed once: a durable outcome, never retried
    report = json.loads((out / ".batch" / "report.json").read_text())
    assert report["failures"] == [] and report["counts"]["failed"] == 0
    assert [e["field_id"] for e in report["explained"]["bad_contract"]] == [victim]

    second = run_batch(data, out, "--max-failures", 2)
    assert second.returncode == 0 and attempts(out)[victim] == 1


def test_usage_errors_exit_2_with_one_line_and_write_nothing(season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for extra in (["--workers", "-1"], ["--backend", "apptainer"], ["--chunk", "0"], ["--bogus"]):
        r = cli("run", season_dir, out, *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == []


def test_environment_failures_exit_3_and_write_nothing(season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    missing = cli("run", tmp_path / "no-season", out)
    assert missing.returncode == 3 and "does not exist" in missing.stderr
    bad_temp = subprocess.run(batch_cmd("run", season_dir, out), cwd=ROOT, capture_output=True, text=True,
                              env={**__import__("os").environ, "APP_TMPDIR": str(tmp_path / "nowhere")})
    assert bad_temp.returncode == 3 and "temp dir" in bad_temp.stderr
    assert list(out.iterdir()) == []
    assert cli("status", season_dir, tmp_path / "no-out").returncode == 3  # looks only: nothing created
    assert not (tmp_path / "no-out").exists()


def test_report_command_over_all_runs(season, season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(season.field_ids[:5]))
    assert run_batch(season_dir, out, "--fields", ids).returncode == 0
    r = cli("report", season_dir, out)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / ".batch" / "report.json").read_text())
    assert report["counts"]["remaining"] == len(season.field_ids) - 5
    assert sum(report["counts"][s] for s in ("assessed", "not_assessable", "insufficient_data")) == 5
    assert "Season report" in r.stdout


def test_whole_season_resume_after_partial_list(season, season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(season.field_ids[::4]))
    assert run_batch(season_dir, out, "--fields", ids).returncode == 0
    assert run_batch(season_dir, out).returncode == 0
    assert_complete(season, out)
    assert set(attempts(out).values()) == {1}
