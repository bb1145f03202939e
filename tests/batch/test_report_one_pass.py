"""The season report reads each output once and keeps one error policy: a witness counts every open of
an output file by pyarrow (the report cannot influence it); an output torn or removed after the run
verified it is a noted row in every product (report.json/.txt, the result layer, the damage map, the
area units, the page), and the report exits 0."""

import json
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from app.batch.cli import main as batch_main
from app.sure2.output import read_footer
from tests.batch.conftest import batch_cmd


@pytest.fixture(scope="module")
def finished(reported):
    return reported


def _copy(finished, season_dir, out):
    """A copy of the finished batch whose outputs the journal vouches for again (new inodes: one report
    checks them in full and records them)."""
    import subprocess

    from tests.batch.conftest import ROOT

    shutil.copytree(finished, out)
    r = subprocess.run(batch_cmd("report", season_dir, out), check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def _count_opens(monkeypatch, out) -> Counter:
    """Every pyarrow.parquet open of a file in `out` (ParquetFile, read_metadata, read_table), by name."""
    opens = Counter()
    prefix = str(out) + "/"

    def counting(real):
        def wrapper(source, *a, **kw):
            if isinstance(source, str) and source.startswith(prefix) or getattr(source, "parent", None) == out:
                opens[str(source)[len(prefix):]] += 1
            return real(source, *a, **kw)
        return wrapper

    for name in ("ParquetFile", "read_metadata", "read_table"):
        monkeypatch.setattr(pq, name, counting(getattr(pq, name)))
    return opens


@pytest.mark.parametrize("verify", ["trusted", "full"])
def test_report_reads_every_output_exactly_once(season, season_dir, finished, tmp_path, monkeypatch, capsys, verify):
    out = tmp_path / "out"
    _copy(finished, season_dir, out)
    if verify == "full":  # no journal records to trust: each output is checked in full, on the same read
        (out / ".batch" / "journal.log").unlink()
        for snap in (out / ".batch").glob("snapshot*"):
            snap.unlink()
    journal = out / ".batch" / "journal.log"
    start = journal.stat().st_size if journal.exists() else 0
    opens = _count_opens(monkeypatch, out)
    assert batch_main(["report", "--data", str(season_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    outputs = {f"{fid}.parquet" for fid in season.field_ids}
    assert {name: n for name, n in opens.items() if name in outputs} == {name: 1 for name in outputs}
    report = json.loads((out / ".batch" / "report.json").read_text())
    assert report["engineering"]["outputs_read"] == len(outputs) and report["engineering"]["max_reads_per_field"] == 1
    assert ('"r":[[' in journal.read_text()[start:]) == (verify == "full")  # the journal vouched, or a full check


def test_same_numbers_as_the_outputs_say(season, finished):
    """report.json's money and counts against the footers read independently here."""
    report = json.loads((finished / ".batch" / "report.json").read_text())
    footers = {fid: read_footer(finished / f"{fid}.parquet") for fid in season.field_ids}
    paid = {fid: f["payout"]["amount_cents"] for fid, f in footers.items() if f["payout"] and f["payout"]["amount_cents"]}
    assert report["paid_fields"] == len(paid) > 0
    assert sum(report["payout_total_cents"].values()) == sum(paid.values())
    assert [p["field_id"] for p in report["paid"]] == sorted(paid, key=lambda f: (-paid[f], f))
    assert Counter(f["status"] for f in footers.values()) == {k: v for k, v in report["counts"].items() if v}
    assert report["insurer_rows"] == {"total": len(footers), "imported": len(footers), "refused": 0}
    text = (finished / ".batch" / "report.txt").read_text()
    top = report["paid"][0]
    assert top["field_id"] in text and f"{top['amount_cents'] / 100:,.2f}" in text
    assert "overhead" not in text and "Slowest" not in text  # engineering numbers have their own file
    assert "overhead" in (finished / ".batch" / "engineering.txt").read_text()


def test_torn_vanished_and_rotten_outputs_are_noted_rows_in_every_product(season, season_dir, finished, tmp_path):
    """Torn (half the file), vanished (removed) and rotten (a data page overwritten in place, size, inode and
    mtime kept: the journal still vouches for it, the one read finds it) outputs: exit 0, each a row that
    is not done (with why) in every product, none of their numbers used; the next plan redoes them."""
    import os
    import subprocess

    from tests.batch.conftest import ROOT

    out = tmp_path / "out"
    _copy(finished, season_dir, out)
    damaged = [fid for fid in season.field_ids if (read_footer(out / f"{fid}.parquet")["damage"] or {}).get("n_damaged")]
    torn, gone, rotten = damaged[:3]
    before = rasterio.open(next((out / ".batch").glob("damage_*.tif"))).read(1)
    units_before = {u["unit_id"]: u for u in pq.read_table(out / ".batch" / "units.parquet").to_pylist()}
    patch = read_footer(out / f"{rotten}.parquet")["damage_map"]
    data = (out / f"{torn}.parquet").read_bytes()
    (out / f"{torn}.parquet").write_bytes(data[: len(data) // 2])
    (out / f"{gone}.parquet").unlink()
    path = out / f"{rotten}.parquet"
    st = path.stat()
    with open(path, "r+b") as f:  # the first data page's bytes, in place
        f.seek(8)
        f.write(b"\xff" * 64)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    r = subprocess.run(batch_cmd("report", season_dir, out), check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / ".batch" / "report.json").read_text())
    assert set(report["engineering"]["lost"]) == {rotten}
    assert report["counts"]["remaining"] == 3
    layer = {row["field_id"]: row for row in pq.read_table(out / ".batch" / "season_result.parquet").to_pylist()}
    assert {fid: layer[fid]["state"] for fid in (torn, gone, rotten)} == dict.fromkeys((torn, gone, rotten), "remaining")
    assert layer[torn]["reason"].startswith("output invalid: unreadable footer")
    assert layer[rotten]["reason"].startswith("output lost since verified: corrupt data page")
    assert "outputs lost since verified: 1" in (out / ".batch" / "engineering.txt").read_text()
    after = rasterio.open(next((out / ".batch").glob("damage_*.tif"))).read(1)
    r0, c0, h, w = patch["row0"], patch["col0"], patch["height"], patch["width"]
    assert (before[r0:r0 + h, c0:c0 + w] > 0).any() and not np.array_equal(before, after)
    units = {u["unit_id"]: u for u in pq.read_table(out / ".batch" / "units.parquet").to_pylist()}
    assert sum(u["n_assessed"] for u in units.values()) == sum(u["n_assessed"] for u in units_before.values()) - 3
    page = (out / ".batch" / "report.html").read_text()
    data = json.loads(page.split('id="season-data">', 1)[1].split("</script>", 1)[0])
    states = dict(zip(data["fields"]["id"], data["fields"]["state"]))
    assert {states[f] for f in (torn, gone, rotten)} == {"remaining"}
    assert not {torn, gone, rotten} & set(data["evidence"])
    plan = subprocess.run(batch_cmd("plan", season_dir, out, "--verify", "full"), check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert set(plan.stdout.split()) == {torn, gone, rotten}, plan.stderr


def test_a_national_season_page_keeps_its_largest_payouts_and_every_count(season, season_dir, finished, tmp_path,
                                                                         monkeypatch, capsys):
    """Above INLINE_FIELDS the page holds the SHOWN_LARGE largest payouts (bounded memory and size); its
    counts and totals still cover every field."""
    from app.batch import page, report

    out = tmp_path / "out"
    _copy(finished, season_dir, out)
    monkeypatch.setattr(report, "INLINE_FIELDS", 10)
    monkeypatch.setattr(page, "INLINE_FIELDS", 10)
    monkeypatch.setattr(report, "SHOWN_LARGE", 5)
    assert batch_main(["report", "--data", str(season_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    html = (out / ".batch" / "report.html").read_text()
    data = json.loads(html.split('id="season-data">', 1)[1].split("</script>", 1)[0])
    footers = {fid: read_footer(out / f"{fid}.parquet") for fid in season.field_ids}
    cents = {fid: f["payout"]["amount_cents"] for fid, f in footers.items() if f["payout"] and f["payout"]["amount_cents"]}
    largest = sorted(cents, key=lambda f: (cents[f], f))[-5:]
    assert sorted(data["fields"]["id"]) == sorted(largest) == sorted(data["evidence"])
    assert data["large"] == {"fields": len(season.field_ids), "shown": 5}
    assert data["report"]["paid_fields"] == len(cents) and sum(data["report"]["payout_total_cents"].values()) == sum(cents.values())
