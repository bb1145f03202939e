"""Resumable builds and dirty scene catalogues: valid stacks skipped, broken ones rebuilt, an unusable
item or a truncated COG skipped with its reason (the season still ends), --part builds a share."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from app.season.offset import Evidence, decide
from app.season.scenes import Asset, Scene
from season_helpers import build_args, season_cli
from tests.code_copy import app_copy, change_module


@pytest.fixture
def scenes_copy(raw, tmp_path):
    """A private copy of the raw inputs to break."""
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    return copy


def test_rerun_skips_valid_stacks_and_rebuilds_a_broken_one(built, raw, baseline, tmp_path):
    season, _ = built
    out = tmp_path / "season"
    shutil.copytree(season, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("ndvi_*.tif")}
    got = season_cli(*build_args(raw, out, "fields.gpkg", baseline))
    assert got.returncode == 0 and got.stderr.count("valid, skipped") == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("ndvi_*.tif")} == stamps
    want = json.loads((season / "season.json").read_text())["fingerprint"]
    assert json.loads((out / "season.json").read_text())["fingerprint"] == want

    broken = out / "ndvi_utm33.tif"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # a torn copy
    got = season_cli(*build_args(raw, out, "fields.gpkg", baseline))
    assert got.returncode == 0, got.stderr
    assert "stack utm32: valid, skipped" in got.stderr and "stack utm33: built" in got.stderr
    assert json.loads((out / "season.json").read_text())["fingerprint"] == want  # the same bytes again


def test_stacks_of_other_import_code_are_rebuilt_and_a_build_side_change_keeps_them(built, raw, baseline, tmp_path):
    """The real build from a copy of the code: the season's bookkeeping changed → stacks kept; the
    NDVI import changed (other bytes, same results) → both stacks rebuilt, to the same NDVI."""
    season, _ = built
    out = tmp_path / "season"
    shutil.copytree(season, out)
    root = app_copy(tmp_path / "code")
    change_module(root, "app/season/builder.py")
    got = season_cli(*build_args(raw, out, "fields.gpkg", baseline), cwd=root)
    assert got.returncode == 0 and got.stderr.count("valid, skipped") == 2, got.stderr
    change_module(root, "app/season/offset.py")
    got = season_cli(*build_args(raw, out, "fields.gpkg", baseline), cwd=root)
    assert got.returncode == 0, got.stderr
    assert "stack utm32: built" in got.stderr and "stack utm33: built" in got.stderr
    assert "valid, skipped" not in got.stderr
    for stack in ("ndvi_utm32.tif", "ndvi_utm33.tif"):  # a new stack (its tag names the new code), same NDVI
        with rasterio.open(season / stack) as before, rasterio.open(out / stack) as after:
            assert before.tags()["SEASON_STACK_INPUTS"] != after.tags()["SEASON_STACK_INPUTS"]
            assert np.array_equal(before.read(), after.read())


def test_unusable_items_are_skipped_with_their_reason(scenes_copy, tmp_path):
    items = sorted((scenes_copy / "scenes").glob("S2*_MSIL2A_*T33VUG*.json"))
    missing, truncated = items[10], items[20]
    doc = json.loads(missing.read_text())
    (scenes_copy / "scenes" / doc["assets"]["B08"]["href"]).unlink()
    cog = scenes_copy / "scenes" / json.loads(truncated.read_text())["assets"]["B04"]["href"]
    cog.write_bytes(cog.read_bytes()[:4096])
    (scenes_copy / "scenes" / "junk.json").write_text("{not json")
    (scenes_copy / "scenes" / "collection.json").unlink()
    out = tmp_path / "season"
    got = season_cli(*build_args(scenes_copy, out))
    assert got.returncode == 0, got.stderr
    audit = json.loads((out / "season.json").read_text())["audit"]
    skipped = {s["id"] or s["source"]: s["reason"] for s in audit["scenes"]["skipped"]}
    skipped.update({s["id"]: s["reason"] for s in audit["stacks"]["utm33"]["skipped_scenes"]})
    assert "nir asset file" in skipped[doc["id"]] and "does not exist" in skipped[doc["id"]]
    truncated_id = json.loads(truncated.read_text())["id"]
    assert truncated_id in skipped, skipped
    assert any("unreadable JSON" in r for r in skipped.values())
    assert truncated_id not in [s["id"] for s in audit["stacks"]["utm33"]["scenes"]]


def test_part_builds_its_share_and_the_season_appears_with_the_last(raw, tmp_path):
    out = tmp_path / "season"
    first = season_cli(*build_args(raw, out), "--part", "2/2")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {} and json.loads(first.stdout)["complete"] is False
    assert (out / "ndvi_utm33.tif").is_file() and not (out / "ndvi_utm32.tif").exists()
    assert not (out / "season.json").exists()
    second = season_cli(*build_args(raw, out), "--part", "1/2")
    assert second.returncode == 0 and json.loads(second.stdout)["complete"] is True
    assert "stack utm33" not in second.stderr.replace("stack utm33: valid", "")  # not built twice
    assert pq.read_table(out / "baseline.parquet").num_rows == 0  # no --baseline: an empty one


@pytest.mark.parametrize("args, message", [
    (["--part", "3/2"], "--part 3/2"), (["--mask-scl", "3,x"], "--mask-scl"), (["--mask-scl", "12"], "0-11"),
])
def test_bad_options_are_bad_input(raw, tmp_path, args, message):
    out = tmp_path / "season"
    got = season_cli(*build_args(raw, out), *args)
    assert got.returncode == 2 and message in got.stderr and not out.exists()


def _scene(**kw):
    import datetime as dt

    import shapely

    base = dict(id="S2X", source="x.json", acquired=dt.datetime(2025, 6, 1, 10, 30, tzinfo=dt.timezone.utc),
                solar_day=dt.date(2025, 6, 1), footprint=shapely.box(11, 60, 12, 61), crs="EPSG:32633",
                transform=(10, 0, 0, 0, -10, 0), width=1, height=1,
                assets={"red": Asset(None), "nir": Asset(None)}, processing_baseline="05.11")
    return Scene(**{**base, **kw})


def test_offset_metadata_precedence_and_inconclusive_values():
    bright = Evidence(clear=10_000, below=10, vegetation=100)  # snow/bare soil: values cannot tell
    assert decide(_scene(), bright).offset_dn == 1000 and decide(_scene(), bright).verdict == "inconclusive"
    assert decide(_scene(processing_baseline="03.01"), bright).offset_dn == 0
    assert decide(_scene(offset_applied_flag=True), bright).offset_dn == 0
    flagged = _scene(assets={"red": Asset(None, scale=1e-4, offset=-0.1), "nir": Asset(None, 1e-4, -0.1)},
                     processing_baseline="03.01")
    assert decide(flagged, bright).offset_dn == 1000  # raster:bands wins over the baseline
    few = Evidence(clear=100, below=90, vegetation=50)
    assert decide(_scene(), few).offset_dn == 1000 and "clear pixels" in decide(_scene(), few).reason
    dark = Evidence(clear=10_000, below=4_000, vegetation=6_000)  # vegetation red < 1000 DN: no offset
    d = decide(_scene(), dark)
    assert d.offset_dn == 0 and d.verdict == "contradicts" and d.metadata_offset_dn == 1000
