"""Our own small models (``builtin:<name>``), registered like timm's: one decorator, one name.

They exist so the quickstart and the tests run offline in seconds, and so benchmarks have
ResNet-style teachers sized for 28-32 px inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn
import torchvision

from edgekit.registry import Registry
from edgekit.spec import ModelSpec


@dataclass
class BuiltinModel:
    build: Callable[..., nn.Module]      # build(num_classes=, in_channels=, **options)
    input_size: tuple[int, int]          # native H, W
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str

    def spec(self, num_classes: int, in_channels: int | None = None,
             input_size: tuple[int, int] | None = None) -> ModelSpec:
        c = in_channels or self.in_channels
        h, w = input_size or self.input_size
        per_channel = lambda v: v if len(v) == c else (v[0],) * c  # noqa: E731
        return ModelSpec(input_shape=(c, h, w), channel_order="L" if c == 1 else "RGB",
                         mean=per_channel(self.mean), std=per_channel(self.std), num_classes=num_classes)


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("builtin model")


def register_builtin(name: str, input_size: tuple[int, int], in_channels: int, description: str,
                     mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.25,)):
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BUILTIN_MODELS.register(name)(BuiltinModel(fn, input_size, in_channels, mean, std, description))
        return fn

    return decorator


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_builtin("tinycnn", (8, 8), 1, "3-conv CNN for 8x8 digits (~40k params); the quickstart teacher")
def tinycnn(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Module:
    return nn.Sequential(
        *_conv_bn(in_channels, width), *_conv_bn(width, width),
        *_conv_bn(width, 2 * width, stride=2), *_conv_bn(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


class BasicBlock(nn.Module):
    """Pre-torchvision-style residual block; each ReLU is its own module (quantizers need that)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem, one stage per entry of ``blocks`` (stride 1, then 2; widths double),
    global pool, linear head. Stages are ``layer1``..``layerN`` as in torchvision, so split points and
    pruning ignore-lists read the same."""

    def __init__(self, num_classes: int, in_channels: int, width: int, blocks: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, width))
        cin = width
        self.stages = len(blocks)
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            stage = [BasicBlock(cin if j == 0 else cout, cout, 1 if (i == 0 or j > 0) else 2) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            cin = cout
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.pool(x).flatten(1))


@register_builtin("resnet8", (28, 28), 1, "ResNet-8 (widths 16/32/64, ~78k params) for 28 px grey images")
def resnet8(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> nn.Module:
    return SmallResNet(num_classes, in_channels, width, (1, 1, 1))


@register_builtin("resnet20", (28, 28), 1, "ResNet-20 (widths 16/32/64, ~0.27M params) for 28 px grey images")
def resnet20(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> nn.Module:
    return SmallResNet(num_classes, in_channels, width, (3, 3, 3))


@register_builtin("resnet18_28", (28, 28), 1,
                  "ResNet-18 layout at quarter width (BasicBlocks 2-2-2-2, widths 16..128, 0.7M params, 29 MMACs) "
                  "for 28 px grey images: 3x3 stride-1 stem, no max-pool; ?width=32 for half width")
def resnet18_28(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> nn.Module:
    # The ResNet-18 teacher that trains in minutes on a 2-core CPU: torchvision's ResNet-18 at 32 px loses
    # the image to its stride-4 stem (80% on Fashion-MNIST after 2 epochs), resnet18_32 costs 557 MMACs.
    return SmallResNet(num_classes, in_channels, width, (2, 2, 2, 2))


@register_builtin("resnet18_32", (32, 32), 3,
                  "torchvision ResNet-18 for 32 px inputs: 3x3 stride-1 stem, no max-pool (557 MMACs)",
                  mean=(0.2860,), std=(0.3530,))
def resnet18_32(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_builtin("mobilenetv3s_32", (32, 32), 3,
                  "torchvision MobileNetV3-Small for 28-32 px inputs: stride-1 stem (Hardswish/SE blocks)",
                  mean=(0.2860,), std=(0.3530,))
def mobilenetv3s_32(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> nn.Module:
    model = torchvision.models.mobilenet_v3_small(num_classes=num_classes, width_mult=width_mult)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, 1, 1, bias=False)
    return model
