"""Networks for fast CIFAR-10 training: the ResNet-9 and the 18-layer DAWNBench net of the source
recipe, plus a tiny test net.

Every channel count c is scaled to max(1, round(c * width)). All models accept channels_last
inputs and run under torch.autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from forgetting.core.config import MODELS
from forgetting.core.errors import ConfigError


def _ch(c: int, width: float) -> int:
    """Channel count c scaled by width, at least 1."""
    return max(1, round(c * width))


class ConvBN(nn.Sequential):
    """Conv3x3 (padding 1, no bias) -> BatchNorm2d -> ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class GlobalMaxPool(nn.Module):
    """Max over each channel's whole map, (N, C, H, W) -> (N, C, 1, 1): AdaptiveMaxPool2d(1)'s
    values and gradients (the first maximum takes a tie), as one max_pool2d window. On a GPU
    torch.compile fuses its backward into neighbouring kernels; the adaptive pool's backward
    stays an atomic scatter there (3.5% of a compiled ResNet-9 step on an H100)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(x, x.shape[-2:])


class Residual(nn.Module):
    """x + conv_bn(conv_bn(x)), channels unchanged."""

    def __init__(self, c: int):
        super().__init__()
        self.res1 = ConvBN(c, c)
        self.res2 = ConvBN(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res2(self.res1(x))


class ResNet9(nn.Module):
    """The part-4 ResNet-9.

    prep conv_bn 3->64; layer1 conv_bn 64->128, maxpool 2, residual(128); layer2 conv_bn
    128->256, maxpool 2; layer3 conv_bn 256->512, maxpool 2, residual(512); global max pool ->
    Linear 512->classes (no bias) -> x0.125.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, scale: float = 0.125):
        super().__init__()
        c64, c128, c256, c512 = (_ch(c, width) for c in (64, 128, 256, 512))
        self.prep = ConvBN(3, c64)
        self.layer1 = nn.Sequential(ConvBN(c64, c128), nn.MaxPool2d(2), Residual(c128))
        self.layer2 = nn.Sequential(ConvBN(c128, c256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(ConvBN(c256, c512), nn.MaxPool2d(2), Residual(c512))
        self.pool = GlobalMaxPool()
        self.linear = nn.Linear(c512, num_classes, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prep(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = torch.flatten(self.pool(x), 1)
        return self.linear(x) * self.scale


class PreActBlock(nn.Module):
    """Pre-activation block: BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> conv3x3, plus shortcut.

    The shortcut is the identity, or, when stride != 1 or channels change, a 1x1 stride-s conv
    (no bias) applied to the first ReLU's output.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + identity


class Dawn18(nn.Module):
    """The 18-layer pre-activation ResNet of parts 1-2.

    prep Conv3x3 3->64 (no BN/ReLU); stages of two PreActBlocks at widths 64, 128, 256, 256,
    stride 2 in the first block of stages 2-4; head concat(global max pool, global avg pool) ->
    Linear 512->classes (with bias).
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        c64, c128, c256 = (_ch(c, width) for c in (64, 128, 256))
        self.prep = nn.Conv2d(3, c64, kernel_size=3, padding=1, bias=False)
        self.layer1 = nn.Sequential(PreActBlock(c64, c64, 1), PreActBlock(c64, c64))
        self.layer2 = nn.Sequential(PreActBlock(c64, c128, 2), PreActBlock(c128, c128))
        self.layer3 = nn.Sequential(PreActBlock(c128, c256, 2), PreActBlock(c256, c256))
        self.layer4 = nn.Sequential(PreActBlock(c256, c256, 2), PreActBlock(c256, c256))
        self.max_pool = GlobalMaxPool()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(2 * c256, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prep(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1)
        return self.linear(torch.flatten(x, 1))


class Tiny(nn.Module):
    """Small test net: conv_bn 3->16, maxpool 2, conv_bn 16->32, maxpool 2, global max pool ->
    Linear -> x0.125."""

    def __init__(self, width: float = 1.0, num_classes: int = 10, scale: float = 0.125):
        super().__init__()
        c16, c32 = _ch(16, width), _ch(32, width)
        self.layer1 = nn.Sequential(ConvBN(3, c16), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(ConvBN(c16, c32), nn.MaxPool2d(2))
        self.pool = GlobalMaxPool()
        self.linear = nn.Linear(c32, num_classes, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.pool(x), 1)
        return self.linear(x) * self.scale


def scale_invariant_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights whose output goes only into a BatchNorm, so that the loss does not change
    when one of them is scaled: a conv or linear layer directly followed by a BatchNorm in an
    nn.Sequential (the conv of every ConvBN: all of ResNet9's and Tiny's convs), and a
    PreActBlock's conv1 (into its bn2). In module order; each once."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            layers = list(module)
            for layer, after in zip(layers, layers[1:]):
                if isinstance(layer, (nn.Conv2d, nn.Linear)) and \
                        isinstance(after, nn.modules.batchnorm._BatchNorm):
                    found.setdefault(id(layer.weight), layer.weight)
        elif isinstance(module, PreActBlock):
            found.setdefault(id(module.conv1.weight), module.conv1.weight)
    return list(found.values())


def build_model(name: str, width: float = 1.0, num_classes: int = 10) -> nn.Module:
    """The network called name, with channel counts scaled by width."""
    if name not in MODELS:
        raise ConfigError("model.name", name, f"choose one of {', '.join(MODELS)}")
    if not width > 0:
        raise ConfigError("model.width", width, "must be > 0")
    if name == "resnet9":
        return ResNet9(width, num_classes)
    if name == "dawn18":
        return Dawn18(width, num_classes)
    return Tiny(width, num_classes)
