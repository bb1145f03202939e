"""EMB predict on an 8192² tile: peak memory with the default model, streamed vs holding the whole raster.

Measured in one run by a fresh child process reading its own getrusage peak, before and after predict:
  baseline   torch, rasterio and the model loaded (DeepLabV3-ResNet50, 64 bands, 256² chips, K classes)
  streamed   the same process after `app.emb.predict` of an 8192² 64-band int8 raster (--overlap 0)
             that is nodata except one full-width stripe of 256 rows: one row of windows, every one
             valid, run in full batches. The streamed buffers depend on the width, the chip and the
             batch, never on the height, so this is the peak of a dense 8192² tile without the hours of
             CPU inference its other 31 rows of windows would take.
  whole      what predict used to hold for the same raster: K × H × W float32 probabilities (+ the
             class map), computed, not run.
The model is untrained (random weights): memory does not depend on the weights.

    .venv/bin/python bench/emb_predict.py [--size 8192] [--classes 8] [--batch 8] [--out bench/results/emb_predict_cpu.json]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHIP = 256
MODEL = "deeplabv3_resnet50"

CHILD = """
import json, resource, sys, time, torch
from app.emb.predict import _load_model, predict
_load_model(sys.argv[1], torch.device("cpu"))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
predict(sys.argv[1], sys.argv[2], sys.argv[3], overlap=0.0, batch=int(sys.argv[4]))
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_mib": round(base / 1024), "peak_mib": round(peak / 1024), "seconds": round(seconds, 1)}))
"""


def make_checkpoint(run_dir: Path, classes: int) -> None:
    import torch

    from app.emb import checkpoint
    from app.emb.model import build_model

    torch.manual_seed(0)
    net = build_model(MODEL, classes)
    names = ["non-crop", *(f"crop_{k}" for k in range(1, classes))]
    checkpoint.save(run_dir, {"step": 0, "model": net.state_dict(), "optimizer": {}, "scheduler": {}, "rng": [],
                              "config": {}, "classes": classes, "class_names": names, "model_name": MODEL,
                              "model_norm": "batch", "chip": CHIP, "weights_sha256": [checkpoint.weights_digest(net)]},
                    keep=1)


def make_raster(path: Path, size: int) -> None:
    """Sparse GeoTIFF (unwritten blocks read as nodata) with one dense stripe of CHIP rows in the middle."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from app.emb import BANDS
    from app.emb.quant import NODATA

    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=BANDS, dtype="int8", crs="EPSG:32633",
                   transform=rasterio.Affine(10, 0, 500_000, 0, -10, 6_650_000), nodata=NODATA, tiled=True,
                   blockxsize=256, blockysize=256, interleave="pixel", compress="zstd", sparse_ok=True)
    row = size // 2 // CHIP * CHIP
    with rasterio.open(path, "w", **profile) as dst:
        for col in range(0, size, 256):
            dst.write(rng.integers(-127, 128, (BANDS, CHIP, 256), dtype=np.int8), window=Window(col, row, 256, CHIP))


def child(*args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "emb_predict_cpu.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "run").mkdir()
        make_checkpoint(tmp / "run", args.classes)
        t = time.perf_counter()
        make_raster(tmp / "tile.tif", args.size)
        write_s = time.perf_counter() - t
        streamed = child(tmp / "run", tmp / "tile.tif", tmp / "out.tif", args.batch)
    whole_mib = (args.classes * 4 + 1) * args.size ** 2 / 2 ** 20
    results = {
        "host": platform.node(), "size": args.size, "model": MODEL, "chip": CHIP, "classes": args.classes,
        "batch": args.batch, "raster_write_s": round(write_s, 1), "windows_run": args.size // CHIP,
        "streamed": streamed,
        "streamed_growth_mib": streamed["peak_mib"] - streamed["base_mib"],
        "whole_raster_probabilities_mib": round(whole_mib),
        "whole_over_streamed_growth": round(whole_mib / max(1, streamed["peak_mib"] - streamed["base_mib"]), 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
