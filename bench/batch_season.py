"""Batch vs naive loop on a generated season (default 13,510 fields), on the same cores, one run.

  nice python bench/batch_season.py [--season DIR] [--fields 13510] [--workers N] [--sample 48]
                                    [--work DIR] [--image sure2.sif]

- batch:  `python -m app.batch run --backend inproc`, timed end to end (start-up, plan, workers,
          report and map included); the report gives the sum of per-field compute.
- naive:  one `python -m app.sure2 assess ID` process per field, N processes at a time, timed on an
          evenly spread sample of fields and EXTRAPOLATED to the season (printed as such).
          With --image, also one `apptainer run SIF ID` per field (same sampling).
- overhead = batch wall ÷ (sum of per-field compute ÷ workers)   (1.00 = no orchestration cost)
- verification of the batch's outputs: per file, footer only vs the whole file with page checksums
  (app.sure2.output.check_output), and `batch plan` trusting the journal's records vs `--verify full`.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.batch.backends import apptainer_prefix, sure2_cli_prefix  # noqa: E402
from app.hpc.cores import physical_cores  # noqa: E402


def season_dir(args, work: Path) -> Path:
    if args.season:
        return Path(args.season)
    season = work / f"season-{args.fields}"
    if not (season / "season.json").exists():
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "app.season", "synth", "--fields", str(args.fields), "--seed", "1",
                        "--out", str(season)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"generated {args.fields} fields in {time.monotonic() - t0:.0f} s: {season}", flush=True)
    return season


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def time_batch(season: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "app.batch", "run", "--data", str(season), "--out", str(out),
           "--workers", str(workers), "--quiet", "--progress-every", "60"]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.monotonic() - t0
    run = json.loads((out / ".batch" / "report.json").read_text())["run"]
    assert run["done"] == run["requested"], run
    return {"wall_s": wall, "workers_phase_s": run["wall_s"], "compute_s": run["compute_s"], "fields": run["done"]}


def time_verification(season: Path, out: Path) -> dict:
    """ms per output: footer only vs whole file; seconds of `batch plan`: trusted vs --verify full."""
    from app.sure2.assess import expected
    from app.sure2.output import check_output
    from app.sure2.season import Season
    from app.sure2.settings import Settings

    rows = {}
    with Season.open(season) as s:
        wanted = [(out / f"{fid}.parquet", expected(s, fid, Settings())) for fid in s.field_ids]
    for full in (False, True):
        t0 = time.perf_counter()
        assert all(check_output(path, want, full=full) is None for path, want in wanted)
        rows["whole file" if full else "footer only"] = (time.perf_counter() - t0) * 1e3 / len(wanted)
    for verify in ("trusted", "full"):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "app.batch", "plan", "--data", str(season), "--out", str(out),
                        "--verify", verify], check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows[f"plan --verify {verify}"] = time.perf_counter() - t0
    return rows


def time_naive(prefix_for, ids: list, workers: int) -> float:
    """Wall seconds to assess `ids` with one process per field, `workers` at a time."""
    def one(fid):
        subprocess.run(prefix_for(fid), check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, ids))
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--season")
    ap.add_argument("--fields", type=int, default=13510)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--sample", type=int, default=48)
    ap.add_argument("--work", default=None, help="scratch dir (default: a new temp dir)")
    ap.add_argument("--image", help="also time `apptainer run SIF ID` per field")
    args = ap.parse_args()
    workers = args.workers or physical_cores()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-batch-"))
    season = season_dir(args, work)

    from app.sure2.season import Season

    with Season.open(season) as s:
        ids = list(s.field_ids)
    step = max(1, len(ids) // args.sample)
    sample = ids[::step][: args.sample]

    batch = time_batch(season, fresh(work / "out-batch"), workers)
    verification = time_verification(season, work / "out-batch")
    naive_out = fresh(work / "out-naive")
    naive_s = time_naive(lambda fid: sure2_cli_prefix(season, naive_out)[:-4] + [fid, "--data", str(season),
                                                                              "--out", str(naive_out)],
                         sample, workers)
    naive_total = naive_s * len(ids) / len(sample)
    rows = {
        "fields": len(ids),
        "workers (physical cores)": workers,
        "batch wall, end to end (s)": round(batch["wall_s"], 1),
        "batch workers phase (s)": batch["workers_phase_s"],
        "sum of per-field compute (s)": batch["compute_s"],
        "orchestration overhead": round(batch["wall_s"] / (batch["compute_s"] / workers), 3),
        "overhead, workers phase only": round(batch["workers_phase_s"] / (batch["compute_s"] / workers), 3),
        f"naive python per field: {len(sample)} sampled (s)": round(naive_s, 1),
        "naive python, EXTRAPOLATED to the season (s)": round(naive_total),
        "speed-up batch vs naive python": round(naive_total / batch["wall_s"], 1),
        "verify one output: footer only (ms)": round(verification["footer only"], 3),
        "verify one output: whole file, page checksums (ms)": round(verification["whole file"], 3),
        "plan, trusting the journal's records (s)": round(verification["plan --verify trusted"], 1),
        "plan --verify full (s)": round(verification["plan --verify full"], 1),
    }
    if args.image:
        sif_out = fresh(work / "out-sif")
        sif_s = time_naive(lambda fid: apptainer_prefix(args.image, sif_out) + [fid], sample, workers)
        rows["naive apptainer run per field, EXTRAPOLATED (s)"] = round(sif_s * len(ids) / len(sample))
        rows["speed-up batch vs naive apptainer"] = round(sif_s * len(ids) / len(sample) / batch["wall_s"], 1)
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
