#!/usr/bin/env python3
"""`app.season fetch` over a WAN-like link, side by side in one run with (a) whole assets by curl and
(b) odc-stac loading the fields' extent per tile. Needs root (network namespaces), nginx, rustac, and
odc-stac in its own venv (ODC_PYTHON, default /tmp/odc-venv/bin/python; `python3 -m venv DIR &&
DIR/bin/pip install -r bench/odc-requirements.txt`: kept out of the project's venv).

    sudo .venv/bin/python bench/season_fetch.py [--tile 2048 --block 512 --dates 6] [--fields 800,40]

What is emulated (this kernel has no netem): two network namespaces joined by a veth pair, shaped with
`tbf` to RATE_MBIT each way; nginx, rustac and the fault proxy run in the server namespace, every
client in the other. The proxy adds LATENCY_S to every answer (one RTT per request: what a request
costs at 40 ms RTT; TCP's slow start at that RTT is not emulated) and turns LOSS of the answers into a
LOSS_STALL_S pause mid-body (a lost segment's retransmission timeout). Traffic never leaves the host:
10.199.0.1 ↔ 10.199.0.2 inside the namespaces only.

Raw inputs: app.season raw (3 granules, TILE² px, BLOCK² COG blocks, DATES dates) with each field
count given (the first, 800 on 2048² tiles, is the demo's density: 200 fields on three 1024² tiles;
40 is a sparse portfolio). Per portfolio and method: bytes over the link (the client namespace's
interface counters), seconds, link use (bytes / seconds / shaped rate; for the fetch also over its tile
phase alone, without interpreter start-up, field import, search, headers and planning); and the
fetch's bytes vs the whole assets' size. Prints a table and writes bench/results/season_fetch.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fetch"))
import numpy as np
import rasterio
import shapely
from servers import NGINX, Nginx

from app.vector import read_vector, reproject

SRV, CLI = "f19srv", "f19cli"
SRV_IP, CLI_IP = "10.199.0.2", "10.199.0.1"
RATE_MBIT = 100
LATENCY_S = 0.040
LOSS = 0.005
LOSS_STALL_S = 0.2
ODC = r"""
import json, sys, time
import numpy as np
import pystac_client, odc.stac, shapely
from pyproj import CRS
catalog, by_epsg = sys.argv[1], json.loads(sys.argv[2])
client = pystac_client.Client.open(catalog)
t = time.monotonic()
n = 0
for epsg, (bbox, ids) in by_epsg.items():
    items = list(client.search(collections=["sentinel-2-l2a"], ids=ids, max_items=None).items())
    bands = ["red", "nir", "scl"] if "red" in items[0].assets else ["B04", "B08", "SCL"]
    ds = odc.stac.load(items, bands=bands, bbox=bbox, crs=f"EPSG:{epsg.split(':')[0]}", resolution=10,
                       groupby="id", chunks={"x": 2048, "y": 2048}, pool=16, fail_on_error=True)
    ds.load()
    n += len(items)
print(json.dumps({"items": n, "seconds": time.monotonic() - t}))
"""


def sh(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, **kw)


def netns_up() -> None:
    netns_down()
    for ns in (SRV, CLI):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "f19a", "netns", CLI, "type", "veth", "peer", "name", "f19b", "netns", SRV)
    for ns, dev, ip in ((CLI, "f19a", CLI_IP), (SRV, "f19b", SRV_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{RATE_MBIT}mbit",
           "burst", "64kb", "latency", "100ms")


def netns_down() -> None:
    for ns in (SRV, CLI):
        sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)


def rx_bytes() -> int:
    out = sh("ip", "-n", CLI, "-s", "-j", "link", "show", "f19a", capture_output=True, text=True).stdout
    return json.loads(out)[0]["stats64"]["rx"]["bytes"]


def measured(fn):
    before, t = rx_bytes(), time.monotonic()
    extra = fn()
    seconds = time.monotonic() - t
    nbytes = rx_bytes() - before
    return {"bytes": nbytes, "seconds": round(seconds, 2),
            "link_use": round(nbytes * 8 / seconds / (RATE_MBIT * 1e6), 3), **(extra or {})}


def in_cli(*cmd, **kw):
    return sh("ip", "netns", "exec", CLI, *cmd, **kw)


def run_portfolio(raw: Path, work: Path, odc_python: str) -> dict:
    """Serve raw/scenes in the server namespace and measure the three methods."""
    catalog, proxy = f"http://{SRV_IP}:7822", f"http://{SRV_IP}:8081"
    items = json.loads((raw / "scenes" / "collection.json").read_text())["features"]
    hrefs = []
    for item in items:
        for asset in item["assets"].values():
            asset["href"] = f"{proxy}/{asset['href'].removeprefix('./')}"
            hrefs.append(asset["href"])
    (work / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    nginx = Nginx(raw / "scenes", work / "nginx", host="127.0.0.1", port=8080, netns=SRV).start()
    procs = [subprocess.Popen(["ip", "netns", "exec", SRV, sys.executable, ROOT / "tests/fetch/servers.py",
                               "--upstream", "127.0.0.1:8080", "--listen", f"{SRV_IP}:8081", "--latency",
                               str(LATENCY_S), "--loss", str(LOSS), "--loss-stall", str(LOSS_STALL_S)],
                              stdout=subprocess.DEVNULL),
             subprocess.Popen(["ip", "netns", "exec", SRV, shutil.which("rustac") or Path(sys.executable).with_name("rustac"),
                               "serve", "--addr", f"{SRV_IP}:7822", "--create-collections", work / "items.json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(3)
        full = sum((raw / "scenes" / h.split("/", 3)[3]).stat().st_size for h in hrefs)
        out = work / "fetched"

        def fetch(where=out, *extra):
            got = in_cli(sys.executable, "-m", "app.season", "fetch", "--fields", raw / "fields.gpkg", "--mapping",
                         raw / "mapping.toml", "--out", where, "--catalog", catalog, "--allow-host", proxy,
                         "--workers", 16, *extra, capture_output=True, text=True, cwd=ROOT, check=False)
            if got.returncode:
                raise SystemExit(f"fetch failed: {got.stderr[-2000:]}")
            s = json.loads(got.stdout)
            return {"retries": s["retries"], "requests": s["requests"], "items": s["fetched"],
                    "tile_phase_s": s["tile_seconds"],
                    "tile_phase_link_use": round(s["tile_bytes"] * 8 / max(s["tile_seconds"], 1e-9) / (RATE_MBIT * 1e6), 3)}

        fetch_row = measured(fetch)
        exact_row = measured(lambda: fetch(work / "fetched_gap0", "--gap-kib", 0))  # no hole fetched: fewest bytes
        # resume cost: kill -9 half way through the tile phase, then resume
        shutil.rmtree(out)
        cmd = ["ip", "netns", "exec", CLI, sys.executable, "-m", "app.season", "fetch", "--fields",
               raw / "fields.gpkg", "--mapping", raw / "mapping.toml", "--out", out, "--catalog", catalog,
               "--allow-host", proxy, "--workers", 16]
        p = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(fetch_row["seconds"] - fetch_row["tile_phase_s"] / 2)
        p.kill()
        p.wait()
        done = len(list(out.glob("*/*/item.json")))
        resume = measured(lambda: (in_cli(*cmd[4:], capture_output=True, cwd=ROOT), None)[1])
        resume["items_done_before_kill"] = done
        resume["items"] = len(items)

        def curl():
            (work / "urls").write_text("".join(f"url = {h}\noutput = /dev/null\n" for h in hrefs))
            in_cli("curl", "-s", "--no-progress-meter", "--parallel", "--parallel-max", 16, "-K", work / "urls")

        curl_row = measured(curl)
        by_epsg = {}
        table = read_vector(raw / "fields.gpkg")
        lonlat = reproject(np.array([g for g in table.geometry if g is not None], dtype=object), table.crs, "EPSG:4326")
        for item in items:  # the fields' extent per tile (granule), loaded in that tile's CRS
            with rasterio.open(raw / "scenes" / item["id"] / "B04.tif") as ds:
                epsg = ds.crs.to_epsg()
            fp = shapely.geometry.shape(item["geometry"])
            mine = [g for g in lonlat if fp.contains(g.centroid)]
            if mine:
                b = list(shapely.bounds(shapely.union_all(np.array(mine, dtype=object))))
                key = f"{epsg}:{item['properties'].get('s2:mgrs_tile')}"
                old, ids = by_epsg.get(key, (b, []))
                by_epsg[key] = ([min(old[0], b[0]), min(old[1], b[1]), max(old[2], b[2]), max(old[3], b[3])],
                                ids + [item["id"]])
        def odc():
            got = in_cli(odc_python, "-c", ODC, catalog, json.dumps(by_epsg), capture_output=True, text=True,
                         check=False, env={**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                                           "GDAL_HTTP_MAX_RETRY": "8", "GDAL_HTTP_RETRY_DELAY": "0.5"})
            if got.returncode:
                raise SystemExit(f"odc-stac failed: {got.stderr[-3000:]}")
            return json.loads(got.stdout)

        odc_row = measured(odc)
        return {"full_assets_bytes": full, "fetch": fetch_row, "fetch_gap0": exact_row, "resume_after_kill": resume, "curl_whole": curl_row,
                "odc_stac": odc_row}
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        nginx.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--dates", type=int, default=6)
    ap.add_argument("--fields", default="800,40", help="field counts, one portfolio each")
    ap.add_argument("--keep", help="work directory to keep (default: a temp dir, removed)")
    ap.add_argument("--odc-python", default=os.environ.get("ODC_PYTHON", "/tmp/odc-venv/bin/python"))
    a = ap.parse_args()
    if os.geteuid() != 0 or not Path(NGINX).is_file():
        raise SystemExit("needs root (network namespaces) and nginx")
    work = Path(a.keep or tempfile.mkdtemp(prefix="season-fetch-bench-"))
    results = {"link": {"rate_mbit": RATE_MBIT, "latency_s_per_request": LATENCY_S, "loss": LOSS,
                        "loss_stall_s": LOSS_STALL_S}, "tile": a.tile, "block": a.block, "dates": a.dates,
               "portfolios": {}}
    netns_up()
    try:
        for n in [int(v) for v in a.fields.split(",")]:
            raw = work / f"raw{n}"
            if not (raw / "scenes" / "collection.json").is_file():
                sh(sys.executable, "-m", "app.season", "raw", "--out", raw, "--fields", n, "--tile", a.tile,
                   "--block", a.block, "--dates", a.dates, "--seed", 1, cwd=ROOT, stdout=subprocess.DEVNULL)
            d = work / f"run{n}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            results["portfolios"][n] = run_portfolio(raw, d, a.odc_python)
    finally:
        netns_down()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"link: {RATE_MBIT} Mbit/s tbf, +{LATENCY_S * 1000:.0f} ms per answer, {LOSS:.1%} answers stalled "
          f"{LOSS_STALL_S} s; tiles {a.tile}² px, blocks {a.block}², {a.dates} dates, 3 granules")
    print(f"{'fields':>6} {'method':<18} {'MB':>9} {'s':>7} {'link use':>8} {'vs fetch MB':>11} {'vs fetch s':>10}")
    for n, r in results["portfolios"].items():
        f = r["fetch"]
        for name in ("fetch", "fetch_gap0", "resume_after_kill", "curl_whole", "odc_stac"):
            row = r[name]
            print(f"{n:>6} {name:<18} {row['bytes'] / 1e6:>9.1f} {row['seconds']:>7.1f} {row['link_use']:>8.0%} "
                  f"{row['bytes'] / max(f['bytes'], 1):>10.1f}x {row['seconds'] / max(f['seconds'], 1e-9):>9.1f}x")
        print(f"{n:>6} full assets {r['full_assets_bytes'] / 1e6:.1f} MB; fetch: tile phase {f['tile_phase_s']} s at "
              f"{f['tile_phase_link_use']:.0%} link use, {f['requests']} requests, retries {f.get('retries')}; "
              f"resume after kill -9 ({r['resume_after_kill']['items_done_before_kill']} of "
              f"{r['resume_after_kill']['items']} items done before)")
    out = ROOT / "bench" / "results" / "season_fetch.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
