"""GPU tier (device machine only; CI deselects it with -m "not gpu"). Needs torch + numpy, no rasterio.

The CUDA-only parts of the data path and the training loop: pinned buffers, side-stream copies,
int8 → bf16 on the GPU, channels_last, bf16 autocast.
"""

import json
import subprocess

import numpy as np
import pytest
import torch

from app.emb import BANDS
from app.emb.loader import BlockSampler, ShardLoader
from app.emb.quant import dequantise_np
from app.emb.shards import ShardSet, write_index, write_shard
from tests.conftest import tier_unavailable
from tests.emb.conftest import ROOT, env, train_cmd

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda(request):
    if not torch.cuda.is_available():
        tier_unavailable(request, "no CUDA device (the gpu tier runs on a GPU node: pytest -m gpu)")
    return torch.device("cuda", 0)


@pytest.fixture
def random_shards(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-127, 128, (32, BANDS, 64, 64), dtype=np.int8)
    y = rng.integers(0, 4, (32, 64, 64), dtype=np.uint8)
    names = []
    for s in range(2):
        names.append(f"train-{s:05d}")

        def fill(xo, yo, s=s):
            xo[:] = x[s * 16:(s + 1) * 16]
            yo[:] = y[s * 16:(s + 1) * 16]

        write_shard(tmp_path, names[-1], 16, 64, fill, {"fingerprint": "gpu", "chips": []})
    write_shard(tmp_path, "val-00000", 16, 64, lambda xo, yo: (xo.fill(1), yo.fill(2)), {"fingerprint": "gpu", "chips": []})
    counts = np.bincount(y.ravel(), minlength=4)
    write_index(tmp_path, {"splits": {"train": names, "val": ["val-00000"]}, "chip": 64, "classes": 4,
                           "class_pixels": {"train": {str(k): int(n) for k, n in enumerate(counts)}}})
    return tmp_path


def test_cuda_loader_matches_the_shards(cuda, random_shards):
    shards = ShardSet(random_shards, "train")
    sampler = BlockSampler(shards.counts, 4, 8, 1, 0, seed=1)
    loader = ShardLoader(shards, sampler, cuda, prefetch=3, read_threads=4, dtype=torch.bfloat16,
                         channels_last=True)
    for step, x, y in loader.batches(0, 6):
        want = np.concatenate([shards.shards[s].x[i:i + 4] for s, i in sampler.blocks_for(step)])
        assert x.is_cuda and x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
        ref = torch.from_numpy(dequantise_np(want)).to(cuda)
        assert torch.allclose(x.float(), ref, rtol=2 ** -8, atol=0)  # one bf16 rounding of the published rule
        assert y.is_cuda and y.dtype == torch.int64
    loader.close()


def test_cuda_training_runs_bf16_channels_last(cuda, random_shards, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_cmd(random_shards, run_dir, "train.steps=4", "train.log_every=1",
                                    "train.eval_every=4", "train.ckpt_every=2", "train.batch_size=8",
                                    "data.block_chips=4", "model.name=deeplabv3_resnet50"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert any("miou" in r for r in records)


def test_cuda_training_compiled_with_class_weights(cuda, random_shards, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_cmd(random_shards, run_dir, "train.steps=3", "train.log_every=1", "train.eval_every=3",
                                    "train.batch_size=8", "data.block_chips=4", "train.compile=true",
                                    "train.class_weights=inverse_sqrt"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "class weights (inverse_sqrt)" in proc.stderr
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
