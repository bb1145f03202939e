"""The season page in a real browser (Debian's chromium, network off, from a file:// URL): no console
error and no request but the page itself; the map draws every field; filtering the table to paid fields
shows as many rows as the outputs have payouts; a click on a field on the map shows its evidence with
the numbers in its output; insurer strings stay text (an ID `<img src=x onerror=alert(1)>`, a note with
`"` and `</script>`): no element is made from them, no script runs. Screenshots go to
test-artifacts/browser/."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import shapely.affinity

from app.sure2.output import read_footer, read_output
from app.sure2.season import REFUSED, REFUSED_SCHEMA
from tests.batch.browser import (
    console_errors,
    load_page,
    open_chromium,
    requested_urls,
    screenshot,
)
from tests.batch.conftest import run_batch

pytestmark = pytest.mark.browser

HOSTILE_ID = "<img src=x onerror=alert(1)>"
HOSTILE_NOTE = 'a "quoted" note </script><script>alert(2)</script>'
ODD_ID = "Åker \"nord\" & </script>"


@pytest.fixture(scope="module")
def page(season_dir, tmp_path_factory):
    """A season whose insurer's file holds hostile strings, run as a batch; (OUT, season dir, fields)."""
    root = tmp_path_factory.mktemp("page")
    data = root / "season"
    shutil.copytree(season_dir, data)
    fields = pq.read_table(data / "fields.parquet")
    ids = fields.column("field_id").to_pylist()
    source = list(ids)
    source[0], source[1] = HOSTILE_ID, ODD_ID
    notes = fields.column("note").to_pylist()
    notes[2] = HOSTILE_NOTE
    fields = fields.set_column(fields.column_names.index("source_id"), "source_id", pa.array(source, pa.string()))
    fields = fields.set_column(fields.column_names.index("note"), "note", pa.array(notes, pa.string()))
    pq.write_table(fields, data / "fields.parquet")
    # two rows the import refused (issue 17a's SEASON/refused.parquet): a duplicate with a geometry, no ID
    near = shapely.affinity.translate(shapely.from_wkb(fields.column("geometry")[3].as_py()), xoff=0.002)
    pq.write_table(pa.table({"source_id": [HOSTILE_ID, None], "row": [61, 62], "reason": ["duplicate_id", "no_id"],
                             "detail": ["the ID of row 1 again", 'no ID in column "SKIFTE_ID" </script>'],
                             "geometry": [shapely.to_wkb(near), None]}, schema=REFUSED_SCHEMA), data / REFUSED)
    out = root / "out"
    r = run_batch(data, out)
    assert r.returncode == 0, r.stderr
    return out, data, ids


@pytest.fixture(scope="module")
def chrome(chromium):
    driver = open_chromium(*chromium)
    yield driver
    driver.quit()


def _footers(out, ids):
    return {fid: read_footer(out / f"{fid}.parquet") for fid in ids}


def test_page_loads_offline_and_draws_every_field(page, chrome):
    out, _, ids = page
    ready_ms = load_page(chrome, out / ".batch" / "report.html")
    shot = screenshot(chrome, "season_page")
    assert chrome.execute_script("return window.seasonPage.onMap()") == len(ids)
    assert chrome.execute_script("return window.seasonPage.features") == len(ids)
    assert console_errors(chrome) == []
    urls = requested_urls(chrome)
    assert urls and all(u.startswith("file://") for u in urls), urls
    assert chrome.execute_script("return window.__alerts") == []
    assert shot.stat().st_size > 20_000
    print(f"page ready in {ready_ms:.0f} ms ({len(ids)} fields)")


def test_filter_to_paid_shows_the_paid_count(page, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out, _, ids = page
    load_page(chrome, out / ".batch" / "report.html")
    paid = sum(1 for f in _footers(out, ids).values() if f["payout"] and f["payout"]["amount_cents"])
    assert paid > 0
    Select(chrome.find_element(By.ID, "filter-outcome")).select_by_value("paid")
    assert chrome.find_element(By.ID, "row-count").get_attribute("data-count") == str(paid)
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#rows tr")) == paid
    screenshot(chrome, "filtered_paid")
    Select(chrome.find_element(By.ID, "filter-outcome")).select_by_value("")
    assert chrome.find_element(By.ID, "row-count").get_attribute("data-count") == str(len(ids))


def test_a_click_on_the_map_shows_the_fields_evidence_from_its_output(page, chrome):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    out, _, ids = page
    footers = _footers(out, ids)
    fid = max((f for f in ids if footers[f]["damage_map"] and footers[f]["payout"]),
              key=lambda f: footers[f]["payout"]["amount_cents"])
    load_page(chrome, out / ".batch" / "report.html")
    search = chrome.find_element(By.ID, "filter-text")
    search.send_keys(fid)  # only this field stays on the map, so the click cannot hit a neighbour
    x, y = chrome.execute_script("return window.seasonPage.pointOf(arguments[0])", fid)
    the_map = chrome.find_element(By.ID, "map")
    size = the_map.size
    ActionChains(chrome).move_to_element_with_offset(the_map, x - size["width"] / 2, y - size["height"] / 2).click().perform()
    evidence = chrome.find_element(By.ID, "evidence")
    assert evidence.get_attribute("data-field") == fid
    screenshot(chrome, "evidence")
    payout, damage = footers[fid]["payout"], footers[fid]["damage"]
    text = lambda i: chrome.find_element(By.ID, i).get_attribute("textContent")
    assert text("ev-amount-cents") == str(payout["amount_cents"])
    assert text("ev-index") == f"{payout['index_value']:.6f}"
    assert f"= {payout['fraction']:.6f}" in text("ev-arith") and f"{payout['insured_sum_cents']:,} cents" in text("ev-arith")
    read = read_output(out / f"{fid}.parquet")
    observed = int(np.isfinite(read.columns["ndvi_mean"]).sum())
    circles = lambda role: len(chrome.find_elements(By.CSS_SELECTOR, f"#ev-chart circle[data-role={role}]"))
    assert (circles("clear"), circles("cloudy")) == (observed, len(read.columns["date"]) - observed)
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#ev-chart [data-role=window]")) == 1
    assert f"{damage['damaged_ha']:.2f} ha" in text("ev-damage")
    assert chrome.execute_script("return document.getElementById('ev-dmap').width") > 0
    assert console_errors(chrome) == []


def test_insurer_strings_are_text_never_markup(page, chrome):
    from selenium.webdriver.common.by import By

    out, _, ids = page
    load_page(chrome, out / ".batch" / "report.html")
    assert chrome.execute_script("return document.querySelectorAll('img').length") == 0
    assert chrome.execute_script("return document.querySelectorAll('script').length") == 3  # data + 2 inlined
    cells = [td.get_attribute("textContent") for td in chrome.find_elements(By.CSS_SELECTOR, "#rows td:first-child")]
    assert HOSTILE_ID in cells and ODD_ID in cells
    for row_id in (ids[0], ids[2]):
        chrome.find_element(By.CSS_SELECTOR, f"#rows tr[data-field='{row_id}']").click()
        assert chrome.find_element(By.ID, "evidence").get_attribute("data-field") == row_id
    assert HOSTILE_NOTE in chrome.find_element(By.ID, "evidence").get_attribute("textContent")
    chrome.find_element(By.CSS_SELECTOR, f"#rows tr[data-field='{ids[0]}']").click()
    assert chrome.find_element(By.ID, "ev-title").get_attribute("textContent") == HOSTILE_ID
    screenshot(chrome, "hostile_strings")
    assert chrome.find_element(By.ID, "total-rows").get_attribute("textContent") == str(len(ids) + 2)
    refused = chrome.find_element(By.ID, "refused").get_attribute("textContent")
    assert "duplicate_id (1)" in refused and "no_id (1)" in refused and f"row 61: {HOSTILE_ID}" in refused
    assert 'no ID in column "SKIFTE_ID" </script>' in refused
    assert "The rows add up" in chrome.find_element(By.ID, "reconcile-check").get_attribute("textContent")
    assert chrome.execute_script("return window.__alerts") == []
    assert console_errors(chrome) == []


def test_a_national_season_page_draws_its_largest_payouts(page, chrome, tmp_path, monkeypatch, capsys):
    from app.batch import page as page_module
    from app.batch import report
    from app.batch.cli import main as batch_main

    out, data, ids = page
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    monkeypatch.setattr(report, "INLINE_FIELDS", 10)
    monkeypatch.setattr(page_module, "INLINE_FIELDS", 10)
    monkeypatch.setattr(report, "SHOWN_LARGE", 5)
    assert batch_main(["report", "--data", str(data), "--out", str(copy)]) == 0
    capsys.readouterr()
    load_page(chrome, copy / ".batch" / "report.html")
    assert chrome.execute_script("return window.seasonPage.onMap()") == 5
    assert "national season" in chrome.find_element("id", "large-note").get_attribute("textContent")
    assert chrome.find_element("id", "total-rows").get_attribute("textContent") == str(len(ids) + 2)
    screenshot(chrome, "national_mode")
    assert console_errors(chrome) == []


def test_explained_fields_show_their_reason_and_evidence_without_errors(season_dir, chrome, tmp_path):
    """Every kind of explained field (no geometry, outside the raster, a sliver, a bad contract, too few
    observations, ...): grouped by reason on the page, each row opens its evidence, no script error."""
    from selenium.webdriver.common.by import By

    from tests.sure2.bad_fields import inject_bad_fields

    data = tmp_path / "season"
    shutil.copytree(season_dir, data)
    bad = inject_bad_fields(data)
    out = tmp_path / "out"
    r = run_batch(data, out)
    assert r.returncode == 0, r.stderr
    load_page(chrome, out / ".batch" / "report.html")
    explained = chrome.find_element(By.ID, "explained").get_attribute("textContent")
    for fid, (_, status, reason) in bad.items():
        assert f"{status}: {reason}" in explained
        chrome.find_element(By.CSS_SELECTOR, f"#rows tr[data-field='{fid}']").click()
        assert chrome.find_element(By.ID, "evidence").get_attribute("data-field") == fid
        assert reason in chrome.find_element(By.ID, "evidence").get_attribute("textContent")
    screenshot(chrome, "explained")
    assert console_errors(chrome) == []
