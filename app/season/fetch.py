"""`python -m app.season fetch`: Sentinel-2 L2A items from a STAC API → local items + sparse COGs that
`app.season build` takes unchanged, fetching only the COG tiles the build will read.

    fetch --fields FILE --mapping MAPPING.toml | --fields SEASON_DIR
          --out SCENES [--catalog URL] [--collection NAME] [--years 2025 | 2019-2024] [--window 04-01/10-31]
          [--max-cloud 60] [--sign planetary-computer] [--allow-host URL] [--workers 16] ...

Order (one code path with the build):
1. fields: the insurer's file through the build's own import (so the mapping is needed: the fields the
   build keeps, repaired, are the fields whose blocks are fetched), or a built season's fields.parquet;
2. per year: STAC item search (bbox of the fields, the window of that year, paged); items over
   --max-cloud (eo:cloud_cover) are skipped; an item whose ID or asset key cannot be a local name, or
   whose href is file:// or on a host not allowed, is skipped with the reason;
3. the header (first IFD) of each item's red, nir and scl COG (app.fetch.core.read_remote), then an
   empty local copy of each (every tile sparse) and the item pointing at it, read by the build's own
   app.season.scenes → the build's own stack plan (app.season.stack_plan) → the build's own block
   selection (app.season.scene_ndvi.blocks_to_read, scl_window): the tiles to fetch;
4. those tiles (app.fetch.core.fetch_assets), each asset atomic, then the item's JSON (written last:
   its presence means the item is complete), then collection.json of the year's items.

Output, per year: SCENES/<year>/<item id>/{<asset key>.tif, item.json} and SCENES/<year>/collection.json
(build with `--scenes SCENES/<year>/collection.json`). Each local asset keeps the remote item's asset
fields, with the local href and its provenance: `fetch:source_href`, `fetch:etag`,
`fetch:last_modified`, `fetch:source_bytes` (the whole remote object), `fetch:bytes` (tile bytes
fetched), `fetch:tiles` (tile indices held), `fetch:tiles_total`, `file:size`, `fetch:sha256`.

Resumable: an item whose item.json names files of the recorded size and sha256, the same remote ETag,
and all the tiles now needed is kept (`already fetched`); otherwise fetched again. A concurrent fetch
into the same SCENES is refused. Exit 0 when every item ended fetched or skipped with a reason; 3
when some failed (network): rerun to resume; 3 when the catalogue cannot be reached; 2 bad usage.
"""

import datetime as dt
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely
from affine import Affine

from app.errors import BadInput, EnvironmentFailure
from app.fetch import run, stac
from app.fetch.core import AssetJob, fetch_assets, read_remote
from app.fetch.http import FetchError, FetchRefused
from app.fetch.progress import Progress
from app.fetch.tiff import TiffRefused, layout
from app.hpc.atomic import atomic_write_bytes, sweep_temp_files
from app.hpc.tempdir import pick_temp_dir, private_temp_dir
from app.season.scene_ndvi import blocks_to_read, scl_window
from app.season.scenes import ASSET_KEYS, load_scenes
from app.season.stack_plan import plan_stacks

ITEM_JSON = "item.json"
COLLECTION = "collection.json"
REPORT = "fetch_report.json"


@dataclass
class ItemWork:
    item: dict
    name: str
    keys: dict  # band -> asset key
    urls: dict  # band -> URL to fetch (signed where needed)
    hrefs: dict  # band -> the catalogue's href (unsigned)
    remotes: dict = field(default_factory=dict)  # band -> Remote
    tiles: dict = field(default_factory=dict)  # band -> set of tile indices
    outcome: str = ""
    reason: str = ""
    jobs: list = field(default_factory=list)
    fetched: int = 0

    def end(self, outcome: str, reason: str = "") -> None:
        self.outcome, self.reason = outcome, reason


def load_fields(fields_path, mapping_path, layer):
    """(object with .geometry in lon/lat, the mapping's season year or None)."""
    path = Path(fields_path)
    if path.is_dir():
        if not (path / "season.json").is_file() or not (path / "fields.parquet").is_file():
            raise BadInput(f"{path} is a directory but not a built season (no season.json / fields.parquet)")
        table = pq.read_table(path / "fields.parquet", columns=["geometry"])
        geoms = [None if g is None else shapely.from_wkb(g) for g in table.column("geometry").to_pylist()]
        return SimpleNamespace(geometry=geoms), None
    if mapping_path is None:
        raise BadInput("--mapping is needed with an insurer's field file (the build's import decides which "
                       "fields, and so which blocks, there are); or give a built season directory")
    from app.season.fields_import import import_fields
    from app.season.mapping import load_mapping

    mapping = load_mapping(mapping_path)
    return import_fields(path, mapping, layer), mapping.season_year


def parse_years(text: str | None, default: int | None) -> list:
    if text is None:
        if default is None:
            raise BadInput("--years is needed (no mapping to take season_year from)")
        return [default]
    try:
        if "-" in text:
            a, b = (int(v) for v in text.split("-"))
            years = list(range(a, b + 1))
        else:
            years = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise BadInput(f"--years must be YEAR, A-B or A,B,C, not {text!r}") from None
    if not years or not all(1980 <= y <= 2100 for y in years) or len(years) > 50:
        raise BadInput(f"--years {text}: 1 to 50 years between 1980 and 2100")
    return years


def parse_window(text: str) -> tuple:
    try:
        a, b = text.split("/")
        start, end = dt.datetime.strptime(a, "%m-%d"), dt.datetime.strptime(b, "%m-%d")
    except ValueError:
        raise BadInput(f"--window must be MM-DD/MM-DD (e.g. 04-01/10-31), not {text!r}") from None
    return (start.month, start.day), (end.month, end.day)


def interval(year: int, window) -> str:
    (m0, d0), (m1, d1) = window
    first_year = year if (m0, d0) <= (m1, d1) else year - 1  # a window across new year starts the year before
    return f"{first_year}-{m0:02d}-{d0:02d}T00:00:00Z/{year}-{m1:02d}-{d1:02d}T23:59:59Z"


def fetch_season(args, log=None) -> tuple[dict, int]:
    """Run the fetch; (summary, number of failed items)."""
    log = log or (lambda msg: print(f"season fetch: {msg}", file=sys.stderr, flush=True))
    fields, season_year = load_fields(args.fields, args.mapping, args.layer)
    years = parse_years(args.years, season_year)
    window = parse_window(args.window)
    geoms = [g for g in fields.geometry if g is not None]
    if not geoms:
        raise BadInput(f"{args.fields}: no field with a geometry")
    bbox = shapely.bounds(shapely.union_all(np.array(geoms, dtype=object)))
    client = run.client_for(args)
    out = Path(args.out)
    lock = run.lock_out(out)
    started = time.monotonic()
    token = None
    if args.sign == "planetary-computer":
        try:
            token = stac.pc_token(client, stac.PRESETS["planetary-computer"]["sign"], args.collection)
        except FetchError as exc:
            raise EnvironmentFailure(f"cannot sign Planetary Computer hrefs: {exc}") from None
    per_year, failed, works_all, tile_seconds = {}, 0, [], 0.0
    for year in years:
        try:
            items = stac.search(client, args.catalog, args.collection, bbox, interval(year, window))
        except FetchError as exc:
            raise EnvironmentFailure(f"catalogue {args.catalog}: {exc}") from None
        log(f"{year}: {len(items)} item(s) found in {args.collection}")
        works, seconds = _year(client, fields, items, out / str(year), token, args, log)
        tile_seconds += seconds
        works_all += works
        counts = {}
        for w in works:
            counts[w.outcome] = counts.get(w.outcome, 0) + 1
        failed += counts.get("failed", 0)
        per_year[year] = {"dir": str(out / str(year)), "collection": str(out / str(year) / COLLECTION), **counts}
    fetched_items = [w for w in works_all if w.outcome == "fetched"]
    full = sum(r.size for w in works_all if w.outcome in ("fetched", "already fetched") for r in w.remotes.values())
    summary = {"out": str(out), "years": per_year, "items": len(works_all),
               "fetched": len(fetched_items), "already_fetched": sum(w.outcome == "already fetched" for w in works_all),
               "skipped": sum(w.outcome == "skipped" for w in works_all), "failed": failed,
               "bytes_fetched": client.stats.bytes, "tile_bytes": sum(w.fetched for w in works_all),
               "full_assets_bytes": full, "requests": client.stats.requests, "retries": dict(client.stats.retries),
               "retry_wait_s": round(client.stats.waited, 2),
               "tile_seconds": round(tile_seconds, 2),
               "seconds": round(time.monotonic() - started, 2)}
    log(run.summary_line({"fetched": summary["fetched"], "already fetched": summary["already_fetched"],
                      "skipped": summary["skipped"], "failed": failed}, client, full, summary["seconds"]))
    lock.close()
    return summary, failed


def _year(client, fields, items, out: Path, token, args, log) -> tuple[list, float]:
    """The year's items fetched into out: (their ItemWork, seconds of the tile phase)."""
    out.mkdir(parents=True, exist_ok=True)
    for d in [out] + [p for p in out.iterdir() if p.is_dir()]:
        sweep_temp_files(d)  # temp files of a killed run (we hold the lock: no writer is active)
    works = _screen(client, items, token, args)
    pending = [w for w in works if not w.outcome]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(lambda wb: _header(client, *wb), [(w, b) for w in pending for b in w.keys]))
    pending = [w for w in pending if not w.outcome]
    _select_tiles(fields, pending)
    pending = [w for w in pending if not w.outcome]
    for w in pending:
        _check_done(w, out / w.name)
    todo = [w for w in pending if not w.outcome]
    jobs = []
    for w in todo:
        for band, remote in w.remotes.items():
            job = AssetJob(remote, out / w.name / f"{w.keys[band]}.tif", sorted(w.tiles[band]), (w, band))
            w.jobs.append(job)
            jobs.append(job)
    total = sum(int(j.remote.header.counts[j.tiles].sum()) if j.tiles else 0 for j in jobs)
    progress = Progress(len(todo), total)
    left = {id(w): len(w.jobs) for w in todo}

    def on_done(job):
        w, _ = job.tag
        left[id(w)] -= 1
        if left[id(w)] == 0:
            errors = [j.error for j in w.jobs if j.error]
            if errors:
                w.end("failed", errors[0])
                log(f"{w.name}: failed: {errors[0]}")
            else:
                w.fetched = sum(j.fetched for j in w.jobs)
                _write_item(w, out / w.name, args.catalog)
                w.end("fetched")
            progress.add(items=1)

    tiles_start = time.monotonic()
    fetch_assets(client, jobs, args.workers, on_done, progress, gap=args.gap_kib << 10)
    tile_seconds = time.monotonic() - tiles_start
    if todo:
        progress.close()
    done = [w for w in works if w.outcome in ("fetched", "already fetched")]
    collection = {"type": "FeatureCollection",
                  "features": [_relative(json.loads((out / w.name / ITEM_JSON).read_text()), w.name) for w in done]}
    atomic_write_bytes(out / COLLECTION, (json.dumps(collection, indent=1) + "\n").encode())
    report = [{"id": w.item.get("id") if isinstance(w.item.get("id"), str) else repr(w.item.get("id"))[:200],
               "outcome": w.outcome, "reason": w.reason, "bytes": w.fetched} for w in works]
    atomic_write_bytes(out / REPORT, (json.dumps(report, indent=1) + "\n").encode())
    run.log_skipped(log, [(r["id"], r["reason"]) for r in report if r["outcome"] == "skipped"], out / REPORT)
    return works, tile_seconds


def _screen(client, items, token, args) -> list:
    """An ItemWork per item; those that cannot be used end 'skipped' with the reason."""
    works, seen = [], set()
    for item in items:
        w = ItemWork(item, "", {}, {}, {})
        works.append(w)
        name = stac.safe_name(item.get("id"))
        if name is None:
            w.end("skipped", "item id is not usable as a local name (1-128 of A-Z a-z 0-9 . _ -, no leading dot)")
            continue
        if name in seen:
            w.end("skipped", "duplicate item id in the search results")
            continue
        seen.add(name)
        w.name = name
        cloud = (item.get("properties") or {}).get("eo:cloud_cover")
        if args.max_cloud is not None and isinstance(cloud, (int, float)) and cloud > args.max_cloud:
            w.end("skipped", f"cloud cover {cloud:g} % > --max-cloud {args.max_cloud:g}")
            continue
        assets = item.get("assets") if isinstance(item.get("assets"), dict) else {}
        for band in ("red", "nir", "scl"):
            key = next((k for k in ASSET_KEYS[band] if k in assets), None)
            if key is not None:
                w.keys[band] = key
        if "red" not in w.keys or "nir" not in w.keys:
            w.end("skipped", f"no red+nir asset (has: {', '.join(map(str, assets))[:200]})")
            continue
        for band, key in w.keys.items():
            href = assets[key].get("href") if isinstance(assets[key], dict) else None
            reason = run.href_refusal(client, href)
            if reason:
                w.end("skipped", f"{key} asset: {reason}")
                break
            assert isinstance(href, str)  # href_refusal refuses anything but a string URL
            w.hrefs[band] = href
            w.urls[band] = stac.signed(href, token)
    return works


def _header(client, w: ItemWork, band: str) -> None:
    try:
        w.remotes[band] = read_remote(client, w.urls[band])
    except (TiffRefused, FetchRefused) as exc:
        w.end("skipped", f"{w.keys[band]} asset refused: {exc}")
    except FetchError as exc:
        w.end("failed", f"{w.keys[band]} header: {exc}")


def _select_tiles(fields, works) -> None:
    """The build's own plan and block selection on empty local copies of the items → tiles per asset."""
    if not works:
        return
    staging = private_temp_dir(pick_temp_dir(), "season-fetch-")
    try:
        by_id = {}
        for w in works:
            d = staging / w.name
            d.mkdir()
            assets = {}
            for band, remote in w.remotes.items():
                (d / f"{w.keys[band]}.tif").write_bytes(layout(remote.header, [])[0])
                assets[w.keys[band]] = {**w.item["assets"][w.keys[band]], "href": f"{w.keys[band]}.tif"}
            (d / ITEM_JSON).write_text(json.dumps({**w.item, "assets": assets}))
            by_id[w.item["id"]] = w
        catalogue = load_scenes(staging)
        for s in catalogue.skipped:
            if s["id"] in by_id:
                by_id[s["id"]].end("skipped", s["reason"])
        plans, _, _ = plan_stacks(fields, catalogue.scenes)
        for plan in plans:
            for scene in plan.scenes:
                _tiles_of_scene(plan, scene, by_id[scene.id])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for w in works:
        if not w.outcome and not w.tiles:
            w.end("skipped", "touches no block the fields need")


def _tiles_of_scene(plan, scene, w: ItemWork) -> None:
    red = w.remotes["red"].header
    windows, _, _, _ = blocks_to_read(plan, scene, (red.tile_h, red.tile_w))
    tiles = {band: set() for band in w.remotes}
    t = Affine(*scene.transform)
    scl = None
    if "scl" in w.remotes:
        with rasterio.open(scene.assets["scl"].path) as ds:
            scl = (ds.transform, ds.width, ds.height)
    for win in windows:
        tiles["red"] |= red.tiles_in(*win)
        tiles["nir"] |= w.remotes["nir"].header.tiles_in(*win)
        if scl is not None:
            sw, step, _ = scl_window(*scl, t, win)
            pad = 0 if step == 2 else 1  # GDAL's resampled read may touch the pixel beside a fractional edge
            r0, c0 = int(np.floor(sw.row_off)) - pad, int(np.floor(sw.col_off)) - pad
            r1 = int(np.ceil(sw.row_off + sw.height)) + pad
            c1 = int(np.ceil(sw.col_off + sw.width)) + pad
            tiles["scl"] |= w.remotes["scl"].header.tiles_in(r0, r1, c0, c1)
    for band, got in tiles.items():
        w.tiles[band] = w.tiles.get(band, set()) | got


def _check_done(w: ItemWork, d: Path) -> None:
    """End w 'already fetched' if d holds a complete, unchanged copy with every tile now needed."""
    try:
        local = json.loads((d / ITEM_JSON).read_text())
        if all(run.still_valid(local["assets"][w.keys[band]], d / local["assets"][w.keys[band]]["href"], remote,
                           w.tiles[band], w.hrefs[band]) for band, remote in w.remotes.items()):
            w.end("already fetched")
    except (OSError, ValueError, KeyError, TypeError):
        return


def _write_item(w: ItemWork, d: Path, catalog: str) -> None:
    assets = {}
    for job in w.jobs:
        _, band = job.tag
        key = w.keys[band]
        assets[key] = {**w.item["assets"][key], "href": f"{key}.tif", **run.provenance(job, w.hrefs[band])}
    props = {**(w.item.get("properties") or {}), "fetch:catalog": catalog,
             "fetch:fetched_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    via = [{"rel": "via", "href": link["href"]} for link in w.item.get("links") or []
           if isinstance(link, dict) and link.get("rel") == "self" and isinstance(link.get("href"), str)]
    item = {**w.item, "properties": props, "assets": assets, "links": via}
    atomic_write_bytes(d / ITEM_JSON, (json.dumps(item, indent=1) + "\n").encode())


def _relative(item: dict, name: str) -> dict:
    """The item as it appears in collection.json, one directory up: hrefs under its own directory."""
    assets = {k: {**a, "href": f"{name}/{a['href']}"} for k, a in item["assets"].items()}
    return {**item, "assets": assets}

