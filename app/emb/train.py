"""DDP training: `torchrun --nproc_per_node=N -m app.emb.train --config FILE [section.key=value ...]`.

Also runs as plain `python -m app.emb.train ...` (one process, no process group).

- Backend NCCL when CUDA is available, gloo otherwise; control messages (the stop flag, RNG states,
  the checkpoint choice) go over a gloo group so they never force a GPU sync.
- Threads: physical cores of this process split over the node's ranks (LOCAL_WORLD_SIZE).
- Requeue: SIGUSR2 and SIGTERM (never SIGUSR1: NCCL uses it) only set a flag; at the next step boundary
  the ranks agree (all_reduce MAX), rank 0 writes a checkpoint, and every rank exits 75 (EX_TEMPFAIL:
  "checkpointed, please requeue"). torchrun reports a failed worker as its own exit 1, so rank 0 also
  writes `run.dir/status.json` ({"state": "requeue" | "done", "step": N}) for wrappers to read.
- Start-up resumes from the newest valid checkpoint in run.dir (unusable ones are skipped with a warning);
  a run whose checkpoint is already at train.steps exits 0 at once.
- Exit codes: 0 done, 75 checkpointed for requeue, 2 bad config, 3 environment/IO, 1 training failed.
"""

import ctypes
import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from app.errors import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, BadInput, EnvironmentFailure, exit_status, is_storage_error

EXIT_REQUEUE = 75  # EX_TEMPFAIL
STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


def _log(msg: str) -> None:
    print(f"train: {msg}", file=sys.stderr, flush=True)


class StopFlag:
    """Set by SIGUSR2/SIGTERM; read only at step boundaries."""

    def __init__(self):
        self.signum = 0
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        _sigterm_when_agent_dies()

    def _handle(self, signum, _frame):
        self.signum = signum


def _sigterm_when_agent_dies() -> None:
    """Under torchrun, ask the kernel for SIGTERM when the agent exits (Linux PR_SET_PDEATHSIG).

    A SIGUSR2 aimed at the whole job step also reaches torchrun's agent, which does not handle it and
    dies; without this the workers would train on as orphans. With it they checkpoint and exit 75.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the wrapper must signal the workers themselves


class Dist:
    """The process group (or a single process), with a gloo group for control messages."""

    def __init__(self, torch):
        import torch.distributed as dist

        self.dist = dist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.ctrl = None
        if self.world > 1:
            dist.init_process_group("nccl" if cuda else "gloo", device_id=self.device if cuda else None)
            self.ctrl = dist.new_group(backend="gloo") if cuda else dist.group.WORLD

    def any(self, flag: bool, torch) -> bool:
        t = torch.tensor([int(flag)])
        if self.world > 1:
            self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX, group=self.ctrl)
        return bool(t.item())

    def broadcast(self, obj):
        if self.world == 1:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0, group=self.ctrl)
        return box[0]

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj, group=self.ctrl)
        return out

    def all_reduce_sum(self, t):
        if self.world > 1:
            self.dist.all_reduce(t)
        return t

    def barrier(self):
        if self.world > 1:
            self.dist.barrier(group=self.ctrl)

    def close(self):
        if self.world > 1:
            self.dist.destroy_process_group()


def parse_args(argv):
    from app.emb.config import ArgParser

    parser = ArgParser(prog="python -m app.emb.train", description=__doc__.splitlines()[0])
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

    # --- model, optimizer, schedule -------------------------------------------------------------
    def _build(self):
        torch = self.torch
        from app.emb.model import build_model

        torch.manual_seed(self.tcfg["seed"])  # the same initial weights for any world size
        raw = build_model(self.config["model"]["name"], self.classes).to(self.dist.device)
        if self.cuda and self.dist.world > 1 and self.config["model"]["sync_bn"]:
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
        if self.dist.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            path = checkpoint.save(self.run_dir, {
                "step": step, "model": raw.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": rng, "config": self.config, "classes": self.classes,
                "chip": self.index["chip"], "world": self.dist.world, "model_name": self.config["model"]["name"],
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
        if state["model_name"] != self.config["model"]["name"] or state["classes"] != self.classes:
            raise BadInput(f"run.dir holds a checkpoint of {state['model_name']} with {state['classes']} classes; "
                           f"this config trains {self.config['model']['name']} with {self.classes}")
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
            atomic_write_bytes(self.run_dir / "status.json", json.dumps({"state": state, "step": step}).encode())

    # --- evaluation -------------------------------------------------------------------------------
    def _evaluate(self, raw) -> dict:
        torch = self.torch
        from app.emb.loader import eval_batches
        from app.emb.metrics import confusion, iou, mean_iou
        from app.emb.model import dequantise

        conf = torch.zeros((self.classes, self.classes), dtype=torch.int64, device=self.dist.device)
        raw.eval()
        with torch.no_grad(), torch.autocast(self.dist.device.type, torch.bfloat16, enabled=self.amp):
            for x, y in eval_batches(self.val_set, self.dist.rank, self.dist.world, self.tcfg["eval_batch_size"]):
                x = dequantise(torch.from_numpy(x).to(self.dist.device), channels_last=self.channels_last)
                pred = raw(x).argmax(1)
                conf += confusion(pred, torch.from_numpy(y).to(self.dist.device), self.classes)
        raw.train()
        per_class = iou(self.dist.all_reduce_sum(conf).cpu())
        return {"iou": per_class, "miou": mean_iou(per_class), "val_pixels": int(conf.sum())}

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        torch = self.torch
        from app.emb.loader import ShardLoader
        from app.emb.metrics import MetricsLog

        stop = StopFlag()
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
        self._status("running", start)
        loader = ShardLoader(self.train_set, self.sampler, self.dist.device, self.data["prefetch"],
                             self.data["read_threads"], torch.bfloat16 if self.amp else torch.float32,
                             self.channels_last)
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
        model.train()
        tick, tick_step = time.perf_counter(), start
        try:
            for step, x, y in loader.batches(start, steps):
                if self.dist.any(stop.signum != 0, torch):
                    self._save(step, raw, opt, sched)
                    self._status("requeue", step)
                    if self.dist.rank == 0:
                        _log(f"stop signal: checkpointed at step {step}, exiting {EXIT_REQUEUE} for requeue")
                    return EXIT_REQUEUE
                loss = train_step(model, opt, sched, loss_fn, x, y, self.amp)
                done = step + 1
                if done % self.tcfg["log_every"] == 0 or done == steps:
                    mean_loss = self.dist.all_reduce_sum(loss.detach().clone()).item() / self.dist.world
                    if not math.isfinite(mean_loss):  # checked at log steps only: .item() syncs the GPU
                        raise RuntimeError(f"loss is not finite at step {done}")
                    now = time.perf_counter()
                    rate = (done - tick_step) * self.tcfg["batch_size"] / (now - tick)
                    tick, tick_step = now, done
                    if log:
                        log.write({"step": done, "loss": mean_loss, "lr": sched.get_last_lr()[0], "img_s": rate})
                if done % self.tcfg["eval_every"] == 0 or done == steps:
                    scores = self._evaluate(raw)
                    if log:
                        log.write({"step": done, **scores})
                if done % self.tcfg["ckpt_every"] == 0 or done == steps:
                    self._save(done, raw, opt, sched)
        finally:
            loader.close()
        self._status("done", steps)
        return EXIT_OK


def main(argv=None) -> int:
    from app.emb.threads import setup_threads

    setup_threads()  # before torch is imported, so its pools start capped
    import torch

    from app.emb.config import load_config

    trainer = None
    try:
        args = parse_args(argv)
        config = load_config(args.config, args.overrides)
        trainer = Trainer(config, torch)
        return trainer.run()
    except (BadInput, EnvironmentFailure) as exc:
        return exit_status(exc, "train: error")
    except Exception as exc:
        traceback.print_exc()
        return EXIT_ENVIRONMENT if is_storage_error(exc) else EXIT_FAILED
    finally:
        if trainer is not None:
            trainer.dist.close()


if __name__ == "__main__":
    code = main()
    # Skip interpreter finalisation: with the process group gone and checkpoints fsynced there is
    # nothing left to tear down, and C++ threads (gloo, OpenMP) torn down at exit can abort a rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
