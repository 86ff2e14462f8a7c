"""IF-neuron variants for seed 002's experiments: binary outputs, offset-spike calibration (COS), masking (SRP).

All three keep the IF dynamics of ``snnconv.functional.if_neuron`` (SPEC §1) and the ``SpikingNeuron`` API, so the
ordinary engine (``snnconv.simulate``) and ``snnconv.evaluate.sweep`` run them unchanged.

* ``BinaryIFNeuron``: an ``IFNeuron`` whose output is the 0/1 spike itself; its θ has been folded into the next
  layer's weights (``snnconv.convert.calibration.fold_thresholds``).

* ``CalibratedIFNeuron`` with ``mode="cos"``: offset-spike calibration after Hao, Ding, Bu, Huang & Yu (2023),
  "Bridging the gap between ANNs and SNNs by calibrating offset spikes" (arXiv:2302.10685). Per neuron and per
  sample, with ρ calibration steps:

      1. run the plain IF neuron (v(0) = φθ) on the first ρ input currents: c spikes, residual potential v(ρ);
      2. the count its input implies is the QCFS count of the same total input,
         c* = clip(floor((v(0) + Σ_{t≤ρ} I(t)) / θ), 0, ρ) = clip(c + floor(v(ρ)/θ), 0, ρ);
      3. the offset spike is ψ = c - c*;
      4. the real run restarts from v(0) = φθ - ψ·θ (optionally |ψ| ≤ ``max_offset``).

  E.g. θ = 1, inputs +1, +1, -1, -1 (mean 0, QCFS value 0): the plain neuron fires twice (v(4) = -1.5, ψ = 2);
  calibrated with ρ = 4 it starts at -1.5 and stays silent.

* ``CalibratedIFNeuron`` with ``mode="srp"``: the residual-potential strategy of Hao, Bu, Ding, Huang & Yu (AAAI
  2023), "Reducing ANN-SNN conversion error through residual membrane potential" (arXiv:2302.02091). With τ
  steps: run the plain neuron on the first τ currents; a neuron whose v(τ) ≤ 0 (its input says it should be
  silent, or it already fired more than its input justifies) is masked; the real run restarts from v(0) = φθ and a
  masked neuron emits no spike at any step of it (its potential still integrates, it is never reset).

Calibration is sequential, layer by layer: each neuron calibrates on the first ρ (τ) currents of *its own* input
sequence, i.e. the real-run output of the already calibrated layers before it. This is exactly "run the first ρ
steps with the earlier layers calibrated, shift, rerun", because the first ρ steps of the earlier layers do not
depend on anything later. Consequences for the engine: the neuron needs the whole input sequence before it emits
(``causal = False``: layer-by-layer schedule, no chunking) and at least ρ (τ) steps of it; to read results at
T < ρ, simulate max(T, ρ) steps and keep the first T (``snnconv.convert.calibration.simulate_calibrated``), or
sweep up to some T ≥ ρ. The reported T excludes the ρ (τ) calibration steps, as in both papers.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from snnconv.errors import SimulationError
from snnconv.functional.if_neuron import IFState, if_scan, if_scan_values
from snnconv.layers.neuron import IFNeuron, SpikingNeuron

__all__ = ["BinaryIFNeuron", "CalibratedIFNeuron", "CalibrationMode", "cos_offset", "if_scan_masked", "srp_mask"]

CalibrationMode = Literal["cos", "srp"]


def cos_offset(spike_count: Tensor, v: Tensor, threshold: Tensor, steps: int) -> Tensor:
    """Offset spikes ψ = c - clip(c + floor(v/θ), 0, steps) after ``steps`` steps with c spikes and potential v."""
    desired = torch.clamp(spike_count + torch.floor(v / threshold), 0, steps)
    return spike_count - desired


def srp_mask(v: Tensor) -> Tensor:
    """SRP's mask: True where the residual potential after the pre-run is ≤ 0 (the neuron is silenced)."""
    return v <= 0


def if_scan_masked(currents: Tensor, state: IFState, threshold: Tensor, mask: Tensor) -> tuple[Tensor, IFState]:
    """``if_scan`` where the neurons with ``mask`` True never fire (0/1 spikes, final state)."""
    keep = (~mask).to(currents.dtype)
    v = state.v.clone()
    spikes = torch.empty(currents.shape, dtype=currents.dtype, device=currents.device)
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        s = spikes[t]
        torch.mul(v >= threshold, keep, out=s)
        v.sub_(s * threshold)
    return spikes, IFState(v=v)


class BinaryIFNeuron(IFNeuron):
    """IF neuron that outputs the 0/1 spikes (θ folded into the next layer's weights)."""

    def output(self, spikes: Tensor) -> Tensor:
        return spikes

    def scan_values(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        return if_scan(currents, state, self._theta(currents.dim() - 1))

    scan_counted = SpikingNeuron.scan_counted  # count what this class's scan_values emits

    def extra_repr(self) -> str:
        return super().extra_repr() + ", binary"


class CalibratedIFNeuron(IFNeuron):
    """IF neuron that calibrates itself on the first ``steps`` input steps, then reruns (module docstring).

    ``last_calibration`` holds the most recent per-sample, per-neuron correction ([B, ...]): the offsets ψ (COS)
    or the boolean mask (SRP). ``binary=True`` outputs 0/1 spikes (θ folded into the next layer).
    """

    causal = False

    def __init__(
        self,
        threshold: Tensor | float,
        phi: float = 0.5,
        *,
        mode: CalibrationMode = "cos",
        steps: int = 1,
        max_offset: int | None = None,
        binary: bool = False,
    ) -> None:
        super().__init__(threshold, phi)
        if mode not in ("cos", "srp"):
            raise ValueError(f"CalibratedIFNeuron: mode must be 'cos' or 'srp', got {mode!r}")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"CalibratedIFNeuron: steps (rho/tau) must be a positive integer, got {steps!r}")
        if max_offset is not None and (not isinstance(max_offset, int) or max_offset < 0):
            raise ValueError(f"CalibratedIFNeuron: max_offset must be None or an integer >= 0, got {max_offset!r}")
        self.mode: CalibrationMode = mode
        self.steps = steps
        self.max_offset = max_offset
        self.binary = bool(binary)
        self.last_calibration: Tensor | None = None

    def calibrate(self, currents: Tensor, state: IFState) -> Tensor:
        """The correction from the first ``steps`` currents of ``currents`` [T, B, ...] (ψ for COS, mask for SRP)."""
        if currents.shape[0] < self.steps:
            name = "rho" if self.mode == "cos" else "tau"
            raise SimulationError(
                f"{self.mode.upper()} calibrates on the first {name}={self.steps} steps but got only "
                f"{currents.shape[0]}; simulate at least {self.steps} steps and keep the first T "
                "(snnconv.convert.calibration.simulate_calibrated does this)"
            )
        theta = self._theta(currents.dim() - 1)
        spikes, pre = if_scan(currents[: self.steps], state, theta)
        if self.mode == "srp":
            return srp_mask(pre.v)
        psi = cos_offset(spikes.sum(0), pre.v, theta, self.steps)
        if self.max_offset is not None:
            psi = psi.clamp(-self.max_offset, self.max_offset)
        return psi

    def _run(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        theta = self._theta(currents.dim() - 1)
        correction = self.calibrate(currents, state)
        self.last_calibration = correction
        if self.mode == "srp":
            return if_scan_masked(currents, state, theta, correction)
        shifted = IFState(v=state.v - correction * theta)
        return if_scan(currents, shifted, theta)

    def scan(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        return self._run(currents, state)

    def output(self, spikes: Tensor) -> Tensor:
        return spikes if self.binary else spikes * self._theta(spikes.dim() - 1)

    def scan_values(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        if self.mode == "cos" and not self.binary:  # fused path: s·θ is exact, potentials as in if_scan
            correction = self.calibrate(currents, state)
            self.last_calibration = correction
            theta = self._theta(currents.dim() - 1)
            return if_scan_values(currents, IFState(v=state.v - correction * theta), theta)[:2]
        spikes, state = self._run(currents, state)
        return self.output(spikes), state

    scan_counted = SpikingNeuron.scan_counted  # count what this class's scan_values emits

    def step(self, current: Tensor, state: IFState, t: int) -> tuple[Tensor, IFState]:
        raise SimulationError(
            f"{self.mode.upper()} neurons calibrate on their first {self.steps} input steps before firing, so they "
            "cannot advance one step at a time; use schedule='layer' without chunk"
        )

    def extra_repr(self) -> str:
        name = "rho" if self.mode == "cos" else "tau"
        extra = f", max_offset={self.max_offset}" if self.max_offset is not None else ""
        return f"{super().extra_repr()}, mode={self.mode}, {name}={self.steps}{extra}" + (
            ", binary" if self.binary else ""
        )
