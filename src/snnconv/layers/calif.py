"""Ca-LIF neuron module and the readout of an exported QAT network (seed 003 / SPEC §5).

``CalifNeuron`` is accumulate-then-round (``causal = False``): the engine passes it the whole [T, B, ...]
current sequence; it returns the signed spike count of every step, with the rounding spike folded into the
last step, so the next (integer-weight) layer receives exactly its integer input. With
``max_spikes_per_step=1`` (default, the seed's neuron) each step carries at most one spike per neuron; with
``None`` (burst) the signed totals equal the QANN codes after the last step. Its ``output`` is the identity:
the scales are folded into θ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from snnconv.errors import SnnconvError, count_not_positive
from snnconv.functional.calif import ROUNDINGS, Rounding, calif_scan, check_max_spikes
from snnconv.layers.channels import channel_view
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.temporal import TimeAware


def _param(value: Tensor | float, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().clone()
    if t.dim() > 1:
        raise SnnconvError(f"CalifNeuron: {name} must be a scalar or (C,), got shape {tuple(t.shape)}")
    return t


class CalifNeuron(SpikingNeuron):
    """Ca-LIF: θ = S_y/(S_w·S_x), leak λ = −bias/T, codes clamped to [lo, hi] (lo = 0: calcium gating).

    ``max_spikes_per_step``: 1 (seed 003 §3.2: one spike per step, the residual carried over) or None (burst).
    Average pooling is ``CalifNeuron(p*p, lo=-inf)`` after a sum pool (no leak, unit weights, no gating).
    """

    causal = False

    def __init__(
        self,
        threshold: Tensor | float,
        bias: Tensor | float = 0.0,
        lo: float = 0.0,
        hi: float = math.inf,
        rounding: Rounding = "half_even",
        max_spikes_per_step: int | None = 1,
    ) -> None:
        super().__init__()
        threshold = _param(threshold, "threshold")
        if count_not_positive(threshold):
            raise SnnconvError("CalifNeuron: thresholds must be finite and > 0")
        if rounding not in ROUNDINGS:
            raise SnnconvError(f"CalifNeuron: rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if not lo <= 0 <= hi:
            raise SnnconvError(f"CalifNeuron: need lo <= 0 <= hi, got [{lo}, {hi}]")
        self.register_buffer("threshold", threshold)
        self.register_buffer("bias", _param(bias, "bias"))
        self.lo, self.hi, self.rounding = float(lo), float(hi), rounding
        self.max_spikes_per_step = check_max_spikes(max_spikes_per_step, "CalifNeuron")

    def leak(self, T: int) -> Tensor:
        """λ_leak = −b/(S_w·S_x·T) per step (SPEC §5)."""
        return -self.bias / T

    def init_state(self, current: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(current), torch.zeros_like(current)

    def scan(self, currents: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        nd = currents.dim() - 1
        th, b = channel_view(self.threshold, nd), channel_view(self.bias, nd)
        return calif_scan(currents, th, b, self.lo, self.hi, self.rounding, state,
                          max_spikes_per_step=self.max_spikes_per_step)  # fmt: skip

    def step(self, current: Tensor, state: tuple[Tensor, Tensor], t: int) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        raise NotImplementedError("CalifNeuron rounds after all T steps; simulate with schedule='layer'")

    def output(self, spikes: Tensor) -> Tensor:
        return spikes

    def count(self, values: Tensor) -> Tensor:
        """Signed counts per step: a step may carry several spikes of either sign; count them all."""
        return torch.linalg.vector_norm(values, ord=1, dim=tuple(range(1, values.dim())))  # Σ|n|, no copies

    def extra_repr(self) -> str:
        th = self.threshold
        desc = f"threshold={float(th):.4g}" if th.dim() == 0 else f"channels={th.numel()}"
        return (f"{desc}, lo={self.lo}, hi={self.hi}, rounding={self.rounding}, "
                f"max_spikes_per_step={self.max_spikes_per_step}")  # fmt: skip


class CalifReadout(TimeAware):
    """Output layer readout: value(t) = T·unit·x(t) + bias, so the engine's mean over T is unit·Σx + bias."""

    def __init__(self, unit: Tensor | float, bias: Tensor | float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.register_buffer("unit", torch.as_tensor(unit, dtype=torch.get_default_dtype()).detach().clone())
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.get_default_dtype()).detach().clone())
        self.channel_last = channel_last

    def _view(self, p: Tensor, ndim: int) -> Tensor:
        return p if (p.dim() == 0 or self.channel_last) else channel_view(p, ndim)

    def seq(self, x: Tensor, start: int, T: int) -> Tensor:
        nd = x.dim() - 1
        return x * (self._view(self.unit, nd) * T) + self._view(self.bias, nd)
