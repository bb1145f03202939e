#!/usr/bin/env python3
"""Season import throughput, side by side in one run (ratios, never absolute claims).

    .venv/bin/python bench/season_import.py [--tile 2048] [--dates 37] [--block 256] [--keep DIR]

Generates 2 granules (UTM zones 32 and 33) × DATES dates × TILE² pixels, 3 bands each (red, NIR at
10 m; SCL at 20 m) with app.season.raw_inputs, then measures, each in its own process on the same
cores (physical cores; GDAL decodes in threads):
  plain    a plain rasterio read of every band file, whole, one file per thread;
  all      `app.season build` with one small field in every COG block of both tiles (every block decoded);
  10 %     `app.season build` with fields in 10 % of the COG blocks only.
Decoded MB = uncompressed size of what was decoded (plain: every file; build: the COG blocks its audit
says it read). Prints MB/s of each, end to end (the process: interpreter, imports, the field import,
writing the stacks) and in the read phase (plain: the reads; build: its scene reads as it logs them:
decode, offset evidence, NDVI, merge), the build's rates ÷ plain's (goal ≥ 0.8), the saving of the
10 % build over the full one, and each process's peak memory (ru_maxrss).
"""

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN = r"""
import sys, json, time, rasterio
from concurrent.futures import ThreadPoolExecutor
from app.hpc.cores import physical_cores
files = json.load(open(sys.argv[1]))
def read(path):
    with rasterio.open(path) as ds:
        a = ds.read(1)
    return a.nbytes
t0 = time.perf_counter()
with ThreadPoolExecutor(physical_cores()) as pool:
    total = sum(pool.map(read, files))
print(total, time.perf_counter() - t0)
"""


# Runs one command and reports its own peak RSS on stderr's last line: RUSAGE_CHILDREN of a fresh
# process covers exactly that one child.
MEASURE = "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); " \
          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"


def run_measured(cmd) -> tuple[float, int, str, str]:
    """(wall seconds, peak RSS MiB of the command, stdout, stderr)."""
    t0 = time.perf_counter()
    got = subprocess.run([sys.executable, "-c", MEASURE, *map(str, cmd)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if got.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd[:4]))} failed:\n{got.stderr[-2000:]}")
    return wall, int(got.stderr.strip().splitlines()[-1]) // 1024, got.stdout, got.stderr


def field_file(raw: Path, out: Path, block: int, share: float) -> int:
    """A GeoParquet field file (the generator's columns) with a 60 m square in `share` of each granule's
    COG blocks (block centres; every block when share = 1)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from app.season.raw_inputs import FIELDS_CRS, _to, granules

    table = pq.read_table(raw / "fields.parquet")
    template = {k: v for k, v in table.slice(0, 1).to_pylist()[0].items() if k != "geometry"}
    rows, k = [], 0
    tile = json.loads((raw / "summary.json").read_text())["tile_px"]
    for g in granules(tile, second_b=False):
        n = tile // block
        cells = [(r, c) for r in range(n) for c in range(n)]
        keep = cells if share >= 1 else cells[: max(1, round(share * len(cells)))]
        to_fields = _to(g.crs, FIELDS_CRS)
        for r, c in keep:
            x = g.transform.c + (c + 0.5) * block * 10
            y = g.transform.f - (r + 0.5) * block * 10
            rows.append({**template, "skifte_id": f"B-{k:05d}", "geometry": shapely.to_wkb(to_fields(shapely.box(x - 30, y - 30, x + 30, y + 30)))})
            k += 1
    out_table = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(out_table, out)
    return len(rows)


def decoded_mb(season: Path, block: int) -> float:
    audit = json.loads((season / "season.json").read_text())["audit"]["stacks"]
    blocks = sum(s["cog_blocks_read"] for a in audit.values() for s in a["scenes"])
    return blocks * (2 * block * block * 2 + (block // 2) ** 2) / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tile", type=int, default=2048)
    p.add_argument("--dates", type=int, default=37)
    p.add_argument("--block", type=int, default=256, help="COG block of the 10 m bands (SCL: half)")
    p.add_argument("--keep", help="keep the generated data here (default: a temp dir, removed)")
    args = p.parse_args()
    from app.season.raw_inputs import generate

    work = Path(args.keep or tempfile.mkdtemp(prefix="season-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    raw = work / "raw"
    if not (raw / "summary.json").is_file():
        t0 = time.perf_counter()
        summary = generate(raw, n_fields=8, tile_px=args.tile, n_dates=args.dates, block=args.block, second_b=False,
                           awkward=False)
        (raw / "summary.json").write_text(json.dumps(summary))
        print(f"generated {summary['n_items']} items ({args.tile}² px, {args.dates} dates × 2 tiles) "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
    files = sorted(str(f) for f in (raw / "scenes").rglob("*.tif"))
    (work / "files.json").write_text(json.dumps(files))
    wall, peak, stdout, _ = run_measured([sys.executable, "-c", PLAIN, work / "files.json"])
    plain_bytes, plain_read = stdout.split()
    results = {"plain": (int(plain_bytes) / 1e6, wall, float(plain_read), peak)}
    for name, share in (("all", 1.0), ("10 %", 0.1)):
        fields = work / f"fields-{name.replace(' %', '')}.parquet"
        n = field_file(raw, fields, args.block, share)
        season = work / f"season-{name.replace(' %', '')}"
        shutil.rmtree(season, ignore_errors=True)
        wall, peak, _, stderr = run_measured([sys.executable, "-m", "app.season", "build", "--fields", fields,
                                              "--mapping", raw / "mapping.toml", "--scenes", raw / "scenes",
                                              "--out", season])
        read = sum(float(m) for m in re.findall(r"MB decoded in ([0-9.]+) s", stderr))
        results[name] = (decoded_mb(season, args.block), wall, read, peak, n)
    print(f"\n{'run':8} {'decoded MB':>11} {'seconds':>8} {'MB/s':>7} {'read s':>7} {'read MB/s':>10} {'peak MiB':>9}")
    for name, (mb, wall, read, peak, *_) in results.items():
        print(f"{name:8} {mb:11.0f} {wall:8.1f} {mb / wall:7.0f} {read:7.2f} {mb / read:10.0f} {peak:9d}")
    rate = lambda name, k: results[name][0] / results[name][k]
    print(f"\nbuild decode rate / plain rasterio read (goal >= 0.8): read phase {rate('all', 2) / rate('plain', 2):.2f}x, "
          f"end to end {rate('all', 1) / rate('plain', 1):.2f}x (the build also imports {results['all'][4]} fields, "
          "decides offsets, computes NDVI and writes the stacks)")
    print(f"fields in 10 % of the blocks: {results['10 %'][0] / results['all'][0]:.0%} of the data decoded, "
          f"{results['all'][1] / results['10 %'][1]:.1f}x faster than the full build, "
          f"{results['plain'][1] / results['10 %'][1]:.1f}x faster than a plain read of everything")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
