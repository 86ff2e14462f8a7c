"""VGG-11/16 with BatchNorm and average pooling for ANN-SNN conversion.

Features after Simonyan & Zisserman (2015) / torchvision ``vgg16_bn``; CIFAR classifier as in the QCFS
reference code (Bu et al., ICLR 2022): Flatten - Linear(512·s·s, 4096) - act - Dropout - Linear(4096, 4096)
- act - Dropout - Linear(4096, classes), with torchvision's dropout of 0.5 by default. The QCFS reference code
trains without dropout (``dropout=0``: no Dropout module); switching the default to 0 was tried and reverted: the
measurements did not show it better (docs/depth.md), and the converged VGG-16 that meets seed 004's claim here had 0.5.
MaxPool is replaced by ``AvgPool2d(2)``; a pooling stage that would shrink the feature map below 1×1 is dropped,
so any ``input_size`` works (28 → 14 → 7 → 3 → 1).
"""

from __future__ import annotations

from torch import Tensor, nn

from snnconv.layers.act import ActFactory
from snnconv.models.registry import check_input, init_weights, register_model, scale

Cfg = list[int | str]
CFGS: dict[str, Cfg] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """``features`` (conv-BN-act blocks, AvgPool2d per "M"); ``classifier`` with ``hidden_layers`` hidden layers."""

    def __init__(
        self,
        cfg: Cfg,
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: float = 1.0,
        hidden: int | None = None,
        dropout: float = 0.5,
        hidden_layers: int = 2,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for item in cfg:
            if item == "M":
                if size // 2 >= 1:
                    layers.append(nn.AvgPool2d(2))
                    size //= 2
                continue
            out = scale(int(item), width)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), act(out)]
            channels = out
        self.features = nn.Sequential(*layers)
        hidden = hidden if hidden is not None else scale(4096, width)
        head: list[nn.Module] = [nn.Flatten()]
        features = channels * size * size
        for _ in range(hidden_layers):  # Linear - act (- Dropout), then the output layer
            head += [nn.Linear(features, hidden), act(hidden)] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            features = hidden
        head.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*head)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model("vgg11")
def vgg11(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> VGG:
    """VGG-11 (configuration A) with BatchNorm; kwargs: ``width``, ``hidden``, ``dropout``."""
    return VGG(CFGS["vgg11"], act, num_classes, in_channels, input_size, **kwargs)


@register_model("vgg16")
def vgg16(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> VGG:
    """VGG-16 (configuration D) with BatchNorm; kwargs: ``width``, ``hidden``, ``dropout``."""
    return VGG(CFGS["vgg16"], act, num_classes, in_channels, input_size, **kwargs)
