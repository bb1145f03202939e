import numpy as np
import torch

from app.emb.loader import BlockSampler, ShardLoader, eval_batches
from app.emb.quant import dequantise_np
from app.emb.shards import ShardSet


def test_ranks_split_the_same_global_batch_as_one_rank():
    counts = [24, 24, 10]
    one = BlockSampler(counts, block=2, global_batch=8, world=1, rank=0, seed=3)
    two = [BlockSampler(counts, block=2, global_batch=8, world=2, rank=r, seed=3) for r in (0, 1)]
    for step in (0, 1, 7, 50):
        together = one.blocks_for(step)
        assert two[0].blocks_for(step) + two[1].blocks_for(step) == together
        assert not set(two[0].blocks_for(step)) & set(two[1].blocks_for(step))


def test_an_epoch_visits_each_block_once_and_epochs_reshuffle():
    s = BlockSampler([24, 24, 10], block=2, global_batch=8, world=1, rank=0, seed=0)
    assert len(s.blocks) == 12 + 12 + 5 and s.steps_per_epoch == 7
    epoch0 = [b for step in range(7) for b in s.blocks_for(step)]
    assert len(set(epoch0)) == len(epoch0) == 28
    assert all(start + 2 <= [24, 24, 10][shard] for shard, start in epoch0)  # blocks stay inside a shard
    assert [b for step in range(7, 14) for b in s.blocks_for(step)] != epoch0


def test_loader_delivers_exactly_the_sampled_chips_dequantised(emb_shards):
    shards = ShardSet(emb_shards, "train")
    sampler = BlockSampler(shards.counts, block=2, global_batch=4, world=2, rank=1, seed=9)
    loader = ShardLoader(shards, sampler, torch.device("cpu"), prefetch=2, read_threads=2)
    seen = []
    for step, x, y in loader.batches(3, 7):
        seen.append(step)
        want_x = np.concatenate([shards.shards[s].x[i:i + 2] for s, i in sampler.blocks_for(step)])
        want_y = np.concatenate([shards.shards[s].y[i:i + 2] for s, i in sampler.blocks_for(step)])
        assert x.dtype == torch.float32 and x.shape == (2, 64, 32, 32)
        assert torch.allclose(x, torch.from_numpy(dequantise_np(want_x)), rtol=1.2e-7, atol=0)  # the published rule
        assert torch.equal(y, torch.from_numpy(want_y.astype(np.int64)))
    assert seen == [3, 4, 5, 6]
    loader.close()
    shards.close()


def test_eval_batches_cover_the_split_once_across_ranks(emb_shards):
    shards = ShardSet(emb_shards, "val")
    n = sum(len(x) for rank in range(3) for x, _ in eval_batches(shards, rank, 3, 4))
    assert n == shards.total
    shards.close()
