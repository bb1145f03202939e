"""The season report (page included) against the batch it reports on, one run, same cores.

  nice python bench/report_page.py [--fields 13510] [--season DIR] [--work DIR] [--workers N] [--no-browser]

- batch:   `app.batch run --no-report` on a generated season (the workers' phase and end to end);
- report:  `app.batch report` over the finished outputs, twice: (1) the journal vouches for every output
           (the usual case after a run: each read once, by the report's one pass), (2) no journal (every
           output checked in full, on the same single read); report.json's engineering section gives the
           outputs read per field;
- ratio:   report ÷ batch end to end (the goal: the report adds ≤ 5 % to the 13,510-field batch);
- page:    report.html's size, and in Debian's chromium (network off, file://) the time from navigation to
           the first drawn map (the page's own performance.now() when it has drawn) and wall time to ready.

  nice python bench/report_page.py --cloned 100000 --template OUT/FIELD.parquet

- cloned:  the report alone at national scale: bench/batch_scale.py's fake season (1 ha squares, no pixels)
           with N real outputs written by app.sure2.output.write_output, each a copy of one real output's
           columns and footer under its own field ID (a full check of each: no journal records); the
           page in its national mode (the largest payouts).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.hpc.cores import physical_cores


def run(cmd: list) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def cloned_outputs(season: Path, out: Path, template: Path) -> None:
    """One output per field of `season`: the template's table under the field's ID, this code version and
    the season's fingerprint (written straight with pyarrow, page checksums on, without the writer's
    fsync: a bench fixture, not a product)."""
    import pyarrow.parquet as pq

    from app.sure2.season import Season
    from app.sure2.settings import Settings
    from app.sure2.version import code_version

    table = pq.read_table(template)
    meta = dict(table.schema.metadata)
    payout = json.loads(meta[b"payout"])
    out.mkdir(parents=True, exist_ok=True)
    with Season.open(season) as s:
        meta.update({b"code_version": code_version().encode(), b"data_fingerprint": s.fingerprint.encode(),
                     b"settings": Settings().canonical().encode()})
        for k, fid in enumerate(s.field_ids):
            if payout:  # payouts spread over the fields: the page keeps the largest
                meta[b"payout"] = json.dumps({**payout, "amount_cents": payout["amount_cents"] * (k % 97) // 96}).encode()
            meta[b"field_id"] = fid.encode()
            pq.write_table(table.replace_schema_metadata(meta), out / f"{fid}.parquet", compression="snappy",
                           write_statistics=False, write_page_checksum=True)


def bench_cloned(args, work: Path) -> None:
    from bench.batch_scale import fake_season

    season, out = work / f"fake-{args.cloned}", work / f"cloned-{args.cloned}"
    if not (season / "season.json").exists():
        fake_season(season, args.cloned)
    if not out.exists():
        t0 = time.monotonic()
        cloned_outputs(season, out, Path(args.template))
        print(f"wrote {args.cloned:,} outputs in {time.monotonic() - t0:.0f} s")
    shutil.rmtree(out / ".batch", ignore_errors=True)
    wall = run([sys.executable, "-m", "app.batch", "report", "--data", str(season), "--out", str(out)])
    eng = json.loads((out / ".batch" / "report.json").read_text())["engineering"]
    page = out / ".batch" / "report.html"
    print(f"fields {args.cloned:,}: report {wall:.1f} s ({eng['report_s']:.1f} s inside), "
          f"{eng['outputs_read'] / max(1, eng['fields_read']):.2f} reads per field (max {eng['max_reads_per_field']}), "
          f"report.html {page.stat().st_size / 1e6:.1f} MB")
    if not args.no_browser:
        print_browser(page)


def print_browser(page: Path) -> None:
    from tests.batch.browser import console_errors, load_page, open_chromium

    chrome = open_chromium(shutil.which("chromium"), shutil.which("chromedriver"))
    try:
        t0 = time.monotonic()
        ready_ms = load_page(chrome, page, timeout=600)
        wall = time.monotonic() - t0
        drawn = chrome.execute_script("return window.seasonPage.onMap()")
        errors = console_errors(chrome)
    finally:
        chrome.quit()
    print(f"browser: first map drawn         {ready_ms / 1000:8.1f} s after navigation ({wall:.1f} s wall), "
          f"{drawn:,} fields on the map, console errors: {len(errors)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fields", type=int, default=13510)
    ap.add_argument("--season")
    ap.add_argument("--work", default="/dev/shm/bench-report-page")
    ap.add_argument("--workers", type=int, default=physical_cores())
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--cloned", type=int, help="report alone on N cloned outputs of a fake season")
    ap.add_argument("--template", help="the real output cloned by --cloned")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.cloned:
        return bench_cloned(args, work)
    season = Path(args.season) if args.season else work / f"season-{args.fields}"
    if not (season / "season.json").exists():
        print(f"generated {args.fields} fields in "
              f"{run([sys.executable, '-m', 'app.season', 'synth', '--fields', str(args.fields), '--seed', '1', '--out', str(season)]):.0f} s")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    py = [sys.executable, "-m", "app.batch"]
    batch = run([*py, "run", "--data", str(season), "--out", str(out), "--workers", str(args.workers), "--quiet",
                 "--no-report", "--progress-every", "600"])
    trusted = run([*py, "report", "--data", str(season), "--out", str(out)])
    eng = json.loads((out / ".batch" / "report.json").read_text())["engineering"]
    page = out / ".batch" / "report.html"
    size_mb = page.stat().st_size / 1e6
    full_dir = work / "out-full"
    shutil.rmtree(full_dir, ignore_errors=True)
    shutil.copytree(out, full_dir, ignore=shutil.ignore_patterns("journal.log", "snapshot*"))
    full = run([*py, "report", "--data", str(season), "--out", str(full_dir)])
    eng_full = json.loads((full_dir / ".batch" / "report.json").read_text())["engineering"]
    fields = eng["fields_read"]
    print(f"fields {fields:,}, {args.workers} workers")
    print(f"batch (--no-report) end to end   {batch:8.1f} s")
    print(f"report, journal vouches          {trusted:8.1f} s  = {100 * trusted / batch:.1f} % of the batch "
          f"({eng['outputs_read'] / max(1, fields):.2f} reads per field, max {eng['max_reads_per_field']})")
    print(f"report, every output checked     {full:8.1f} s  = {100 * full / batch:.1f} % of the batch "
          f"({eng_full['outputs_read'] / max(1, eng_full['fields_read']):.2f} reads per field, max "
          f"{eng_full['max_reads_per_field']})")
    print(f"report.html                      {size_mb:8.1f} MB")
    if not args.no_browser:
        print_browser(page)


if __name__ == "__main__":
    main()
