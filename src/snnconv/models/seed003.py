"""Seed 003 networks (Gao et al. 2023 §4.2), all with average pooling, conv-BN-act blocks and ``act`` factories.

* ``lenet5``: conv5×5(6)-act-pool-conv5×5(16)-act-pool-FC120-FC84-FC (LeCun et al. 1998; padding 2 keeps
  small inputs such as 8×8 digits valid).
* ``vgg9``: 64-64-M-128-128-M-256-256-256-M, FC1024, FC (7 conv + 2 FC; Lee et al. 2020).
* ``resnet11h``: ResNet-11 (Lee et al. 2020) with half the channels: conv3×3(32)-pool, BasicBlocks
  64 / 128 (s2) / 256 (s2) / 256, global average pool, FC512, FC (9 conv + 2 FC).
* ``mobilenet20``: MobileNetV1 (Howard et al. 2017) without its 16th-23rd conv layers (4 of the five
  repeated 512-channel depthwise-separable blocks): stem + 9 depthwise-separable blocks (19 conv) + FC.
A stride-2 stage or pooling that would shrink the map below 1×1 is skipped, so any ``input_size`` works.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnconv.layers.act import ActFactory
from snnconv.models.registry import check_input, init_weights, register_model, scale
from snnconv.models.resnet import BasicBlock


def _conv(cin: int, cout: int, k: int, act: ActFactory, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act(cout)]


class LeNet5(nn.Module):
    def __init__(self, act: ActFactory, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 width: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        c1, c2, size = scale(6, width), scale(16, width), input_size
        layers = _conv(in_channels, c1, 5, act)
        if size // 2 >= 1:
            layers.append(nn.AvgPool2d(2))
            size //= 2
        layers += _conv(c1, c2, 5, act)
        if size // 2 >= 1:
            layers.append(nn.AvgPool2d(2))
            size //= 2
        self.features = nn.Sequential(*layers)
        h1, h2 = scale(120, width), scale(84, width)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * size * size, h1), act(h1), nn.Linear(h1, h2),
                                        act(h2), nn.Linear(h2, num_classes))  # fmt: skip
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class VGG9(nn.Module):
    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")

    def __init__(self, act: ActFactory, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 width: float = 1.0, hidden: int | None = None, dropout: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        layers: list[nn.Module] = []
        c, size = in_channels, input_size
        for item in self.CFG:
            if item == "M":
                if size // 2 >= 1:
                    layers.append(nn.AvgPool2d(2))
                    size //= 2
                continue
            layers += _conv(c, scale(item, width), 3, act)
            c = scale(item, width)
        self.features = nn.Sequential(*layers)
        h = hidden if hidden is not None else scale(1024, width)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, h), act(h), nn.Dropout(dropout),
                                        nn.Linear(h, num_classes))  # fmt: skip
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class ResNet11H(nn.Module):
    def __init__(self, act: ActFactory, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 width: float = 1.0, hidden: int | None = None) -> None:  # fmt: skip
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        c0, size = scale(32, width), input_size
        stem = _conv(in_channels, c0, 3, act)
        if size // 2 >= 1:
            stem.append(nn.AvgPool2d(2))
            size //= 2
        self.stem = nn.Sequential(*stem)
        blocks, c = [], c0
        for planes, stride in ((64, 1), (128, 2), (256, 2), (256, 1)):
            stride = stride if size // stride >= 1 else 1
            size //= stride
            blocks.append(BasicBlock(c, scale(planes, width), stride, act))
            c = scale(planes, width)
        self.layers = nn.Sequential(*blocks)
        h = hidden if hidden is not None else scale(512, width)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, h), act(h),
                                  nn.Linear(h, num_classes))  # fmt: skip
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


class MobileNet20(nn.Module):
    #: (output channels, stride) of the depthwise-separable blocks kept from MobileNetV1's 13
    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, act: ActFactory, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 width: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        c, size = scale(32, width), input_size
        stride = 2 if size > 64 else 1  # ImageNet-size inputs keep the stride-2 stem
        layers = _conv(in_channels, c, 3, act, stride)
        size = -(-size // stride)
        for out, s in self.BLOCKS:
            s = s if size // s >= 1 else 1
            size = -(-size // s)
            layers += _conv(c, c, 3, act, s, groups=c) + _conv(c, scale(out, width), 1, act)
            c = scale(out, width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register_model("lenet5")
def lenet5(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> LeNet5:
    """LeNet-5 with average pooling; kwargs: ``width``."""
    return LeNet5(act, num_classes, in_channels, input_size, **kwargs)


@register_model("vgg9")
def vgg9(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> VGG9:
    """VGG-9 (7 conv + 2 FC); kwargs: ``width``, ``hidden``, ``dropout``."""
    return VGG9(act, num_classes, in_channels, input_size, **kwargs)


@register_model("resnet11h")
def resnet11h(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> ResNet11H:
    """ResNet-11 with half the channels; kwargs: ``width``, ``hidden``."""
    return ResNet11H(act, num_classes, in_channels, input_size, **kwargs)


@register_model("mobilenet20")
def mobilenet20(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> MobileNet20:
    """MobileNetV1 without conv layers 16-23; kwargs: ``width``."""
    return MobileNet20(act, num_classes, in_channels, input_size, **kwargs)
