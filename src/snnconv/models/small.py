"""Tiny models for unit tests and bit-serial experiments.

* ``small_cnn``: conv3×3(16)-BN-act-AvgPool2d(2)-conv3×3(32)-BN-act-AvgPool2d(2)-Flatten-Linear-act-Linear;
  a pooling stage that would shrink the map below 1×1 is dropped (as in VGG).
* ``mlp``: Flatten-Linear-BN1d-act-Linear-act-Linear.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnconv.layers.act import ActFactory
from snnconv.models.registry import check_input, init_weights, register_model, scale
from snnconv.models.vgg import VGG


class MLP(nn.Module):
    """Flatten-Linear-BN1d-act-Linear-act-Linear on ``in_channels·input_size²`` inputs."""

    def __init__(
        self,
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: float = 1.0,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        hidden = hidden if hidden is not None else scale(256, width)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * input_size * input_size, hidden),
            nn.BatchNorm1d(hidden),
            act(hidden),
            nn.Linear(hidden, hidden),
            act(hidden),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register_model("small_cnn")
def small_cnn(
    num_classes: int, in_channels: int, input_size: int, act: ActFactory, width: float = 1.0, hidden: int | None = None
) -> VGG:
    """Tiny VGG-style CNN for tests and demos: conv16-pool-conv32-pool, one hidden layer (64·width)."""
    hidden = hidden if hidden is not None else scale(64, width)
    return VGG(
        [16, "M", 32, "M"], act, num_classes, in_channels, input_size, width, hidden, dropout=0.0, hidden_layers=1
    )


@register_model("mlp")
def mlp(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> MLP:
    """Three-layer MLP; kwargs: ``width``, ``hidden`` (default 256·width)."""
    return MLP(act, num_classes, in_channels, input_size, **kwargs)
