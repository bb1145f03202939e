"""The process group of a training run (or a single process), with a gloo group for control messages.

NCCL carries the gradients and the loss normaliser on GPUs (gloo on CPU); the stop flag, RNG states,
weight digests and the checkpoint choice go over gloo, so they never force a GPU sync.
"""

import os

from app.hpc.gpus import choose_device


class Dist:
    """WORLD_SIZE/RANK/LOCAL_RANK from torchrun (absent: one process, no process group)."""

    def __init__(self, torch):
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = choose_device(torch) == "cuda"  # GPUs allocated but unusable: exit 3, never a silent CPU run
        self.device = torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.ctrl = None
        if self.world > 1:
            dist.init_process_group("nccl" if cuda else "gloo", device_id=self.device if cuda else None)
            self.ctrl = dist.new_group(backend="gloo") if cuda else dist.group.WORLD

    def max(self, value: int) -> int:
        """The largest of the ranks' values (a control message: gloo, CPU)."""
        t = self.torch.tensor([value])
        if self.world > 1:
            self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX, group=self.ctrl)
        return int(t.item())

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
        """Sum over ranks, in place, on the main backend (the tensor stays on its device)."""
        if self.world > 1:
            self.dist.all_reduce(t)
        return t

    def barrier(self):
        if self.world > 1:
            self.dist.barrier(group=self.ctrl)

    def close(self):
        if self.world > 1:
            self.dist.destroy_process_group()
