"""Activation factories: ``act(channels) -> nn.Module``, passed to model constructors (timm's ``act_layer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import nn

from snnconv.layers.qcfs import QCFS

ActFactory = Callable[[int], nn.Module]
ActKind = Literal["relu", "qcfs", "csqcfs"]
ACT_KINDS: tuple[str, ...] = ("relu", "qcfs", "csqcfs")


def make_act(kind: ActKind = "qcfs", levels: int = 4, threshold: float = 8.0, shift: float = 0.5) -> ActFactory:
    """Factory for the activation ``kind``: ReLU, layer-wise QCFS, or channel-wise softplus QCFS (seed 002)."""
    if kind == "relu":

        def make(channels: int) -> nn.Module:
            return nn.ReLU(inplace=True)
    elif kind == "qcfs":

        def make(channels: int) -> nn.Module:
            return QCFS(levels, threshold, shift)
    elif kind == "csqcfs":

        def make(channels: int) -> nn.Module:
            return QCFS(levels, threshold, shift, per_channel=True, channels=channels, positive="softplus")
    else:
        raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACT_KINDS)}")
    make.__name__ = make.__qualname__ = kind if kind == "relu" else f"{kind}_L{levels}"
    return make
