"""MobileNetV2 for the model zoo (issue 9); the ResNets, BasicBlock and Bottleneck, live in ``resnet.py``.

* ``mobilenetv2``: Sandler et al., CVPR 2018 (torchvision ``mobilenetv2.py``) with every ReLU6 replaced by the
  ``act`` factory (QCFS clips at its threshold λ, playing the role of ReLU6's 6) and residual additions as
  :class:`Add` modules. ``stem="cifar"`` uses a stride-1 stem and a stride-1 second stage (downsampling ×8
  instead of ×32), the common CIFAR variant.

The builder takes ``width`` (channel multiplier) and ``stem``; the head is AdaptiveAvgPool2d(1)-Flatten-Linear.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnconv.layers.act import ActFactory
from snnconv.layers.add import Add
from snnconv.models.registry import check_input, init_weights, register_model, scale
from snnconv.models.resnet import Stem, stem_kind


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
        cifar = stem_kind(stem, input_size) == "cifar"
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
