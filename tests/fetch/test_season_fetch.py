"""`app.season fetch` against a real STAC API (rustac) and real nginx on loopback, through a fault proxy:
bit-identical builds, faults, kill -9 + resume, a changed remote object, an unreachable catalogue."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fetch_world import PAST_YEAR, ROOT, cli


def tif_digests(scenes: Path) -> dict:
    return {str(p.relative_to(scenes)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(scenes.rglob("*.tif"))}


def stacks_equal(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "season.json").read_text()) for d in (a, b))
    assert ma["stacks"].keys() == mb["stacks"].keys()
    for name, entry in ma["stacks"].items():
        with rasterio.open(a / entry["file"]) as x, rasterio.open(b / mb["stacks"][name]["file"]) as y:
            assert x.tags()["ACQUISITION_DATES"] == y.tags()["ACQUISITION_DATES"]
            assert (x.transform, x.shape, x.count) == (y.transform, y.shape, y.count)
            xa, ya = x.read(), y.read()
            assert np.array_equal(xa, ya), name
            assert (xa != -32768).mean() > 0.05  # the stacks hold data, not only nodata
    assert ma["files"]["fields.parquet"] == mb["files"]["fields.parquet"]


@pytest.fixture(scope="session")
def fetched(world):
    """One fetch without faults: (SCENES dir, summary)."""
    out = world.tmp / "fetched"
    got = world.fetch(out)
    assert got.returncode == 0, got.stderr
    return out, json.loads(got.stdout)


def test_fetch_builds_the_same_stacks_as_the_full_files_from_a_fraction_of_the_bytes(world, fetched):
    out, summary = fetched
    n_items = len(json.loads((world.raw / "scenes" / "collection.json").read_text())["features"])
    assert summary["fetched"] == n_items and summary["failed"] == 0 and summary["skipped"] == 0
    assert summary["tile_bytes"] < 0.8 * summary["full_assets_bytes"]  # only the blocks the fields touch
    season = world.tmp / "season_fetched"
    got = world.build(out / "2025" / "collection.json", season)
    assert got.returncode == 0, got.stderr
    stacks_equal(world.reference, season)
    # provenance: the remote href, its ETag and what was fetched, in every local asset
    item = json.loads(next((out / "2025").glob("*/item.json")).read_text())
    for asset in item["assets"].values():
        assert asset["fetch:source_href"].startswith(world.proxy.url)
        assert asset["fetch:etag"] and asset["fetch:sha256"] and asset["fetch:tiles"]
        assert len(asset["fetch:tiles"]) <= asset["fetch:tiles_total"]
        assert (out / "2025" / item["id"] / asset["href"]).stat().st_size == asset["file:size"]
    assert not [p for p in out.rglob("*") if ".tmp." in p.name]


def test_every_injected_fault_is_retried_and_the_bytes_are_the_same(world, fetched):
    out = world.tmp / "faulty"
    faults = {"503": 4, "429": 1, "reset": 2, "truncate": 2, "stall": 1}
    before = dict(world.proxy.injected)
    for kind, n in faults.items():
        world.proxy.arm(kind, n, ".tif", 1)  # 429 with Retry-After: 1
    got = world.fetch(out)
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    injected = {k: world.proxy.injected.get(k, 0) - before.get(k, 0) for k in faults}
    assert injected == faults
    assert summary["retries"] == {"http_503": 4, "http_429": 1, "reset": 2, "truncated": 2, "timeout": 1}
    assert summary["retry_wait_s"] >= 1.0  # Retry-After: 1 was honoured (other backoffs are ≤ 0.02 × 2^k)
    assert tif_digests(out) == tif_digests(fetched[0])
    assert "retries" in got.stderr.splitlines()[-1]


def test_kill_9_mid_fetch_then_resume_gives_the_same_bytes(world, fetched):
    out = world.tmp / "killed"
    world.proxy.latency_s = 0.1
    try:
        args = [sys.executable, "-m", "app.season", "fetch", "--fields", world.raw / "fields.gpkg", "--mapping",
                world.raw / "mapping.toml", "--out", out, "--catalog", world.stac.url, "--allow-host", world.proxy.url,
                "--workers", 2]
        proc = subprocess.Popen(list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 120
        while time.monotonic() < end and len(list(out.glob("2025/*/item.json"))) < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        world.proxy.latency_s = 0.0
    done_before = len(list(out.glob("2025/*/item.json")))
    n_items = len(json.loads((world.raw / "scenes" / "collection.json").read_text())["features"])
    assert 2 <= done_before < n_items
    got = world.fetch(out)
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    assert summary["already_fetched"] == done_before and summary["fetched"] == n_items - done_before
    assert tif_digests(out) == tif_digests(fetched[0])
    assert not [p for p in out.rglob("*") if ".tmp." in p.name]
    assert summary["tile_bytes"] < fetched[1]["tile_bytes"]  # the finished items were not fetched again


def test_a_changed_remote_object_is_fetched_again(world, fetched):
    out = world.tmp / "changed"
    assert world.fetch(out).returncode == 0
    items = sorted((out / "2025").glob("*/item.json"))
    victim = json.loads(items[0].read_text())
    remote = world.raw / "scenes" / victim["id"] / "B04.tif"
    stat = remote.stat()
    os.utime(remote, (stat.st_atime, stat.st_mtime + 60))  # nginx's ETag is mtime-size: a new object
    got = world.fetch(out)
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    assert summary["fetched"] == 1 and summary["already_fetched"] == len(items) - 1
    etag = json.loads(items[0].read_text())["assets"]["red"]["fetch:etag"]
    assert etag != victim["assets"]["red"]["fetch:etag"]


def test_an_unreachable_catalogue_is_one_line_and_exit_3(world, tmp_path):
    got = world.fetch(tmp_path / "out", "--retries", 1, catalog="http://127.0.0.1:9")
    assert got.returncode == 3
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "catalogue http://127.0.0.1:9" in lines[0] and "refused" in lines[0]


def test_bad_usage_is_exit_2_and_writes_nothing(world, tmp_path):
    out = tmp_path / "out"
    got = cli("app.season", "fetch", "--fields", world.raw / "fields.gpkg", "--out", out, "--catalog", world.stac.url)
    assert got.returncode == 2 and "--mapping" in got.stderr and not out.exists()
    got = world.fetch(out, "--years", "20x5")
    assert got.returncode == 2 and not out.exists()


def test_a_built_season_as_fields_fetches_the_same_tiles(world, fetched, tmp_path):
    out = tmp_path / "from_season"
    got = cli("app.season", "fetch", "--fields", world.reference, "--years", 2025, "--out", out, "--catalog",
              world.stac.url, "--allow-host", world.proxy.url, "--workers", 4)
    assert got.returncode == 0, got.stderr
    assert tif_digests(out) == tif_digests(fetched[0])
    got = cli("app.season", "fetch", "--fields", world.reference, "--out", tmp_path / "x", "--catalog", world.stac.url)
    assert got.returncode == 2 and "--years" in got.stderr and not (tmp_path / "x").exists()


def test_planetary_computer_signing_signs_requests_and_keeps_tokens_out_of_the_items(world, fetched, tmp_path,
                                                                                     monkeypatch):
    """--sign planetary-computer against a token endpoint on loopback (the real one is not reachable here)."""
    import http.server
    import threading

    from app.fetch import stac
    from app.season.cli import build_parser
    from app.season.fetch import fetch_season

    class Token(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"token": "st=2026&sig=SECRET" if self.path.endswith("/sentinel-2-l2a") else ""}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sign = f"http://127.0.0.1:{server.server_port}/api/sas/v1/token/{{collection}}"
    monkeypatch.setitem(stac.PRESETS["planetary-computer"], "sign", sign)
    out = tmp_path / "signed"
    args = build_parser().parse_args(["fetch", "--fields", str(world.raw / "fields.gpkg"), "--mapping",
                                      str(world.raw / "mapping.toml"), "--out", str(out), "--catalog", world.stac.url,
                                      "--allow-host", world.proxy.url, "--sign", "planetary-computer", "--workers", "4"])
    start = len(world.proxy.paths)
    try:
        summary, failed = fetch_season(args, log=lambda msg: None)
    finally:
        server.shutdown()
    assert failed == 0 and summary["fetched"] == fetched[1]["fetched"]
    asked = world.proxy.paths[start:]
    assert asked and all(p.endswith(".tif?st=2026&sig=SECRET") for p in asked)
    assert tif_digests(out) == tif_digests(fetched[0])
    assert "SECRET" not in "".join(p.read_text() for p in out.rglob("*.json"))  # hrefs kept unsigned


@pytest.mark.container
def test_fetch_runs_inside_the_season_image_with_nothing_but_binds(world, fetched, season_sif, tmp_path):
    """What a login node runs: bash + apptainer only, the fetch inside season.sif."""
    out = tmp_path / "scenes"
    out.mkdir()
    got = subprocess.run(["apptainer", "run", "--containall", "--cleanenv", "--bind", f"{world.raw}:/in:ro",
                          "--bind", f"{out}:/scenes", str(season_sif), "fetch", "--fields", "/in/fields.gpkg",
                          "--mapping", "/in/mapping.toml", "--out", "/scenes", "--catalog", world.stac.url,
                          "--allow-host", world.proxy.url, "--workers", "4"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert got.returncode == 0, got.stderr
    assert tif_digests(out) == tif_digests(fetched[0])


def test_past_years_land_in_their_own_directories_and_build(world, fetched, tmp_path):
    out = tmp_path / "years"
    got = world.fetch(out, "--years", f"{PAST_YEAR}-2025")
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    past = json.loads((world.raw / "scenes" / "past" / "collection.json").read_text())["features"]
    assert summary["years"][str(PAST_YEAR)]["fetched"] == len(past) and "fetched" not in summary["years"]["2024"]
    assert tif_digests(out / "2025") == tif_digests(fetched[0] / "2025")
    for year_dir, n in ((out / str(PAST_YEAR), len(past)), (out / "2025", None)):
        items = json.loads((year_dir / "collection.json").read_text())["features"]
        assert n is None or len(items) == n
        assert {i["properties"]["datetime"][:4] for i in items} == {year_dir.name}
    # the past year builds to the same stacks as its full files
    full, mine = tmp_path / "past_full", tmp_path / "past_fetched"
    assert world.build(world.raw / "scenes" / "past" / "collection.json", full).returncode == 0
    assert world.build(out / str(PAST_YEAR) / "collection.json", mine).returncode == 0
    stacks_equal(full, mine)
