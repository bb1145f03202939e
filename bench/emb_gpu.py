"""EMB on one GPU, in one run (≤ 8 min on an H200): is the data path ever the bottleneck?

Side by side, on the same generated shards (written here with numpy only: no rasterio needed):
  loader          the shard data path alone: pread → pinned buffers → H2D on a side stream → int8→bf16
                  on the GPU, channels_last; chips/s (goal: ≥ 1.5 × the end-to-end step rate)
  ceiling         train steps on one batch already on the GPU (bf16 autocast + channels_last): compute only
  e2e             the same train steps fed by the shard loader (what `app.emb.train` runs)
  *_compiled      the same two with torch.compile (unless --no-compile)
  reference_loader  the baseline's DataLoader alone (chips/s), next to `loader`
  baseline        torchvision-reference style: autocast only, no channels_last, a plain DataLoader
                  (workers, pin_memory) over a map-style dataset that dequantises each chip on the CPU
MFU = FLOPs of one train step (torch.utils.flop_counter, fwd + bwd) × steps/s ÷ the GPU's dense bf16 peak.
Goals (issue 5): e2e ≥ 1,150 img/s; loader ≥ 1.5 × e2e. Anchors on the same H200: 1,211 compile-only,
637 reference-style autocast, 118 fp32.

Results: JSON at --out, rewritten after every phase (a timeout still leaves the phases done so far).
`--toy` runs the whole thing on a CPU at toy size (tiny chips, the smoke model, 3 steps, no compile) to
prove it runs.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.emb.threads import setup_threads  # noqa: E402

setup_threads()  # before torch: capped, passive OpenMP workers (the loader's threads need the cores)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.emb import BANDS  # noqa: E402
from app.emb.dist import Dist  # noqa: E402
from app.emb.loader import BlockSampler, ShardLoader  # noqa: E402
from app.emb.loss import PixelLoss  # noqa: E402
from app.emb.model import build_model  # noqa: E402
from app.emb.quant import dequantise, dequantise_np  # noqa: E402
from app.emb.shards import ShardSet, write_index, write_shard  # noqa: E402
from app.emb.train import train_step  # noqa: E402

CLASSES = 8
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "emb_gpu.json"))
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--chip", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--chips", type=int, default=768, help="chips in the generated shards (3 GiB at 256²)")
    p.add_argument("--shard-chips", type=int, default=256)
    p.add_argument("--block", type=int, default=8, help="data.block_chips")
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--loader-steps", type=int, default=60)
    p.add_argument("--read-threads", type=int, default=8)
    p.add_argument("--prefetch", type=int, default=4)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the baseline")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak; default by GPU name")
    p.add_argument("--budget-s", type=float, default=420, help="skip later phases once this much time is used")
    p.add_argument("--loader-only", action="store_true", help="only the two data paths (runs on a CPU too)")
    p.add_argument("--toy", action="store_true", help="CPU-sized smoke run: 32² chips, smoke model, 3 steps")
    args = p.parse_args(argv)
    if args.toy:
        args.model, args.chip, args.batch, args.chips, args.shard_chips = "lraspp_mobilenet_v3_large", 32, 4, 24, 12
        args.block, args.warmup, args.steps, args.loader_steps, args.workers = 2, 1, 3, 5, 2
        args.read_threads, args.prefetch = 2, 2
        args.no_compile = True  # inductor's CPU backend compiles C++ for minutes and says nothing about the GPU
    return args


def make_shards(root: Path, chips: int, chip: int, per_shard: int, seed: int = 0) -> None:
    """Random int8 chips (a pool of 8, rolled per chip: memcpy speed, not RNG speed) + blocky labels."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(-127, 128, (8, BANDS, chip, chip), dtype=np.int8)
    side = -(-chip // 16)
    coarse = rng.integers(0, CLASSES, (8, side, side), dtype=np.uint8)
    labels = np.kron(coarse, np.ones((16, 16), np.uint8))[:, :chip, :chip]  # 16 px patches of one class
    names = []
    for s, start in enumerate(range(0, chips, per_shard)):
        n = min(per_shard, chips - start)

        def fill(x, y, start=start, n=n):
            for i in range(n):
                x[i] = np.roll(pool[(start + i) % 8], start + i, axis=-1)
                y[i] = labels[(start + i) % 8]

        names.append(f"train-{s:05d}")
        write_shard(root, names[-1], n, chip, fill, {"fingerprint": "bench", "chips": []})
    write_index(root, {"splits": {"train": names, "val": []}, "chips": {"train": chips, "val": 0}, "chip": chip,
                       "bands": BANDS, "classes": CLASSES})


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ReferenceDataset(torch.utils.data.Dataset):
    """torchvision-reference style: one chip per __getitem__, dequantised (published rule) on the CPU."""

    def __init__(self, root):
        self.shards = ShardSet(root, "train")
        self.where = [(s, i) for s, n in enumerate(self.shards.counts) for i in range(n)]

    def __len__(self):
        return len(self.where)

    def __getitem__(self, k):
        s, i = self.where[k]
        shard = self.shards.shards[s]
        return torch.from_numpy(dequantise_np(shard.x[i])), torch.from_numpy(shard.y[i].astype(np.int64))


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.cuda = self.device.type == "cuda"
        self.t0 = time.perf_counter()
        self.results = {"device": torch.cuda.get_device_name(0) if self.cuda else platform.processor() or "cpu",
                        "torch": torch.__version__, "host": platform.node(),
                        "config": {k: v for k, v in vars(args).items() if k != "out"}, "phases": {}}

    def shard_dir(self):
        """/dev/shm when it has room (containers often give it 64 MiB: a full tmpfs SIGBUSes a memmap
        writer), else $TMPDIR or /tmp (the shards then sit in the page cache after writing)."""
        a = self.args
        need = a.chips * (BANDS + 1) * a.chip * a.chip * 1.2
        shm = "/dev/shm"
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > need:
            return shm
        return None

    def save(self):
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(self.results, indent=1))
        os.replace(tmp, out)

    def over_budget(self, phase):
        used = time.perf_counter() - self.t0
        if used > self.args.budget_s:
            self.results["phases"][phase] = {"skipped": f"time budget used ({used:.0f} s)"}
            self.save()
            return True
        return False

    def record(self, phase, **values):
        values["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        self.results["phases"][phase] = values
        print(f"{phase}: {json.dumps(values)}", flush=True)
        self.save()

    def loader(self, shards, channels_last=True):
        a = self.args
        sampler = BlockSampler(shards.counts, a.block, a.batch, 1, 0, seed=0)
        dtype = torch.bfloat16 if self.cuda else torch.float32
        return ShardLoader(shards, sampler, self.device, a.prefetch, a.read_threads, dtype, channels_last and self.cuda)

    def model(self, channels_last):
        torch.manual_seed(0)
        model = build_model(self.args.model, CLASSES).to(self.device)
        if channels_last and self.cuda:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        return model, opt

    def time_steps(self, model, opt, batches, amp):
        """img/s over args.steps train steps after args.warmup, from an iterator of (x, y); the loss is
        app.emb.train's (cross-entropy over the labelled pixels of the global batch)."""
        loss_fn = PixelLoss(torch, Dist(torch), None, self.device)
        a = self.args
        for _ in range(a.warmup):
            x, y = next(batches)
            train_step(model, opt, None, loss_fn, x, y, amp)
        sync(self.device)
        start = time.perf_counter()
        for _ in range(a.steps):
            x, y = next(batches)
            loss = train_step(model, opt, None, loss_fn, x, y, amp)
        loss.item()  # syncs
        sync(self.device)
        return a.steps * a.batch / (time.perf_counter() - start)

    def reference_dataloader(self, root):
        return torch.utils.data.DataLoader(ReferenceDataset(root), batch_size=self.args.batch, shuffle=True,
                                           num_workers=self.args.workers, pin_memory=self.cuda, drop_last=True,
                                           persistent_workers=True)

    def reference_batches(self, dl):
        while True:
            for xb, yb in dl:
                yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def reference_loader(self, root):
        """The baseline's DataLoader alone, delivering to the device like the shard loader."""
        a = self.args
        dl = self.reference_dataloader(root)
        batches = self.reference_batches(dl)
        next(batches)
        sync(self.device)
        steps = max(2, a.loader_steps // 4)  # it is slow: fewer batches give the same rate
        start = time.perf_counter()
        for _ in range(steps):
            next(batches)
        sync(self.device)
        self.record("reference_loader", chips_s=round(steps * a.batch / (time.perf_counter() - start), 1),
                    workers=a.workers)
        del batches, dl

    def flops_per_image(self, model, x, y):
        from torch.utils.flop_counter import FlopCounterMode

        loss_fn = PixelLoss(torch, Dist(torch), None, self.device)
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cuda):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
        model.zero_grad(set_to_none=True)
        return counter.get_total_flops() / x.shape[0]

    def run(self):
        a = self.args
        with tempfile.TemporaryDirectory(dir=self.shard_dir()) as tmp:
            root = Path(tmp)
            t = time.perf_counter()
            make_shards(root, a.chips, a.chip, a.shard_chips)
            self.record("shards", chips=a.chips, bytes=sum(p.stat().st_size for p in root.iterdir()),
                        write_s=round(time.perf_counter() - t, 1))
            shards = ShardSet(root, "train")
            total = a.warmup + a.steps

            # 1. The data path alone.
            loader = self.loader(shards)
            it = loader.batches(0, a.loader_steps + 2)
            next(it), next(it)  # fill the pipeline
            sync(self.device)
            start = time.perf_counter()
            for _ in range(a.loader_steps):
                _, x, y = next(it)
            sync(self.device)
            loader_rate = a.loader_steps * a.batch / (time.perf_counter() - start)
            it.close()
            loader.close()
            self.record("loader", chips_s=round(loader_rate, 1), gb_s=round(loader_rate * a.chip ** 2 * (BANDS + 1) / 1e9, 2))
            self.reference_loader(root)
            if a.loader_only:
                shards.close()
                return

            # 2. Compute ceiling: one batch resident on the GPU, bf16 autocast + channels_last.
            model, opt = self.model(channels_last=True)
            first = shards.shards[0]
            x = dequantise(torch.from_numpy(np.array(first.x[:a.batch])).to(self.device),
                           torch.bfloat16 if self.cuda else torch.float32, self.cuda)
            y = torch.from_numpy(np.array(first.y[:a.batch])).to(self.device).long()
            flops = self.flops_per_image(model, x, y)
            rate = self.time_steps(model, opt, iter(lambda: (x, y), None), self.cuda)
            self.record("ceiling", img_s=round(rate, 1), gflop_per_img=round(flops / 1e9, 2))

            # 3. End to end from the shards.
            loader = self.loader(shards)
            batches = ((x, y) for _, x, y in loader.batches(0, total))
            rate = self.time_steps(model, opt, batches, self.cuda)
            loader.close()
            self.record("e2e", img_s=round(rate, 1))
            del model, opt

            # 4. Reference-style baseline.
            if not self.over_budget("baseline"):
                model, opt = self.model(channels_last=False)
                dl = self.reference_dataloader(root)
                rate = self.time_steps(model, opt, self.reference_batches(dl), self.cuda)
                self.record("baseline", img_s=round(rate, 1), workers=a.workers)
                del model, opt, dl

            # 5. torch.compile: ceiling and end to end.
            if not a.no_compile and not self.over_budget("ceiling_compiled"):
                model, opt = self.model(channels_last=True)
                compiled = torch.compile(model)
                t = time.perf_counter()
                self.time_steps(compiled, opt, iter(lambda: (x, y), None), self.cuda)  # compiles in warm-up
                rate = self.time_steps(compiled, opt, iter(lambda: (x, y), None), self.cuda)
                self.record("ceiling_compiled", img_s=round(rate, 1), with_compile_s=round(time.perf_counter() - t, 1))
                if not self.over_budget("e2e_compiled"):
                    loader = self.loader(shards)
                    batches = ((xb, yb) for _, xb, yb in loader.batches(0, total))
                    rate = self.time_steps(compiled, opt, batches, self.cuda)
                    loader.close()
                    self.record("e2e_compiled", img_s=round(rate, 1))
            shards.close()
        self.summarise(flops)

    def summarise(self, flops):
        p = self.results["phases"]
        rate = lambda k: p.get(k, {}).get("img_s")  # noqa: E731
        best_e2e = max(filter(None, (rate("e2e"), rate("e2e_compiled"))))
        peak = self.args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items()
                                              if k in self.results["device"]), None)
        summary = {"best_e2e_img_s": best_e2e, "loader_over_best_e2e": round(p["loader"]["chips_s"] / best_e2e, 2),
                   "loader_over_reference_loader": round(p["loader"]["chips_s"] / p["reference_loader"]["chips_s"], 2),
                   "peak_bf16_tflops": peak}
        for k in ("ceiling", "e2e", "baseline", "ceiling_compiled", "e2e_compiled"):
            if rate(k):
                summary[f"{k}_tflops"] = round(rate(k) * flops / 1e12, 1)
                if peak:
                    summary[f"{k}_mfu"] = round(rate(k) * flops / 1e12 / peak, 3)
        for num, den in (("e2e", "ceiling"), ("e2e_compiled", "ceiling_compiled"), ("e2e", "baseline"),
                         ("e2e_compiled", "baseline")):
            if rate(num) and rate(den):
                summary[f"{num}_over_{den}"] = round(rate(num) / rate(den), 2)
        summary["goal_e2e_1150"] = best_e2e >= 1150
        summary["goal_loader_1_5x"] = summary["loader_over_best_e2e"] >= 1.5
        self.results["summary"] = summary
        print(json.dumps(summary, indent=1), flush=True)
        self.save()


def main(argv=None):
    args = parse_args(argv)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif not (args.toy or args.loader_only):
        print("emb_gpu: no CUDA device; use --toy or --loader-only on a CPU", file=sys.stderr)
        return 2
    Bench(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
