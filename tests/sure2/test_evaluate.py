"""The basis-risk report on the generated season (seed 7): the default assessment (pixel level,
automatic λ) is not worse at the payout decision than the field-mean assessment with λ = 10 it
replaced, and the report's numbers, files and errors are what an actuary gets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from app.sure2 import evaluate
from app.sure2.assess import assess_to_file
from app.sure2.outcome import ASSESSED, FieldOutcome
from app.sure2.season import Season
from app.sure2.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEFORE = Settings(lam=10.0, pixel_level=False)


def _results(outcomes):
    return {fid: evaluate.result_of_outcome(o) if isinstance(o, FieldOutcome) else evaluate.result_of(o)
            for fid, o in outcomes.items()}


@pytest.fixture(scope="module")
def reports(season_dir, truth, outcomes):
    """(default report, report of the assessment before the pixel level) with their rows."""
    with Season.open(season_dir) as season:
        results = {"now": _results(outcomes), "before": evaluate.results_in_memory(season, BEFORE)}
        rows = {k: evaluate.rows_of(season, truth, r) for k, r in results.items()}
        units = {k: evaluate.unit_rows(season, r) for k, r in results.items()}
        fingerprint = season.fingerprint
    return ((evaluate.evaluate(rows["now"], fingerprint, Settings().canonical(), units["now"]), rows["now"]),
            (evaluate.evaluate(rows["before"], fingerprint, BEFORE.canonical(), units["before"]), rows["before"]))


def test_pixel_level_and_vcurve_not_worse_at_the_payout_decision(reports):
    (now, _), (before, _) = reports
    print(f"\nseed 7 payout decisions wrong: default {now['decision']['wrong']} "
          f"({now['decision']['false_payouts']} false, {now['decision']['missed_payouts']} missed), "
          f"field mean + lambda 10: {before['decision']['wrong']} ({before['decision']['false_payouts']} false, "
          f"{before['decision']['missed_payouts']} missed)")
    assert now["decision"]["assessed"] == before["decision"]["assessed"] >= 380
    assert now["decision"]["wrong"] <= before["decision"]["wrong"]
    assert now["correlation"]["pearson"] >= before["correlation"]["pearson"] - 0.005


def test_report_numbers_are_consistent(reports, truth):
    for report, rows in reports:
        d = report["decision"]
        assert d["correct"] + d["false_payouts"] + d["missed_payouts"] == d["assessed"]
        assert d["wrong"] == len(report["wrong_fields"])
        assert d["due"] == sum(truth[r["field_id"]]["true_payout"] > 0 for r in rows)
        assert report["correlation"]["pearson"] > 0.9 and report["correlation"]["spearman"] > 0.85
        a = report["amount_error"]
        errors = [r["amount"] - r["true_amount"] for r in rows if r["assessed"]]
        assert a["mae"] == pytest.approx(np.mean(np.abs(errors)), abs=0.01)
        assert a["p5"] <= a["median"] <= a["p95"]
        for key in evaluate.GROUPS:  # every group splits the same fields
            parts = report["groups"][key].values()
            assert sum(p["decision"]["fields"] for p in parts) == d["fields"]
            assert sum(p["decision"]["false_payouts"] for p in parts) == d["false_payouts"]
        assert set(report["groups"]["damage"]) == {"healthy", "hail", "drought"}
        assert set(report["groups"]["terms"]) == {"fixed", "percentile"}
    (now, _), (before, _) = reports
    assert now["damaged_area"]["hail"]["within_tolerance"] >= 0.95
    for report in (now, before):  # the 20 area units of the generated season, against their truth
        u = report["units"]["decision"]
        assert u["fields"] == u["assessed"] == 20 and u["wrong"] <= 3, u
        assert report["units"]["correlation"]["pearson"] > 0.9
    assert before["damaged_area"] == {}  # no pixel level, no damaged area


def test_cli_on_outputs_writes_json_table_and_png(season_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with Season.open(season_dir) as season:
        ids = season.field_ids[:30]
        for fid in ids:
            assess_to_file(season, fid, out)
    r = subprocess.run([sys.executable, "-m", "app.sure2", "evaluate", "--data", str(season_dir), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "false payouts" in r.stdout and "cloudiness: clear" in r.stdout and "area units" in r.stdout
    report = json.loads((out / "basis_risk" / "basis_risk.json").read_text())
    assert report["decision"]["fields"] == 30 and report["settings"] == Settings().as_dict()
    assert (out / "basis_risk" / "basis_risk.txt").read_text() == r.stdout
    with Image.open(out / "basis_risk" / "basis_risk.png") as png:
        assert png.format == "PNG" and png.size == (1060, 520)
    page = (out / "basis_risk" / "basis_risk.html").read_text()  # the season page's style, static
    assert f"<b>{report['decision']['false_payouts']}</b><span>false payouts</span>" in page
    assert "data:image/png;base64," in page and "<script" not in page and "cloudiness: clear" in page


@pytest.mark.parametrize("case", ["no truth", "settings with --out", "no such --out", "no valid output"])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(season_dir, tmp_path, case):
    data, out = season_dir, tmp_path / "out"
    extra = []
    if case == "no truth":
        data = tmp_path / "season"
        data.mkdir()
        for name in os.listdir(season_dir):
            if name != "truth.parquet":
                os.symlink(season_dir / name, data / name)
    elif case == "settings with --out":
        out.mkdir()
        extra = ["--out", str(out), "--lambda", "10"]
    elif case == "no such --out":
        extra = ["--out", str(out)]
    else:
        out.mkdir()
        (out / "NO25-00000.parquet").write_bytes(b"not parquet")
        extra = ["--out", str(out)]
    report = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "app.sure2", "evaluate", "--data", str(data), "--report", str(report),
                        *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not report.exists()
