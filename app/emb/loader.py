"""The training data path: contiguous chip runs from the shards → pinned buffers → GPU, read ahead.

Why this shape (DESIGN.md's GPU anchor: a naive DataLoader over a memmap gives 195–514 chips/s):
- The shards are cut into blocks of `block_chips` neighbouring chips. Each step takes
  batch_size / block_chips blocks from a seeded permutation (shuffle at block granularity), and each
  rank reads its share as a few large sequential preads straight into a pinned host buffer.
- A background thread (plus `read_threads` readers; pread releases the GIL) fills up to `prefetch`
  buffers ahead of the step that needs them.
- On CUDA the int8 chips go to the GPU with non_blocking copies on a side stream, one step ahead,
  and become floats there by the published rule (4x fewer bytes over PCIe than float32; the
  dequantise is free on the GPU).

The batch of a step is a pure function of (seed, step, rank, world): resuming at step s needs no
loader state, and ranks never coordinate. A global batch is the same set of chips for any world size
whose per-rank batch is a whole number of blocks, so a 1-rank and a 2-rank run see the same data.
"""

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from app.emb.quant import dequantise
from app.emb.shards import ShardSet


class BlockSampler:
    """Which (shard, first chip) blocks a rank reads at a given step."""

    def __init__(self, counts: list[int], block: int, global_batch: int, world: int, rank: int, seed: int):
        self.blocks = [(s, start) for s, n in enumerate(counts) for start in range(0, n - block + 1, block)]
        self.block = block
        self.per_step = global_batch // block
        self.per_rank = self.per_step // world
        self.rank, self.seed = rank, seed
        if self.per_step > len(self.blocks):
            raise ValueError(f"a global batch needs {self.per_step} blocks of {block} chips; the shards hold "
                             f"{len(self.blocks)} (lower train.batch_size or data.block_chips)")
        self.steps_per_epoch = len(self.blocks) // self.per_step

    def blocks_for(self, step: int) -> list[tuple[int, int]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.blocks))
        mine = order[k * self.per_step:(k + 1) * self.per_step][self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
        return [self.blocks[i] for i in mine]


class ShardLoader:
    """Iterate (x, y) device batches for steps [start, end): x float [b, 64, C, C], y int64 [b, C, C]."""

    def __init__(self, shards: ShardSet, sampler: BlockSampler, device: torch.device, prefetch: int = 3,
                 read_threads: int = 4, dtype=torch.float32, channels_last: bool = False):
        self.shards, self.sampler, self.device = shards, sampler, device
        self.dtype, self.channels_last = dtype, channels_last
        chip = shards.shards[0].chip
        bands = shards.shards[0].x.shape[1]
        b = sampler.per_rank * sampler.block
        pin = device.type == "cuda"
        self.slots = [(torch.empty((b, bands, chip, chip), dtype=torch.int8, pin_memory=pin),
                       torch.empty((b, chip, chip), dtype=torch.uint8, pin_memory=pin)) for _ in range(prefetch)]
        self.readers = ThreadPoolExecutor(read_threads, thread_name_prefix="shard-read")
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def _fill(self, slot: int, step: int) -> None:
        x, y = (t.numpy() for t in self.slots[slot])
        block = self.sampler.block
        jobs = [self.readers.submit(self.shards.read_into, shard, start, block,
                                    x[i * block:(i + 1) * block], y[i * block:(i + 1) * block])
                for i, (shard, start) in enumerate(self.sampler.blocks_for(step))]
        for job in jobs:
            job.result()

    def _produce(self, start: int, end: int, free: queue.Queue, ready: queue.Queue, stop: threading.Event):
        try:
            for step in range(start, end):
                slot = free.get()
                if stop.is_set():
                    return
                self._fill(slot, step)
                ready.put((step, slot))
        except BaseException as exc:  # hand the failure to the consumer instead of hanging it
            ready.put((None, exc))

    def _to_device(self, slot: int):
        x, y = self.slots[slot]
        if self.copy_stream is None:
            return x, y, None
        with torch.cuda.stream(self.copy_stream):
            xd = x.to(self.device, non_blocking=True)
            yd = y.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.copy_stream)
        return xd, yd, done

    def batches(self, start: int, end: int):
        free, ready, stop = queue.Queue(), queue.Queue(), threading.Event()
        for slot in range(len(self.slots)):
            free.put(slot)
        producer = threading.Thread(target=self._produce, args=(start, end, free, ready, stop), daemon=True)
        producer.start()

        def take():
            step, slot = ready.get()
            if step is None:
                raise slot
            return step, slot, *self._to_device(slot)

        try:
            pending = take() if start < end else None
            while pending is not None:
                step, slot, xd, yd, done = pending
                # Issue the next batch's copy before this step's compute, so the two overlap.
                pending = take() if step + 1 < end else None
                if done is not None:
                    torch.cuda.current_stream(self.device).wait_event(done)
                    xd.record_stream(torch.cuda.current_stream(self.device))
                    yd.record_stream(torch.cuda.current_stream(self.device))
                x = dequantise(xd, self.dtype, self.channels_last)
                labels = yd.long()
                if done is not None:
                    done.synchronize()  # the pinned slot may be refilled only once its copy is done
                free.put(slot)
                yield step, x, labels
        finally:
            stop.set()
            free.put(0)  # wake a producer waiting for a slot
            # Joined, not left as a daemon: a thread inside torch/numpy at interpreter exit can abort
            # the process ("terminate called without an active exception") after the final checkpoint.
            producer.join()

    def close(self) -> None:
        self.readers.shutdown(wait=True)


def eval_batches(shards: ShardSet, rank: int, world: int, batch: int):
    """This rank's contiguous share of a split, as (int8 x, uint8 y) numpy batches."""
    for shard in shards.shards:
        lo, hi = shard.count * rank // world, shard.count * (rank + 1) // world
        for start in range(lo, hi, batch):
            stop = min(start + batch, hi)
            yield np.array(shard.x[start:stop]), np.array(shard.y[start:stop])
