"""ResNets with BasicBlocks for ANN-SNN conversion (He et al., CVPR 2016; torchvision ``resnet.py``).

* ``resnet18``: CIFAR stem (3×3 conv, no pooling), BasicBlock [2, 2, 2, 2], widths 64-512.
* ``resnet20``: He et al.'s CIFAR ResNet, 3 stages of 3 BasicBlocks, widths 16/32/64, option-B shortcuts.
* ``resnet34``: ImageNet stem (7×7 stride-2 conv, BN, act, ``AvgPool2d(3, 2, 1)`` instead of MaxPool),
  BasicBlock [3, 4, 6, 3].

Residual additions are :class:`snnconv.layers.Add` modules, the activation follows the addition, and the
head is ``AdaptiveAvgPool2d(1)`` - Flatten - Linear. Downsampling shortcuts are 1×1 conv + BN.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from snnconv.layers.act import ActFactory
from snnconv.layers.add import Add
from snnconv.models.registry import check_input, init_weights, register_model, scale


class BasicBlock(nn.Module):
    """conv3×3-BN-act-conv3×3-BN, ``Add`` with the shortcut, then act (torchvision order)."""

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


class ResNet(nn.Module):
    """Stem, stages of BasicBlocks (first block of stages 2+ has stride 2), global average pool, Linear."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        imagenet_stem: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        planes = [scale(w, width) for w in widths]
        c0 = planes[0]
        if imagenet_stem:
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
                layer.append(BasicBlock(in_planes, p, 2 if (i > 0 and j == 0) else 1, act))
                in_planes = p
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> ResNet:
    """CIFAR ResNet-18; kwargs: ``width``."""
    return ResNet([2, 2, 2, 2], [64, 128, 256, 512], act, num_classes, in_channels, input_size, **kwargs)


@register_model("resnet20")
def resnet20(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> ResNet:
    """He et al. CIFAR ResNet-20 (option-B shortcuts); kwargs: ``width``."""
    return ResNet([3, 3, 3], [16, 32, 64], act, num_classes, in_channels, input_size, **kwargs)


@register_model("resnet34")
def resnet34(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> ResNet:
    """ResNet-34 with the ImageNet stem (AvgPool instead of MaxPool); kwargs: ``width``."""
    return ResNet(
        [3, 4, 6, 3],
        [64, 128, 256, 512],
        act,
        num_classes,
        in_channels,
        input_size,
        imagenet_stem=True,
        **kwargs,
    )
