"""Spiking neuron modules: thin stateless wrappers of the pure dynamics in ``snnconv.functional``.

A neuron holds only parameters (threshold θ, scalar or per channel). State is owned by the simulation engine:
``init_state``/``step`` for the step-by-step schedule, ``scan`` for the layer-by-layer schedule (time folded
into the batch for the linear layers, the neuron loops over T). ``output`` turns 0/1 spikes into the value
the next layer receives (s·θ, SPEC §1).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from snnconv.errors import SnnconvError, count_not_positive
from snnconv.functional.if_neuron import IFState, if_init, if_scan, if_scan_values, if_step
from snnconv.layers.channels import channel_view


class SpikingNeuron(nn.Module):
    """Base class the engine and the conversion passes recognise. Subclasses implement the four methods."""

    #: True if the neuron can advance one step at a time (IF); False for accumulate-then-fire neurons.
    causal: bool = True

    def init_state(self, current: Tensor) -> Any:
        """The state before step 1, for currents shaped like ``current`` (one step: [B, ...])."""
        raise NotImplementedError

    def scan(self, currents: Tensor, state: Any) -> tuple[Tensor, Any]:
        """0/1 spikes for a [T, B, ...] current sequence starting from ``state``; returns the final state."""
        raise NotImplementedError

    def step(self, current: Tensor, state: Any, t: int) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def output(self, spikes: Tensor) -> Tensor:
        """The value sent to the next layer for ``spikes`` (0/1) of shape [T, B, ...]; non-zero iff a spike."""
        raise NotImplementedError

    def count(self, values: Tensor) -> Tensor:
        """Spikes per step, summed over the batch and neurons, for output ``values`` [T, B, ...]."""
        return torch.count_nonzero(values.reshape(values.shape[0], -1), dim=1)

    def scan_values(self, currents: Tensor, state: Any) -> tuple[Tensor, Any]:
        """``output(scan(...))`` in one go; neurons may override it with a fused version."""
        spikes, state = self.scan(currents, state)
        return self.output(spikes), state

    def scan_counted(self, currents: Tensor, state: Any, overwrite: bool = False) -> tuple[Tensor, Any, Tensor]:
        """``scan_values`` plus the spike count of every step (what the engine calls); fused where it pays.

        ``overwrite=True`` is the engine's promise that nothing else reads ``currents`` or ``state`` afterwards:
        a neuron may then write its outputs over the currents and update its state in place.
        """
        values, state = self.scan_values(currents, state)
        return values, state, self.count(values)

    def forward(self, currents: Tensor) -> Tensor:
        """Direct use on a [T, B, ...] sequence from the initial state: the output values s(t)·θ."""
        spikes, _ = self.scan(currents, self.init_state(currents[0]))
        return self.output(spikes)


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire, reset by subtraction, v(0) = φθ, H(0) = 1 (seed 004; SPEC §1)."""

    def __init__(self, threshold: Tensor | float, phi: float = 0.5) -> None:
        super().__init__()
        if not (isinstance(threshold, Tensor) and threshold.is_floating_point()):
            threshold = torch.as_tensor(threshold, dtype=torch.get_default_dtype())
        threshold = threshold.detach().clone()
        if threshold.dim() > 1:
            raise SnnconvError(f"IFNeuron: threshold must be a scalar or (C,), got shape {tuple(threshold.shape)}")
        if count_not_positive(threshold):
            raise SnnconvError(
                f"IFNeuron: thresholds must be finite and > 0 (min {float(threshold.min()):.4g}); "
                "train with positive='softplus' or check the source model's QCFS thresholds"
            )
        self.register_buffer("threshold", threshold)
        self.phi = float(phi)

    def _theta(self, ndim: int) -> Tensor:
        return channel_view(self.threshold, ndim)

    def init_state(self, current: Tensor) -> IFState:
        return if_init(current, self._theta(current.dim()), self.phi)

    def scan(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        return if_scan(currents, state, self._theta(currents.dim() - 1))

    def step(self, current: Tensor, state: IFState, t: int) -> tuple[Tensor, IFState]:
        return if_step(current, state, self._theta(current.dim()))

    def output(self, spikes: Tensor) -> Tensor:
        return spikes * self._theta(spikes.dim() - 1)

    def scan_values(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        return self.scan_counted(currents, state)[:2]

    def scan_counted(self, currents: Tensor, state: IFState, overwrite: bool = False) -> tuple[Tensor, IFState, Tensor]:
        return if_scan_values(currents, state, self._theta(currents.dim() - 1), overwrite=overwrite)

    def extra_repr(self) -> str:
        th = self.threshold
        desc = f"threshold={float(th):.4g}" if th.dim() == 0 else f"channels={th.numel()}"
        return f"{desc}, phi={self.phi}"
