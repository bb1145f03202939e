"""sure2.sif numbers, measured side by side in one run on the same cores:

    .venv/bin/python bench/images_sure2.py [--runs 7] [--fields 100] [--workers N] [--no-rebuild]

- size of build/sure2.sif (goal <= 150 MB) and of base.sif under it;
- rebuild of sure2.sif on the cached base (`build.py sure2 --force`; goal <= 30 s);
- one field, a fresh process each time: `apptainer run --containall --cleanenv SIF ID` against
  `apptainer exec ... SIF true` (the container's own start-up) and `python -m app.sure2 assess ID`
  from the venv, interleaved (median of --runs; goal <= 1.0 s), and the first run
  after dropping the page cache (root only) as the truly cold case;
- per-field cost of a batch over the same --fields fields: `app.batch run --backend apptainer`
  (one container per chunk) against `--backend inproc`, same workers;
- with --train: `import torch, torchvision` in build/train.sif against the venv (what every
  training job pays once per process).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.hpc.cores import physical_cores  # noqa: E402

BUILD = ROOT / "build"
SIF = BUILD / "sure2.sif"


def timed(cmd, **kw) -> float:
    return timed_cpu(cmd, **kw)[0]


def timed_cpu(cmd, **kw) -> tuple[float, float]:
    """(wall, user+sys CPU of the command and its children): CPU is what a busy machine inflates least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def one_field(season: Path, field: str, runs: int, work: Path) -> dict:
    out = work / "one"
    out.mkdir()
    image = ["apptainer", "-s", "run", "--containall", "--cleanenv", "--bind", f"{out}:/out", SIF, field]
    venv = [sys.executable, "-m", "app.sure2", "assess", field, "--data", season, "--out", out]
    true = ["apptainer", "-s", "exec", "--containall", "--cleanenv", SIF, "true"]  # the container's own start-up
    result = {"cold_after_drop_caches_s": timed(image) if drop_page_cache() else None}
    image_s, venv_s, true_s = [], [], []
    for _ in range(runs):  # interleaved, so load changes hit all alike
        image_s.append(timed_cpu(image))
        venv_s.append(timed_cpu(venv, cwd=ROOT))
        true_s.append(timed_cpu(true))
    for name, samples in (("image", image_s), ("venv", venv_s), ("exec_true", true_s)):
        result[f"{name}_median_s"] = statistics.median(w for w, _ in samples)
        result[f"{name}_median_cpu_s"] = statistics.median(c for _, c in samples)
    return result


def batch_per_field(season: Path, fields: list, workers: int, work: Path) -> dict:
    ids = work / "ids.txt"
    ids.write_text("\n".join(fields) + "\n")
    per_field = {}
    for backend in ("inproc", "apptainer"):
        out = work / f"batch-{backend}"
        out.mkdir()
        cmd = [sys.executable, "-m", "app.batch", "run", "--data", season, "--out", out, "--fields", ids,
               "--workers", workers, "--quiet", "--backend", backend]
        if backend == "apptainer":
            cmd += ["--image", SIF]
        per_field[backend] = timed(cmd, cwd=ROOT) / len(fields)
    return per_field


def train_startup(runs: int) -> dict:
    code = "import torch, torchvision"
    image = ["apptainer", "-s", "exec", "--containall", "--cleanenv", BUILD / "train.sif", "python", "-c", code]
    venv = [sys.executable, "-c", code]
    samples = {"image": [], "venv": []}
    for _ in range(runs):
        samples["image"].append(timed_cpu(image))
        samples["venv"].append(timed_cpu(venv))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--fields", type=int, default=100)
    parser.add_argument("--workers", type=int, default=physical_cores())
    parser.add_argument("--no-rebuild", action="store_true", help="skip the rebuild timing")
    parser.add_argument("--train", action="store_true", help="also time torch start-up in train.sif")
    args = parser.parse_args()

    manifest = json.loads((BUILD / "manifest.json").read_text())
    season = Path(manifest["sure2"]["versions"]["season"])
    from app.sure2.season import Season

    with Season.open(season) as s:
        fields = s.field_ids[: args.fields]

    rebuild_s = None
    if not args.no_rebuild:
        rebuild_s = timed([sys.executable, "build.py", "sure2", "--force"], cwd=ROOT)
        manifest = json.loads((BUILD / "manifest.json").read_text())

    train = train_startup(args.runs) if args.train else None
    work = Path(tempfile.mkdtemp(prefix="bench-images-", dir="/dev/shm"))
    try:
        one = one_field(season, fields[0], args.runs, work)
        batch = batch_per_field(season, fields, args.workers, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = 1e6
    print(f"sure2.sif size                 {manifest['sure2']['size_bytes'] / mb:7.1f} MB   (goal <= 150; base.sif "
          f"{manifest['base']['size_bytes'] / mb:.1f} MB)")
    if rebuild_s is not None:
        print(f"sure2 rebuild on cached base   {rebuild_s:7.1f} s    (goal <= 30; apptainer build alone "
              f"{manifest['sure2']['build_seconds']:.1f} s, the rest: wheel + hashing)")
    if one["cold_after_drop_caches_s"] is not None:
        print(f"one field, page cache dropped  {one['cold_after_drop_caches_s']:7.2f} s")
    print(f"one field, apptainer run       {one['image_median_s']:7.2f} s    (median of {args.runs}; goal <= 1.0; "
          f"CPU {one['image_median_cpu_s']:.2f} s)")
    print(f"container start, exec true     {one['exec_true_median_s']:7.2f} s    (CPU {one['exec_true_median_cpu_s']:.2f} s; "
          f"the field itself costs {one['image_median_s'] - one['exec_true_median_s']:.2f} s more)")
    print(f"one field, venv CLI            {one['venv_median_s']:7.2f} s    (CPU {one['venv_median_cpu_s']:.2f} s; "
          f"image / venv = {one['image_median_s'] / one['venv_median_s']:.2f} wall, "
          f"{one['image_median_cpu_s'] / one['venv_median_cpu_s']:.2f} CPU)")
    print(f"machine load average           {os.getloadavg()[0]:7.2f}      on {os.cpu_count()} logical CPUs")
    print(f"batch per field, inproc        {batch['inproc'] * 1e3:7.1f} ms   ({len(fields)} fields, {args.workers} workers)")
    print(f"batch per field, apptainer     {batch['apptainer'] * 1e3:7.1f} ms   "
          f"(apptainer / inproc = {batch['apptainer'] / batch['inproc']:.2f})")
    if train:
        (iw, ic), (vw, vc) = train["image"], train["venv"]
        print(f"torch import, train.sif        {iw:7.2f} s    (CPU {ic:.2f} s; venv {vw:.2f} s, CPU {vc:.2f} s; "
              f"image / venv = {iw / vw:.2f} wall)")



if __name__ == "__main__":
    main()
