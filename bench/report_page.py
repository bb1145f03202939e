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

from app.hpc.cores import physical_cores  # noqa: E402


def run(cmd: list) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fields", type=int, default=13510)
    ap.add_argument("--season")
    ap.add_argument("--work", default="/dev/shm/bench-report-page")
    ap.add_argument("--workers", type=int, default=physical_cores())
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
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
    if args.no_browser:
        return
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


if __name__ == "__main__":
    main()
