"""DDP training: `torchrun --nproc_per_node=N -m app.emb.train --config FILE [section.key=value ...]`.

Also runs as plain `python -m app.emb.train ...` (one process, no process group).

- Backend NCCL when CUDA is available, gloo otherwise (app.emb.dist). Threads: physical cores of this
  process split over the node's ranks (LOCAL_WORLD_SIZE).
- Loss: cross-entropy over every labelled pixel of the global batch (app.emb.loss), optionally
  class-weighted (train.class_weights), so any world size computes the same gradient.
- Progress: rank 0 logs step, loss, lr, img/s and ETA every train.log_every steps to stderr (the job
  log) and to metrics.jsonl; each validation adds per-class IoU, precision, recall and the confusion
  matrix there, and redraws curves.png and confusion.png (app.emb.plots). An empty validation split
  is said as such (a "validation": "none" record with the reason), never scored as mIoU 0.
- Stops (app.emb.stop): SIGUSR2/SIGTERM/SIGINT only set a flag; at the next step boundary the ranks
  agree (all_reduce MAX), rank 0 writes a checkpoint, and every rank exits 75 (requeue me) or 130
  (interrupted). torchrun reports a failed worker as its own exit 1, so rank 0 also writes
  `run.dir/status.json`, the contract the Slurm wrapper decides from: one flat JSON line
  {"state": "running" | "requeue" | "interrupted" | "done", "step": N, "job": SLURM_JOB_ID or null,
  "restart": SLURM_RESTART_COUNT or null}.
- Checkpoints (app.emb.checkpoint): every ckpt_every steps and at the end, with each rank's weight
  digest: ranks whose weights differ (a broken gradient all-reduce) stop the run with exit 1.
  Start-up resumes from the newest valid checkpoint (unusable ones are skipped with a warning and
  renamed aside); a run whose checkpoint is already at train.steps exits 0 at once.
- Exit codes: 0 done, 75 checkpointed for requeue, 130 checkpointed after SIGINT, 2 bad config,
  3 environment/IO, 1 training failed. Every failure is one stderr line (app.errors.guarded).
"""

import json
import math
import os
import sys
import time
from pathlib import Path

from app.emb.dist import Dist
from app.emb.stop import EXIT_REQUEUE, StopFlag
from app.errors import EXIT_INTERRUPTED, EXIT_OK, BadInput, guarded

STOP_STATES = {EXIT_REQUEUE: "requeue", EXIT_INTERRUPTED: "interrupted"}


def _log(msg: str) -> None:
    print(f"train: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    from app.errors import UsageParser

    parser = UsageParser(prog="python -m app.emb.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML file (keys not given come from configs/default.toml)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    return parser.parse_args(argv)


def train_step(model, opt, sched, loss_fn, x, y, amp: bool):
    """One optimizer step (bf16 autocast when amp); returns the loss tensor without syncing the GPU."""
    import torch

    with torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        loss = loss_fn(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return loss


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then torchvision reference's polynomial decay (power 0.9)."""
    if step < warmup:
        return (step + 1) / warmup
    return (1 - (step - warmup) / max(1, total - warmup)) ** 0.9


def _status_line(state: str, step: int) -> bytes:
    """status.json: one flat JSON line (the Slurm wrapper reads it with a regex, no Python on the host)."""
    restart = os.environ.get("SLURM_RESTART_COUNT")
    return json.dumps({"state": state, "step": step, "job": os.environ.get("SLURM_JOB_ID"),
                       "restart": int(restart) if restart is not None else None}).encode()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Trainer:
    def __init__(self, config: dict, torch):
        from app.emb.config import check_world
        from app.emb.loader import BlockSampler
        from app.emb.shards import ShardSet, read_index

        self.torch, self.config = torch, config
        self.data, self.tcfg = config["data"], config["train"]
        self.run_dir = Path(config["run"]["dir"])
        try:
            self.index = read_index(self.data["shards"])
        except (OSError, ValueError) as exc:
            raise BadInput(f"data.shards {self.data['shards']} is not a shard directory ({exc})") from None
        self.dist = Dist(torch)
        self.per_rank = check_world(config, self.dist.world)
        self.classes = self.index["classes"]
        self.class_names = self.index.get("class_names") or [str(k) for k in range(self.classes)]
        self.train_set = ShardSet(self.data["shards"], "train")
        self.val_set = ShardSet(self.data["shards"], "val")
        try:
            self.sampler = BlockSampler(self.train_set.counts, self.data["block_chips"], self.tcfg["batch_size"],
                                        self.dist.world, self.dist.rank, self.tcfg["seed"])
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        if self.tcfg["deterministic"]:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
        self.cuda = self.dist.device.type == "cuda"
        self.amp = self.cuda and self.tcfg["amp"]
        self.channels_last = self.cuda and self.tcfg["channels_last"]
        self.warned_no_plots = False

    # --- model, optimizer, schedule, loss ------------------------------------------------------------
    def _build(self):
        torch = self.torch
        from app.emb.model import build_model

        torch.manual_seed(self.tcfg["seed"])  # the same initial weights for any world size
        mcfg = self.config["model"]
        raw = build_model(mcfg["name"], self.classes, mcfg["norm"]).to(self.dist.device)
        if self.cuda and self.dist.world > 1 and mcfg["sync_bn"] and mcfg["norm"] == "batch":
            raw = torch.nn.SyncBatchNorm.convert_sync_batchnorm(raw)
        if self.channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        params = [p for p in raw.parameters() if p.requires_grad]
        if self.tcfg["optimizer"] == "sgd":
            opt = torch.optim.SGD(params, lr=self.tcfg["lr"], momentum=self.tcfg["momentum"],
                                  weight_decay=self.tcfg["weight_decay"])
        else:
            opt = torch.optim.AdamW(params, lr=self.tcfg["lr"], weight_decay=self.tcfg["weight_decay"])
        steps, warmup = self.tcfg["steps"], self.tcfg["warmup_steps"]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, steps))
        model = raw
        if self.dist.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                raw, device_ids=[self.dist.local_rank] if self.cuda else None)
        if self.tcfg["compile"]:
            model = torch.compile(model)
        return raw, model, opt, sched

    def _loss(self):
        from app.emb.loss import PixelLoss, class_weights

        weights = class_weights(self.index["class_pixels"]["train"], self.classes, self.tcfg["class_weights"])
        if weights is not None and self.dist.rank == 0:
            _log("class weights (" + self.tcfg["class_weights"] + "): " +
                 ", ".join(f"{n} {w:.2f}" for n, w in zip(self.class_names, weights)))
        return PixelLoss(self.torch, self.dist, weights, self.dist.device)

    # --- checkpoints ------------------------------------------------------------------------------
    def _rng_state(self):
        torch = self.torch
        state = {"cpu": torch.get_rng_state()}
        if self.cuda:
            state["cuda"] = torch.cuda.get_rng_state(self.dist.device)
        return state

    def _save(self, step, raw, opt, sched):
        from app.emb import checkpoint

        rng = self.dist.gather(self._rng_state())  # every rank takes part
        digests = self.dist.gather(checkpoint.weights_digest(raw))
        if len(set(digests)) > 1:
            raise RuntimeError(f"ranks hold different weights at step {step} (the gradient all-reduce is broken); "
                               "not checkpointing")
        if self.dist.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            mcfg = self.config["model"]
            path = checkpoint.save(self.run_dir, {
                "step": step, "model": raw.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": rng, "config": self.config, "classes": self.classes,
                "class_names": self.class_names, "chip": self.index["chip"], "world": self.dist.world,
                "model_name": mcfg["name"], "model_norm": mcfg["norm"], "weights_sha256": digests,
            }, keep=self.tcfg["keep_ckpts"])
            _log(f"checkpoint {path.name}")
        self.dist.barrier()

    def _resume(self, raw, opt, sched) -> int:
        from app.emb import checkpoint

        chosen = None
        if self.dist.rank == 0:
            found = checkpoint.newest_valid(self.run_dir, sweep=True)
            chosen = str(found[0]) if found else None
        chosen = self.dist.broadcast(chosen)
        if chosen is None:
            return 0
        state = checkpoint.load(chosen)
        mcfg = self.config["model"]
        if (state["model_name"], state["model_norm"], state["classes"]) != (mcfg["name"], mcfg["norm"], self.classes):
            raise BadInput(f"run.dir holds a checkpoint of {state['model_name']} ({state['model_norm']} norm) with "
                           f"{state['classes']} classes; this config trains {mcfg['name']} ({mcfg['norm']} norm) "
                           f"with {self.classes}")
        raw.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng = state["rng"]
        if len(rng) == self.dist.world:
            self.torch.set_rng_state(rng[self.dist.rank]["cpu"])
            if self.cuda and "cuda" in rng[self.dist.rank]:
                self.torch.cuda.set_rng_state(rng[self.dist.rank]["cuda"], self.dist.device)
        else:
            _log(f"warning: checkpoint came from {len(rng)} ranks, now {self.dist.world}: RNG reseeded")
            self.torch.manual_seed(self.tcfg["seed"] * 100_003 + state["step"] * 1_009 + self.dist.rank)
        if self.dist.rank == 0:
            _log(f"resumed from {Path(chosen).name} (step {state['step']})")
        return state["step"]

    def _status(self, state: str, step: int) -> None:
        if self.dist.rank == 0:
            from app.hpc.atomic import atomic_write_bytes

            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.run_dir / "status.json", _status_line(state, step))

    # --- evaluation -------------------------------------------------------------------------------
    def _no_validation(self) -> str | None:
        if self.val_set.total == 0:
            return "the val split holds no chips (prepare --val-frac 0, or too few spatial blocks)"
        return None

    def _evaluate(self, raw, step: int) -> dict:
        torch = self.torch
        from app.emb.loader import eval_batches
        from app.emb.metrics import confusion, scores
        from app.emb.quant import dequantise

        reason = self._no_validation()
        if reason:
            return {"step": step, "validation": "none", "reason": reason}
        conf = torch.zeros((self.classes, self.classes), dtype=torch.int64, device=self.dist.device)
        raw.eval()
        with torch.no_grad(), torch.autocast(self.dist.device.type, torch.bfloat16, enabled=self.amp):
            for x, y in eval_batches(self.val_set, self.dist.rank, self.dist.world, self.tcfg["eval_batch_size"]):
                embeddings = dequantise(torch.from_numpy(x).to(self.dist.device), channels_last=self.channels_last)
                pred = raw(embeddings).argmax(1)
                conf += confusion(pred, torch.from_numpy(y).to(self.dist.device), self.classes)
        raw.train()
        conf = self.dist.all_reduce_sum(conf).cpu()
        if not int(conf.sum()):
            return {"step": step, "validation": "none", "reason": "the val split has no labelled pixels"}
        return {"step": step, **scores(conf, self.class_names)}

    def _report(self, log, record: dict) -> None:
        """Rank 0: the validation record to metrics.jsonl and the job log, and the PNGs redrawn."""
        from app.emb import plots
        from app.emb.metrics import read_metrics

        log.write(record)
        if record.get("validation") == "none":
            _log(f"step {record['step']}: no validation: {record['reason']}")
        else:
            per_class = ", ".join(f"{n} {v:.3f}" if v is not None else f"{n} -"
                                  for n, v in zip(record["classes"], record["iou"]))
            _log(f"step {record['step']}: val mIoU {record['miou']:.4f} (IoU {per_class})")
        try:
            if record.get("validation") != "none":
                plots.confusion_matrix(record, self.run_dir / plots.CONFUSION)
            plots.training_curves(read_metrics(self.run_dir), self.run_dir / plots.CURVES)
        except ImportError:  # a bare torch environment (a GPU benchmark node): metrics.jsonl has every number
            if not self.warned_no_plots:
                _log("warning: matplotlib is not installed: no PNGs (metrics.jsonl holds the same numbers)")
            self.warned_no_plots = True

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> int:
        torch = self.torch
        from app.emb.loader import ShardLoader
        from app.emb.metrics import MetricsLog

        raw, model, opt, sched = self._build()
        start = self._resume(raw, opt, sched)
        steps = self.tcfg["steps"]
        if start >= steps:
            if self.dist.rank == 0:
                _log(f"already complete at step {start}")
            self._status("done", start)
            return EXIT_OK
        if start == 0:
            torch.manual_seed(self.tcfg["seed"] * 100_003 + self.dist.rank)  # per-rank dropout streams
        log = MetricsLog(self.run_dir, start) if self.dist.rank == 0 else None
        if log and self._no_validation():
            _log(f"warning: no validation scores will be reported: {self._no_validation()}")
        self._status("running", start)
        _start_banner(torch, self.dist)
        loader = ShardLoader(self.train_set, self.sampler, self.dist.device, self.data["prefetch"],
                             self.data["read_threads"], torch.bfloat16 if self.amp else torch.float32,
                             self.channels_last)
        loss_fn = self._loss()
        model.train()
        began = tick = time.perf_counter()
        tick_step = start
        try:
            for step, x, y in loader.batches(start, steps):
                code = self.dist.max(stop.code)
                if code:
                    self._save(step, raw, opt, sched)
                    self._status(STOP_STATES[code], step)
                    if self.dist.rank == 0:
                        _log(f"stop signal: checkpointed at step {step}, exiting {code} ({STOP_STATES[code]})")
                    return code
                loss = train_step(model, opt, sched, loss_fn, x, y, self.amp)
                done = step + 1
                if done % self.tcfg["log_every"] == 0 or done == steps:
                    mean_loss = self.dist.all_reduce_sum(loss.detach().clone()).item() / self.dist.world
                    if not math.isfinite(mean_loss):  # checked at log steps only: .item() syncs the GPU
                        raise RuntimeError(f"loss is not finite at step {done}")
                    now = time.perf_counter()
                    rate = (done - tick_step) * self.tcfg["batch_size"] / (now - tick)
                    eta = (steps - done) * (now - began) / (done - start)
                    tick, tick_step = now, done
                    if log:
                        lr = sched.get_last_lr()[0]
                        log.write({"step": done, "loss": mean_loss, "lr": lr, "img_s": rate, "eta_s": round(eta, 1)})
                        _log(f"step {done}/{steps} loss {mean_loss:.4f} lr {lr:.3g} {rate:.1f} img/s "
                             f"eta {_clock(eta)}")
                if done % self.tcfg["eval_every"] == 0 or done == steps:
                    record = self._evaluate(raw, done)
                    if log:
                        self._report(log, record)
                if done % self.tcfg["ckpt_every"] == 0 or done == steps:
                    self._save(done, raw, opt, sched)
        finally:
            loader.close()
        self._status("done", steps)
        return EXIT_OK


INTEROP_THREADS = 2  # inter-op parallelism: a DDP step has little; more threads only contend


def _start_banner(torch, dist) -> None:
    """What this rank runs on, in the job log: rank 0 the software and GPUs, every rank its binding.
    Printed once training begins (set-up errors stay one line)."""
    from app.hpc.gpus import banner

    if dist.rank == 0:
        print(f"train: {banner(torch, dist.device.type)}", file=sys.stderr)
    cpus = sorted(os.sched_getaffinity(0))
    print(f"train: rank {dist.rank} (local {dist.local_rank}) on {os.uname().nodename}: CPUs {_ranges(cpus)} "
          f"({len(cpus)}), torch threads {torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} "
          f"inter-op, device {dist.device}", file=sys.stderr)


def _ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (as Linux writes CPU lists)."""
    out, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            out.append(f"{start}-{c}" if c != start else str(c))
            start = None
    return ",".join(out)


def _train(argv, threads: int) -> int:
    from app.emb.config import load_config

    stop = StopFlag()  # first: a stop during start-up is honoured at the first step boundary
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    import torch

    torch.set_num_threads(threads)
    interop = min(INTEROP_THREADS, threads)
    if torch.get_num_interop_threads() != interop:
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError:  # settable once per process: a second run in the same process keeps the first
            pass
    trainer = Trainer(config, torch)
    try:
        return trainer.run(stop)
    finally:
        trainer.dist.close()


def main(argv=None) -> int:
    from app.emb.threads import setup_threads

    threads = setup_threads()  # before torch is imported, so its pools start capped
    return guarded("train: error", _train, argv, threads)


if __name__ == "__main__":
    code = main()
    # Skip interpreter finalisation: with the process group gone and checkpoints fsynced there is
    # nothing left to tear down, and C++ threads (gloo, OpenMP) torn down at exit can abort a rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
