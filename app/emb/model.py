"""torchvision segmentation models with a 64-channel stem, returning logits [N, K, H, W]."""

import math

from torch import nn

from app.emb import BANDS

MODELS = frozenset({
    "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large", "fcn_resnet50", "fcn_resnet101",
})
NORMS = ("batch", "group")


class Segmenter(nn.Module):
    """Unwraps torchvision's {'out': logits} so DDP, compile and the loss see a plain tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["out"]


def _widen_stem(net: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first 3-channel convolution (the RGB stem) by one taking `in_channels`."""
    for name, conv in net.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.in_channels == 3:
            parent_name, _, attr = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            # torch's stubs type a layer's own kernel_size/stride/... (tuples) narrower than its constructor takes
            setattr(parent, attr, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
                                            conv.stride, conv.padding, conv.dilation,  # type: ignore[arg-type]
                                            conv.groups, conv.bias is not None))
            return net
    raise ValueError("model has no 3-channel stem convolution")


def _group_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d replaced by GroupNorm with gcd(32, C) groups (its affine parameters start alike)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(math.gcd(32, child.num_features), child.num_features))
        else:
            _group_norm(child)
    return module


def build_model(name: str, classes: int, norm: str = "batch") -> nn.Module:
    """norm "batch" (torchvision's BatchNorm; SyncBatchNorm across GPUs when model.sync_bn) or "group":
    GroupNorm has no batch statistics, so the result does not depend on how the batch is split over
    ranks (small per-GPU batches; and what the DDP equivalence test relies on)."""
    from torchvision.models import segmentation

    if name not in MODELS:
        raise ValueError(f"unknown model {name}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm}")
    # No pretrained weights: RGB ImageNet weights do not transfer to 64-d embeddings (and nodes are offline).
    net = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=classes)
    for bn in net.modules():
        # MobileNetV3 uses BN momentum 0.01, tuned for long ImageNet runs: its running statistics need
        # hundreds of steps to settle, so short runs evaluate garbage. 0.1 is the ResNets' value.
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 0.1
    if norm == "group":
        _group_norm(net)
    return Segmenter(_widen_stem(net, BANDS))
