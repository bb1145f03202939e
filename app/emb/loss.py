"""The training loss: cross-entropy over every labelled pixel of the global batch, optionally class-weighted.

Why not nn.CrossEntropyLoss per rank: its mean is over the rank's own labelled pixels, and DDP then
averages the ranks' gradients, so a pixel weighs more on a rank whose chips happen to hold fewer
labelled pixels (ignore pixels differ per chip). Here each rank returns sum_r · world / N, with N the
labelled pixels (or their class weights) of all ranks, all-reduced: after DDP's average the gradient
is that of Σ_r sum_r / N, exactly what one process computes on the whole batch.

Class weights (train.class_weights): "none"; "inverse_sqrt" (w_k ∝ 1/√n_k) or "inverse" (w_k ∝ 1/n_k),
from the train split's label pixel counts in index.json, scaled so that a labelled training pixel
weighs 1 on average (the loss keeps its scale); a class with no training pixels gets weight 0.
"""

import numpy as np

from app.emb import IGNORE

WEIGHTINGS = {"none": None, "inverse_sqrt": 0.5, "inverse": 1.0}


def class_weights(train_pixels: dict, classes: int, mode: str) -> list[float] | None:
    """Per-class weights from {"class id": pixel count} of the train split, or None for "none"."""
    power = WEIGHTINGS[mode]
    if power is None:
        return None
    n = np.array([train_pixels.get(str(k), 0) for k in range(classes)], np.float64)
    w = np.where(n > 0, (n.sum() / np.maximum(n, 1)) ** power, 0.0)
    w *= n.sum() / max((w * n).sum(), 1e-12)
    return w.tolist()


class PixelLoss:
    """loss(logits [b, K, H, W] float, labels [b, H, W] int64) → this rank's share of the global mean."""

    def __init__(self, torch, dist, weights: list[float] | None, device):
        self.torch, self.dist = torch, dist
        self.weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)

    def __call__(self, logits, labels):
        torch = self.torch
        valid = labels != IGNORE
        total = torch.nn.functional.cross_entropy(logits, labels, weight=self.weight, ignore_index=IGNORE,
                                                  reduction="sum")
        if self.weight is None:
            pixels = valid.sum().to(torch.float32)
        else:
            pixels = (self.weight[torch.where(valid, labels, 0)] * valid).sum()
        pixels = self.dist.all_reduce_sum(pixels.detach())
        return total * self.dist.world / pixels.clamp_min(1.0)
