"""Activation factories: ``act(channels) -> nn.Module``, passed to model constructors (timm's ``act_layer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import nn

from snnconv.errors import RegistryError
from snnconv.layers.qcfs import QCFS

ActFactory = Callable[[int], nn.Module]
ActKind = Literal["relu", "qcfs", "qcfs-softplus", "csqcfs", "csqcfs-plain"]
ACT_KINDS: tuple[str, ...] = ("relu", "qcfs", "qcfs-softplus", "csqcfs", "csqcfs-plain")
#: (per_channel, positive) of each QCFS kind; "csqcfs" is seed 002's channel-wise softplus QCFS, the other two are
#: its ablations (w/o channel, w/o softplus).
_QCFS_KINDS = {"qcfs": (False, "none"), "qcfs-softplus": (False, "softplus"), "csqcfs": (True, "softplus"),
               "csqcfs-plain": (True, "none")}  # fmt: skip


def make_act(kind: ActKind = "qcfs", levels: int = 4, threshold: float = 8.0, shift: float = 0.5) -> ActFactory:
    """Factory for ``kind``: ReLU, layer-wise QCFS, channel-wise softplus QCFS (seed 002) or its ablations."""
    if kind == "relu":

        def make(channels: int) -> nn.Module:
            return nn.ReLU(inplace=True)

    elif kind in _QCFS_KINDS:
        per_channel, positive = _QCFS_KINDS[kind]

        def make(channels: int) -> nn.Module:
            return QCFS(levels, threshold, shift, per_channel=per_channel, channels=channels, positive=positive)

    else:
        raise RegistryError(f"unknown activation {kind!r}; choose one of {', '.join(ACT_KINDS)}")
    make.__name__ = make.__qualname__ = kind if kind == "relu" else f"{kind}_L{levels}"
    return make
