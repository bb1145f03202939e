import pytest
import torch

from app.emb.loss import PixelLoss, class_weights


class OneRank:
    world = 1

    @staticmethod
    def all_reduce_sum(t):
        return t


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    labels[0, 0, :3] = 255
    return logits, labels


@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0]])
def test_one_rank_equals_torch_cross_entropy_mean(weights):
    logits, labels = _batch()
    loss = PixelLoss(torch, OneRank, weights, "cpu")(logits, labels)
    w = None if weights is None else torch.tensor(weights)
    want = torch.nn.CrossEntropyLoss(weight=w, ignore_index=255)(logits, labels)
    assert torch.allclose(loss, want, rtol=1e-6)


def test_class_weights_follow_the_train_pixels_and_keep_the_scale():
    pixels = {"0": 900, "1": 100, "2": 0, "255": 5000}
    assert class_weights(pixels, 3, "none") is None
    w = class_weights(pixels, 3, "inverse")
    assert w[2] == 0.0  # a class with no training pixels
    assert abs(w[1] / w[0] - 9.0) < 1e-9  # inverse frequency
    assert abs((900 * w[0] + 100 * w[1]) / 1000 - 1.0) < 1e-12  # a labelled pixel weighs 1 on average
    s = class_weights(pixels, 3, "inverse_sqrt")
    assert abs(s[1] / s[0] - 3.0) < 1e-9
