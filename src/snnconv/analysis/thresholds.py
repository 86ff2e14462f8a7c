"""Threshold statistics of channel-wise QCFS models and their SNNs (seed 002 §5.6.1, Table 5; SPEC §4).

Per layer ``Diff = (max θ - min θ) / min θ`` over its channels (0 for a layer-wise threshold); ``MaxDiff`` and
``AvgDiff`` are the maximum and the mean of Diff over all layers. θ is the effective threshold (softplus(λ) for a
softplus-reparameterized QCFS, the neuron threshold in an SNN). A plain QCFS layer (``positive="none"``) with a
non-positive θ gets a ``RuntimeWarning`` (its SNN would be wrong, seed 002 Eq. 14), and its Diff is NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from torch import Tensor, nn

from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.qcfs import QCFS

__all__ = ["LayerThresholds", "ThresholdStats", "threshold_stats", "threshold_table"]


@dataclass
class LayerThresholds:
    name: str
    channels: int  #: 1 for a layer-wise threshold
    min: float
    max: float
    mean: float
    positive: str = "none"  #: "softplus" or "none" (QCFS); "snn" for a spiking neuron
    non_positive: int = 0  #: channels with θ ≤ 0

    @property
    def diff(self) -> float:
        """(max θ - min θ) / min θ; NaN when min θ ≤ 0."""
        return (self.max - self.min) / self.min if self.min > 0 else math.nan


@dataclass
class ThresholdStats:
    layers: list[LayerThresholds] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        return max((l.diff for l in self.layers), default=math.nan)

    @property
    def avg_diff(self) -> float:
        return sum(l.diff for l in self.layers) / len(self.layers) if self.layers else math.nan

    def to_dict(self) -> dict:
        return {
            "layers": {l.name: {"channels": l.channels, "min": l.min, "max": l.max, "mean": l.mean, "diff": l.diff}
                       for l in self.layers},
            "max_diff": self.max_diff,
            "avg_diff": self.avg_diff,
        }  # fmt: skip

    def table(self, digits: int = 4) -> str:
        return threshold_table(self, digits)


def _thresholds(module: nn.Module) -> tuple[Tensor, str] | None:
    if isinstance(module, QCFS):
        return module.theta().detach(), module.positive
    if isinstance(module, SpikingNeuron) and isinstance(getattr(module, "threshold", None), Tensor):
        return module.threshold.detach(), "snn"
    return None


def threshold_stats(model: nn.Module, *, warn: bool = True) -> ThresholdStats:
    """Per-layer threshold statistics of every QCFS module (ANN) or threshold-carrying neuron (SNN) of ``model``."""
    stats = ThresholdStats()
    bad: list[str] = []
    for name, module in model.named_modules():
        found = _thresholds(module)
        if found is None:
            continue
        theta, positive = found
        theta = theta.double().flatten()
        layer = LayerThresholds(name or type(module).__name__, theta.numel(), float(theta.min()),
                                float(theta.max()), float(theta.mean()), positive, int((theta <= 0).sum()))  # fmt: skip
        if positive == "none" and layer.min <= 0:
            bad.append(f"{layer.name} (min θ = {layer.min:.4g}, {layer.non_positive} of {theta.numel()})")
        stats.layers.append(layer)
    if warn and bad:
        warnings.warn(
            f"non-positive QCFS thresholds in {', '.join(bad)}: these layers cannot be converted faithfully "
            "(seed 002 Eq. 14); retrain with positive='softplus' (act 'csqcfs')",
            RuntimeWarning,
            stacklevel=2,
        )
    return stats


def threshold_table(stats: ThresholdStats, digits: int = 4) -> str:
    """Text table: layer, channels, min/mean/max θ, Diff (%); then MaxDiff and AvgDiff."""
    head = ["layer", "channels", "min θ", "mean θ", "max θ", "Diff"]
    rows = [[l.name, str(l.channels), f"{l.min:.{digits}g}", f"{l.mean:.{digits}g}", f"{l.max:.{digits}g}",
             f"{100 * l.diff:.1f}%"] for l in stats.layers]  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.append(f"MaxDiff {100 * stats.max_diff:.1f}%  AvgDiff {100 * stats.avg_diff:.1f}%")
    return "\n".join(lines)
