"""Deeper model-zoo additions (issue 9): ResNet-50/101 with Bottleneck blocks and MobileNetV2.

* ``resnet50`` / ``resnet101``: Bottleneck [3, 4, 6, 3] / [3, 4, 23, 3], widths 64-512, expansion 4
  (He et al., CVPR 2016; torchvision ``resnet.py``: stride on the 3×3 conv). ``stem="cifar"`` is a 3×3
  stride-1 conv; ``stem="imagenet"`` is 7×7 stride-2 conv, BN, act, ``AvgPool2d(3, 2, 1)`` (no MaxPool).
  Default: ``"cifar"`` for ``input_size <= 64``, else ``"imagenet"``.
* ``mobilenetv2``: Sandler et al., CVPR 2018 (torchvision ``mobilenetv2.py``) with every ReLU6 replaced by the
  ``act`` factory (QCFS clips at its threshold λ, playing the role of ReLU6's 6) and residual additions as
  :class:`Add` modules. ``stem="cifar"`` uses a stride-1 stem and a stride-1 second stage (downsampling ×8
  instead of ×32), the common CIFAR variant.

All builders take ``width`` (channel multiplier) and ``stem``; heads are AdaptiveAvgPool2d(1)-Flatten-Linear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from snnconv.errors import SnnconvError
from snnconv.layers.act import ActFactory
from snnconv.layers.add import Add
from snnconv.models.registry import check_input, init_weights, register_model, scale

Stem = Literal["cifar", "imagenet"]


def _stem_kind(stem: Stem | None, input_size: int) -> Stem:
    if stem is None:
        return "cifar" if input_size <= 64 else "imagenet"
    if stem not in ("cifar", "imagenet"):
        raise SnnconvError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    return stem


class Bottleneck(nn.Module):
    """conv1×1-BN-act-conv3×3(stride)-BN-act-conv1×1-BN, ``Add`` with the shortcut, then act."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, act: ActFactory) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
        self.add = Add()
        self.act3 = act(out)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(self.add(out, self.downsample(x)))


class BottleneckResNet(nn.Module):
    """Stem, four stages of Bottlenecks (stride 2 at the first block of stages 2-4), global pool, Linear."""

    def __init__(
        self,
        blocks: Sequence[int],
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        width: float = 1.0,
        stem: Stem | None = None,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        planes = [scale(w, width) for w in (64, 128, 256, 512)]
        c0 = planes[0]
        if _stem_kind(stem, input_size) == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c0, 7, 2, 3, bias=False), nn.BatchNorm2d(c0), act(c0),
                nn.AvgPool2d(3, stride=2, padding=1),
            )  # fmt: skip
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), act(c0))
        stages, in_planes = [], c0
        for i, (n, p) in enumerate(zip(blocks, planes, strict=True)):
            layer = []
            for j in range(n):
                layer.append(Bottleneck(in_planes, p, 2 if (i > 0 and j == 0) else 1, act))
                in_planes = p * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


@register_model("resnet50")
def resnet50(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> BottleneckResNet:
    """ResNet-50 (Bottleneck [3, 4, 6, 3]); kwargs: ``width``, ``stem``."""
    return BottleneckResNet([3, 4, 6, 3], act, num_classes, in_channels, input_size, **kwargs)


@register_model("resnet101")
def resnet101(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> BottleneckResNet:
    """ResNet-101 (Bottleneck [3, 4, 23, 3]); kwargs: ``width``, ``stem``."""
    return BottleneckResNet([3, 4, 23, 3], act, num_classes, in_channels, input_size, **kwargs)


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int, act: ActFactory, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act(cout)
    )


class InvertedResidual(nn.Module):
    """[1×1 expand-BN-act] - 3×3 depthwise-BN-act - 1×1 project-BN (linear), ``Add`` if stride 1 and cin = cout."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: ActFactory) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_act(cin, hidden, 1, 1, act))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, act, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout
        self.add = Add() if self.use_res else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return self.add(x, out) if self.add is not None else out


#: (expansion t, channels c, blocks n, stride s) of MobileNetV2
MBV2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(
        self,
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        width: float = 1.0,
        stem: Stem | None = None,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        cifar = _stem_kind(stem, input_size) == "cifar"
        c = scale(32, width)
        blocks: list[nn.Module] = [_conv_bn_act(in_channels, c, 3, 1 if cifar else 2, act)]
        for i, (t, ch, n, s) in enumerate(MBV2_CFG):
            cout = scale(ch, width)
            stride = 1 if (cifar and i == 1) else s
            for j in range(n):
                blocks.append(InvertedResidual(c, cout, stride if j == 0 else 1, t, act))
                c = cout
        last = scale(1280, max(1.0, width))
        blocks.append(_conv_bn_act(c, last, 1, 1, act))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> MobileNetV2:
    """MobileNetV2 with ``Add`` residuals and ``act`` everywhere; kwargs: ``width``, ``stem``."""
    return MobileNetV2(act, num_classes, in_channels, input_size, **kwargs)
