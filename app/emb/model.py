"""torchvision segmentation models with a 64-channel stem, returning logits [N, K, H, W]."""

import torch
from torch import nn

from app.emb import BANDS

MODELS = frozenset({
    "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large", "fcn_resnet50", "fcn_resnet101",
})


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
            setattr(parent, attr, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                            conv.padding, conv.dilation, conv.groups, conv.bias is not None))
            return net
    raise ValueError("model has no 3-channel stem convolution")


def build_model(name: str, classes: int) -> nn.Module:
    from torchvision.models import segmentation

    if name not in MODELS:
        raise ValueError(f"unknown model {name}")
    # No pretrained weights: RGB ImageNet weights do not transfer to 64-d embeddings (and nodes are offline).
    net = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=classes)
    for bn in net.modules():
        # MobileNetV3 uses BN momentum 0.01, tuned for long ImageNet runs: its running statistics need
        # hundreds of steps to settle, so short runs evaluate garbage. 0.1 is the ResNets' value.
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 0.1
    return Segmenter(_widen_stem(net, BANDS))


def dequantise(x_int8: torch.Tensor, dtype=torch.float32, channels_last=False) -> torch.Tensor:
    """int8 chips → unit-vector components (x / 127), on whatever device the chips already are."""
    x = x_int8.to(dtype).mul_(1.0 / 127.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
