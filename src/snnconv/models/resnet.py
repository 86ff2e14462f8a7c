"""ResNets with BasicBlocks for ANN-SNN conversion (He et al., CVPR 2016; torchvision ``resnet.py``).

* ``resnet18``: CIFAR stem (3×3 conv, no pooling), BasicBlock [2, 2, 2, 2], widths 64-512.
* ``resnet20``: He et al.'s CIFAR ResNet, 3 stages of 3 BasicBlocks, widths 16/32/64, option-B shortcuts.
* ``resnet34``: ImageNet stem (7×7 stride-2 conv, BN, act, ``AvgPool2d(3, 2, 1)`` instead of MaxPool),
  BasicBlock [3, 4, 6, 3].
* ``resnet50`` / ``resnet101``: Bottleneck [3, 4, 6, 3] / [3, 4, 23, 3], widths 64-512, expansion 4
  (stride on the 3×3 conv, as torchvision); stem chosen by input size.

Every builder takes ``width`` (channel multiplier) and ``stem`` (``"cifar"``: 3×3 stride-1 conv;
``"imagenet"``: the 7×7 stem above; ``None``: the architecture's default).

Residual additions are :class:`snnconv.layers.Add` modules, the activation follows the addition, and the
head is ``AdaptiveAvgPool2d(1)`` - Flatten - Linear. Downsampling shortcuts are 1×1 conv + BN.
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


def stem_kind(stem: Stem | None, input_size: int) -> Stem:
    """``stem`` checked; ``None``: ``"cifar"`` for inputs up to 64 pixels, else ``"imagenet"``."""
    if stem is None:
        return "cifar" if input_size <= 64 else "imagenet"
    if stem not in ("cifar", "imagenet"):
        raise SnnconvError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    return stem


class BasicBlock(nn.Module):
    """conv3×3-BN-act-conv3×3-BN, ``Add`` with the shortcut, then act (torchvision order)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, act: ActFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.add = Add()
        self.act2 = act(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(self.add(out, self.downsample(x)))


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


class ResNet(nn.Module):
    """Stem, stages of ``block`` (first block of stages 2+ has stride 2), global average pool, Linear."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock,
        stem: Stem | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        planes = [scale(w, width) for w in widths]
        c0 = planes[0]
        if stem_kind(stem, input_size) == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c0, 7, 2, 3, bias=False),
                nn.BatchNorm2d(c0),
                act(c0),
                nn.AvgPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), act(c0))
        stages: list[nn.Module] = []
        in_planes = c0
        for i, (n, p) in enumerate(zip(blocks, planes, strict=True)):
            layer = []
            for j in range(n):
                layer.append(block(in_planes, p, 2 if (i > 0 and j == 0) else 1, act))
                in_planes = p * block.expansion
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def _builder(blocks: Sequence[int], widths: Sequence[int], block: type, stem: Stem | None):
    def build(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> ResNet:
        kwargs.setdefault("stem", stem)
        return ResNet(blocks, widths, act, num_classes, in_channels, input_size, block=block, **kwargs)

    return build


_WIDE = (64, 128, 256, 512)
resnet18 = register_model("resnet18")(_builder([2, 2, 2, 2], _WIDE, BasicBlock, "cifar"))
resnet18.__doc__ = "CIFAR ResNet-18 (BasicBlock [2, 2, 2, 2]); kwargs: ``width``, ``stem``."
resnet20 = register_model("resnet20")(_builder([3, 3, 3], (16, 32, 64), BasicBlock, "cifar"))
resnet20.__doc__ = "He et al. CIFAR ResNet-20 (option-B shortcuts); kwargs: ``width``, ``stem``."
resnet34 = register_model("resnet34")(_builder([3, 4, 6, 3], _WIDE, BasicBlock, "imagenet"))
resnet34.__doc__ = "ResNet-34 with the ImageNet stem (AvgPool instead of MaxPool); kwargs: ``width``, ``stem``."
resnet50 = register_model("resnet50")(_builder([3, 4, 6, 3], _WIDE, Bottleneck, None))
resnet50.__doc__ = "ResNet-50 (Bottleneck [3, 4, 6, 3]); kwargs: ``width``, ``stem``."
resnet101 = register_model("resnet101")(_builder([3, 4, 23, 3], _WIDE, Bottleneck, None))
resnet101.__doc__ = "ResNet-101 (Bottleneck [3, 4, 23, 3]); kwargs: ``width``, ``stem``."
