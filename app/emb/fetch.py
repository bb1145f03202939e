"""`python -m app.emb fetch`: the Satellite Embedding tiles a parcel file needs, for one year, from a
STAC API (the mirror's catalogue), fetching only the COG tiles under the chips `prepare` will cut that
touch a parcel — through the same fetch core as `app.season fetch`.

    fetch --parcels FILE --year 2024 --catalog URL --collection NAME --out SRC [--chip 256 --stride 256]

- Items: every item of the collection whose footprint meets the parcels' bounding box in the year;
  its embedding asset is the one keyed `data` (else the only GeoTIFF asset).
- Each tile's header is fetched and checked by prepare's own reader (app.emb.raster.EmbeddingRaster:
  64 bands, int8 or float, projected CRS, square pixels, north-up or bottom-up) on an empty local copy;
  an item it refuses is skipped with the reason.
- Windows: prepare's chip grid (app.emb.prepare.window_offsets with --chip/--stride, north-up, as
  prepare sees a bottom-up tile) — every chip whose window meets a parcel's bounds is fetched whole,
  all 64 bands, int8 bytes as published (the local copy keeps the stored orientation and every tag).
  Tiles not fetched are sparse and read as nodata: where the published file has no GDAL nodata tag,
  -128 (the published nodata) is added, so `prepare` drops chips that hold no fetched pixel.
- Output: SRC/<item id>.tif + SRC/<item id>.json (the item with provenance, as in app.season fetch),
  ready for `app.emb prepare --src SRC` unchanged. Resumable and atomic as the season fetch.
"""

import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import shapely

from app.emb.prepare import window_offsets
from app.emb.quant import NODATA
from app.emb.raster import EmbeddingRaster
from app.errors import BadInput, EnvironmentFailure
from app.fetch import run, stac
from app.fetch.core import AssetJob, fetch_assets, read_remote
from app.fetch.http import FetchError, FetchRefused
from app.fetch.progress import Progress
from app.fetch.tiff import TiffRefused, add_entry, layout
from app.hpc.atomic import atomic_write_bytes, sweep_temp_files
from app.hpc.tempdir import pick_temp_dir, private_temp_dir
from app.vector import read_vector, reproject

GDAL_NODATA = 42113


def fetch_embeddings(args, log=None) -> tuple[dict, int]:
    log = log or (lambda msg: print(f"emb fetch: {msg}", file=sys.stderr, flush=True))
    if not 1980 <= args.year <= 2100 or not 8 <= args.chip <= 4096 or not 1 <= (args.stride or args.chip) <= args.chip:
        raise BadInput("--year 1980..2100, --chip 8..4096, 1 <= --stride <= --chip")
    table = read_vector(args.parcels, args.layer)
    geoms = np.array([g for g in table.geometry if g is not None], dtype=object)
    if not len(geoms):
        raise BadInput(f"{args.parcels}: no parcel with a geometry")
    lonlat = reproject(geoms, table.crs, "EPSG:4326")
    client = run.client_for(args)
    out = Path(args.out)
    lock = run.lock_out(out)
    sweep_temp_files(out)
    started = time.monotonic()
    try:
        items = stac.search(client, args.catalog, args.collection, shapely.bounds(shapely.union_all(lonlat)),
                            f"{args.year}-01-01T00:00:00Z/{args.year}-12-31T23:59:59Z")
    except FetchError as exc:
        raise EnvironmentFailure(f"catalogue {args.catalog}: {exc}") from None
    log(f"{args.year}: {len(items)} item(s) found in {args.collection}")
    outcomes, jobs = [], []
    for item in items:
        outcomes.append(_screen(client, item))
    pending = [o for o in outcomes if not o["outcome"]]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(lambda o: _header(client, o), pending))
    pending = [o for o in pending if not o["outcome"]]
    _windows(pending, geoms, table.crs, args.chip, args.stride or args.chip)
    for o in pending:
        if o["outcome"]:
            continue
        local = out / f"{o['name']}.tif"
        try:
            record = json.loads((out / f"{o['name']}.json").read_text())["assets"][o["key"]]
            if run.still_valid(record, local, o["remote"], o["tiles"], o["href"]):
                o["outcome"] = "already fetched"
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        job = AssetJob(o["remote"], local, sorted(o["tiles"]), o)
        o["job"] = job
        jobs.append(job)
    progress = Progress(len(jobs), sum(int(j.remote.header.counts[j.tiles].sum()) for j in jobs), label="emb fetch")

    def on_done(job):
        o = job.tag
        if job.error:
            o["outcome"], o["reason"] = "failed", job.error
            log(f"{o['name']}: failed: {job.error}")
        else:
            assets = {o["key"]: {**o["item"]["assets"][o["key"]], "href": local_name(o), **run.provenance(job, o["href"])}}
            doc = {**o["item"], "assets": assets, "links": []}
            atomic_write_bytes(out / f"{o['name']}.json", (json.dumps(doc, indent=1) + "\n").encode())
            o["outcome"] = "fetched"
        progress.add(items=1)

    fetch_assets(client, jobs, args.workers, on_done, progress, gap=args.gap_kib << 10)
    if jobs:
        progress.close()
    counts = {}
    for o in outcomes:
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    full = sum(o["remote"].size for o in outcomes if o["outcome"] in ("fetched", "already fetched"))
    seconds = round(time.monotonic() - started, 2)
    log(run.summary_line(counts, client, full, seconds))
    report = [{"id": o["id"], "outcome": o["outcome"], "reason": o["reason"]} for o in outcomes]
    atomic_write_bytes(out / "fetch_report.json", (json.dumps(report, indent=1) + "\n").encode())
    run.log_skipped(log, [(o["id"], o["reason"]) for o in outcomes if o["outcome"] == "skipped"],
                    out / "fetch_report.json")
    lock.close()
    summary = {"out": str(out), "items": len(outcomes), **{k.replace(" ", "_"): v for k, v in counts.items()},
               "bytes_fetched": client.stats.bytes, "full_assets_bytes": full, "requests": client.stats.requests,
               "retries": dict(client.stats.retries), "seconds": seconds}
    return summary, counts.get("failed", 0)


def local_name(o) -> str:
    return f"{o['name']}.tif"


def _screen(client, item) -> dict:
    o = {"item": item, "id": item.get("id") if isinstance(item.get("id"), str) else repr(item.get("id"))[:200],
         "outcome": "", "reason": "", "name": stac.safe_name(item.get("id"))}
    assets = item.get("assets") if isinstance(item.get("assets"), dict) else {}
    tiffs = [k for k, a in assets.items() if isinstance(a, dict) and "tiff" in str(a.get("type", "")).lower()]
    key = "data" if "data" in assets else (tiffs[0] if len(tiffs) == 1 else None)
    if o["name"] is None:
        o.update(outcome="skipped", reason="item id is not usable as a local name (1-128 of A-Z a-z 0-9 . _ -)")
    elif key is None:
        o.update(outcome="skipped", reason=f"no `data` asset and not exactly one GeoTIFF asset (has: {', '.join(assets)[:200]})")
    else:
        href = assets[key].get("href") if isinstance(assets[key], dict) else None
        reason = run.href_refusal(client, href)
        if reason:
            o.update(outcome="skipped", reason=f"{key} asset: {reason}")
        o.update(key=key, href=href)
    return o


def _header(client, o) -> None:
    try:
        o["remote"] = read_remote(client, o["href"])
        if not any(e.tag == GDAL_NODATA for e in o["remote"].header.entries):
            add_entry(o["remote"].header, GDAL_NODATA, 2, f"{NODATA}\0".encode())
    except (TiffRefused, FetchRefused) as exc:
        o.update(outcome="skipped", reason=f"refused: {exc}")
    except FetchError as exc:
        o.update(outcome="failed", reason=f"header: {exc}")


def _windows(pending, geoms, crs, chip: int, stride: int) -> None:
    """Tiles under prepare's chips (north-up, as prepare sees the tile) that meet a parcel's bounds."""
    if not pending:
        return
    staging = private_temp_dir(pick_temp_dir(), "emb-fetch-")
    try:
        for o in pending:
            path = staging / local_name(o)
            path.write_bytes(layout(o["remote"].header, [])[0])
            try:
                with EmbeddingRaster(path) as r:
                    grid, bottom_up = r.grid, r.bottom_up
                    local = reproject(geoms, crs, r.crs)
            except BadInput as exc:
                o.update(outcome="skipped", reason=str(exc))
                continue
            a, _, c, _, e, f = grid.transform
            b = shapely.bounds(local)  # minx, miny, maxx, maxy
            col0, col1 = (b[:, 0] - c) / a, (b[:, 2] - c) / a
            row0, row1 = (b[:, 3] - f) / e, (b[:, 1] - f) / e  # e < 0: north edge first
            rows = np.array(window_offsets(grid.height, chip, stride))
            cols = np.array(window_offsets(grid.width, chip, stride))
            tiles = set()
            h = o["remote"].header
            for r0 in rows:
                meets_rows = (row0 < r0 + chip) & (row1 > r0)
                if not meets_rows.any():
                    continue
                for c0 in cols:
                    if (meets_rows & (col0 < c0 + chip) & (col1 > c0)).any():
                        s0 = grid.height - r0 - chip if bottom_up else r0
                        tiles |= h.tiles_in(s0, s0 + chip, c0, c0 + chip)
            if not tiles:
                o.update(outcome="skipped", reason="no parcel on this tile")
            o["tiles"] = tiles
    finally:
        shutil.rmtree(staging, ignore_errors=True)
