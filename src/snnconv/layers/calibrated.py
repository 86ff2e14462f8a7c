"""IF-neuron variants for seed 002's experiments: binary outputs, offset-spike calibration (COS), masking (SRP).

All keep the IF dynamics of ``snnconv.functional.if_neuron`` (SPEC §1: m(t) = v(t-1) + I(t), fire when m ≥ θ,
reset by subtraction) and the ``SpikingNeuron`` API, so the ordinary engine (``snnconv.simulate``) runs them.

* ``BinaryIFNeuron``: an ``IFNeuron`` whose output is the 0/1 spike itself; its θ has been folded into the next
  layer's weights (``snnconv.convert.calibration.fold_thresholds``).

* ``COSNeuron``: offset-spike calibration (Hao, Ding, Bu, Huang & Yu 2023, arXiv:2302.10685), with the rule of
  issue 5, per neuron and per sample. Layer by layer over the whole input sequence:

      1. run ρ pre-simulation steps on the first ρ input currents from v = θ/2 (φθ);
      2. if the residual potential v(ρ) < 0 and the neuron fired, it fired too much: restart from
         v0 = θ/2 - θ·max(1, m_s/θ - 0.999), m_s = the lowest pre-reset potential m(t) at a firing step;
      3. if v(ρ) ≥ θ it fired too little: restart from v0 = θ/2 + θ·max(1, 1.001 - m_n/θ), m_n = the highest
         potential at a non-firing step. If it fired at every step m_n does not exist: ``shift="reference"``
         (default) does what the authors' code does (hzc1208/ANN2SNN_COS, ``MPLayer``: a silent step's potential
         defaults to -1000θ), v0 = θ/2 + 1001.001·θ, so the neuron keeps firing at every replayed step;
         ``shift="theta"`` (snnconv's earlier rule) shifts by θ, the floor of the max;
      4. otherwise v0 = θ/2;
      5. replay all T steps from t = 1 starting at v0 and pass only those T outputs on.

  The shift moves the lowest firing step to m = 0.999θ (no spike) or the highest silent step to m = 1.001θ
  (a spike): one calibration removes or adds at least one spike, not the whole offset. E.g. θ = 1, currents
  -2, -2, +2, +2, +2 (seed 004's "fewer spikes" case, QCFS value 2 spikes): plain IF fires once, v(5) = 1.5 ≥ θ,
  m_n = 0.5, v0 = 1.5, the replay fires twice. Currents +2, +2, +2, -2, -2 (QCFS 2 spikes, plain IF 4): v0 =
  -0.5, the replay fires 3.

  "Layer by layer" means each neuron pre-simulates on the first ρ currents of *its own* input sequence, i.e. the
  replayed output of the already calibrated layers before it, so the neuron needs its whole input sequence before
  it emits (``causal = False``: layer schedule, no chunking) and at least ρ steps of it. To read T < ρ, simulate
  max(T, ρ) steps and keep the first T (``snnconv.convert.calibration.simulate_calibrated``). Latency: ρ + T.

* ``SRPNeuron``: residual-membrane-potential masking (Hao, Bu, Ding, Huang & Yu, AAAI 2023, arXiv:2302.02091),
  with the rule of issue 5: run τ steps in sync (the whole network, every layer the plain IF neuron), mask =
  (v(τ) > 1e-3·θ), reset v = θ/2 (φθ), then for the next T steps the spikes are multiplied by the mask. The
  neuron is causal: its state counts the steps, steps 1..τ are the plain pre-run and steps τ+1..τ+T the masked
  real run, so a network simulated for τ + T steps runs the whole protocol; only the last T steps are the result
  (``snnconv.convert.calibration.simulate_calibrated`` drops the pre-run). Latency: τ + T. (A masked neuron's
  potential is irrelevant: it never emits.)
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from snnconv.errors import SimulationError, SnnconvError
from snnconv.functional.if_neuron import IFState, if_scan, if_scan_values
from snnconv.layers.neuron import IFNeuron, SpikingNeuron

__all__ = [
    "BinaryIFNeuron", "COSNeuron", "COS_REFERENCE_SHIFT", "COS_SHIFTS", "Calibration", "CalibratedIFNeuron",
    "CosShift", "SRPNeuron", "SRPState", "SRP_MARGIN", "check_cos_shift", "cos_initial_potential", "srp_mask",
]  # fmt: skip

#: the calibration of ``convert(ann, method="if", calibration=...)``
Calibration = Literal["none", "cos", "srp"]

#: SRP keeps a neuron iff v(τ) > SRP_MARGIN·θ
SRP_MARGIN = 1e-3

CosShift = Literal["reference", "theta"]
#: COS's up-shift for a neuron that fired at every pre-run step and still holds v(ρ) >= θ: "reference" (the authors'
#: code, COS_REFERENCE_SHIFT·θ) or "theta" (θ, snnconv's earlier rule)
COS_SHIFTS: tuple[str, ...] = ("reference", "theta")
#: 1.001 - (-1000): the authors' code takes the highest silent-step potential as -1000θ when there is none
COS_REFERENCE_SHIFT = 1001.001


def check_cos_shift(shift: str, where: str = "COS", error: type[SnnconvError] = SnnconvError) -> str:
    """``shift`` if it is one of ``COS_SHIFTS``, else ``error`` naming the argument and the allowed values."""
    if shift not in COS_SHIFTS:
        raise error(f"{where}: cos_shift must be one of {', '.join(COS_SHIFTS)}, got {shift!r}")
    return shift


def cos_initial_potential(currents: Tensor, v: Tensor, threshold: Tensor, shift: CosShift = "reference") -> Tensor:
    """COS's restart potential v0 after pre-simulating the [ρ, B, ...] ``currents`` from potential ``v`` (= θ/2).

    Per neuron: v0 = v - θ·max(1, m_s/θ - 0.999) if v(ρ) < 0 and it fired; v0 = v + θ·max(1, 1.001 - m_n/θ) if
    v(ρ) ≥ θ, where a neuron with no silent step shifts by 1001.001·θ (``shift="reference"``, the authors' code)
    or θ (``"theta"``); else v0 = v. ``threshold`` broadcasts over one step's shape.
    """
    saturated = COS_REFERENCE_SHIFT if check_cos_shift(shift, "cos_initial_potential") == "reference" else 1.0
    pot = v.clone()
    inf = torch.tensor(torch.inf, dtype=v.dtype, device=v.device)
    low_fire = torch.full_like(v, torch.inf)  # m_s: lowest pre-reset potential at a firing step
    high_silent = torch.full_like(v, -torch.inf)  # m_n: highest potential at a non-firing step
    for t in range(currents.shape[0]):
        pot.add_(currents[t])
        fired = pot >= threshold
        low_fire = torch.minimum(low_fire, torch.where(fired, pot, inf))
        high_silent = torch.maximum(high_silent, torch.where(fired, -inf, pot))
        pot.sub_(fired.to(pot.dtype) * threshold)
    too_much = (pot < 0) & torch.isfinite(low_fire)
    too_little = pot >= threshold
    one = torch.ones_like(v)
    down = torch.where(too_much, torch.maximum(one, low_fire / threshold - 0.999), 0.0)
    up = torch.where(
        too_little,
        torch.where(torch.isfinite(high_silent), torch.maximum(one, 1.001 - high_silent / threshold), saturated),
        0.0,
    )
    return v + (up - down) * threshold


def srp_mask(v: Tensor, threshold: Tensor) -> Tensor:
    """SRP's mask (bool): True where the residual potential after the pre-run v(τ) > 1e-3·θ (the neuron may fire)."""
    return v > SRP_MARGIN * threshold


def _check_steps(name: str, steps: int) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise SnnconvError(f"{name} must be a positive integer, got {steps!r}")
    return steps


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
    """Base of the calibrated IF neurons: ``steps`` pre-run steps (ρ or τ); ``binary=True`` outputs 0/1 spikes."""

    kind: str = ""
    steps_name: str = "steps"

    def __init__(self, threshold: Tensor | float, phi: float = 0.5, *, steps: int = 4, binary: bool = False) -> None:
        super().__init__(threshold, phi)
        self.steps = _check_steps(f"{type(self).__name__}: {self.steps_name}", steps)
        self.binary = bool(binary)

    def output(self, spikes: Tensor) -> Tensor:
        return spikes if self.binary else spikes * self._theta(spikes.dim() - 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.steps_name}={self.steps}" + (", binary" if self.binary else "")


class COSNeuron(CalibratedIFNeuron):
    """IF neuron with offset-spike calibration on the first ρ input steps, then a replay (module docstring)."""

    kind = "cos"
    steps_name = "rho"
    causal = False

    def __init__(self, threshold: Tensor | float, phi: float = 0.5, *, rho: int = 4, binary: bool = False,
                 shift: CosShift = "reference") -> None:  # fmt: skip
        super().__init__(threshold, phi, steps=rho, binary=binary)
        self.shift = check_cos_shift(shift, "COSNeuron")

    @property
    def rho(self) -> int:
        return self.steps

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shift={self.shift}"

    def start(self, currents: Tensor, state: IFState) -> IFState:
        """The replay's initial state: ``cos_initial_potential`` of the first ρ currents of [T, B, ...]."""
        if currents.shape[0] < self.steps:
            raise SimulationError(
                f"COS pre-simulates the first rho={self.steps} steps but got only {currents.shape[0]}; simulate at "
                f"least {self.steps} steps and keep the first T (snnconv.convert.calibration.simulate_calibrated)"
            )
        theta = self._theta(currents.dim() - 1)
        return IFState(v=cos_initial_potential(currents[: self.steps], state.v, theta, self.shift))

    def scan(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        return if_scan(currents, self.start(currents, state), self._theta(currents.dim() - 1))

    def scan_counted(self, currents: Tensor, state: IFState, overwrite: bool = False) -> tuple[Tensor, IFState, Tensor]:
        if self.binary:
            spikes, state = self.scan(currents, state)
            return spikes, state, self.count(spikes)
        theta = self._theta(currents.dim() - 1)
        return if_scan_values(currents, self.start(currents, state), theta, overwrite=overwrite)

    def scan_values(self, currents: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        return self.scan_counted(currents, state)[:2]

    def step(self, current: Tensor, state: IFState, t: int) -> tuple[Tensor, IFState]:
        raise SimulationError(
            f"COS neurons pre-simulate their first rho={self.steps} input steps before the replay, so they cannot "
            "advance one step at a time; use schedule='layer' without chunk"
        )


class SRPState(NamedTuple):
    v: Tensor  #: membrane potential after the last step
    t: int  #: steps done so far (pre-run included)
    mask: Tensor | None  #: after step τ: 1 where the neuron may fire, 0 where it is silenced (current's dtype)


class SRPNeuron(CalibratedIFNeuron):
    """IF neuron whose steps 1..τ are a plain pre-run and whose later spikes are masked by v(τ) > 1e-3·θ."""

    kind = "srp"
    steps_name = "tau"

    def __init__(self, threshold: Tensor | float, phi: float = 0.5, *, tau: int = 4, binary: bool = False) -> None:
        super().__init__(threshold, phi, steps=tau, binary=binary)

    @property
    def tau(self) -> int:
        return self.steps

    def init_state(self, current: Tensor) -> SRPState:
        return SRPState(v=super().init_state(current).v, t=0, mask=None)

    def scan(self, currents: Tensor, state: SRPState) -> tuple[Tensor, SRPState]:
        theta = self._theta(currents.dim() - 1)
        v, t, mask = state
        n = currents.shape[0]
        parts: list[Tensor] = []
        done = 0
        if t < self.steps:  # the plain pre-run, in sync with the other layers
            done = min(self.steps - t, n)
            spikes, pre = if_scan(currents[:done], IFState(v), theta)
            parts.append(spikes)
            v = pre.v
            if t + done == self.steps:  # end of the pre-run: mask, reset to φθ
                mask = srp_mask(v, theta).to(currents.dtype)
                v = (theta * self.phi).expand_as(v).clone()
        if done < n:
            spikes, run = if_scan(currents[done:], IFState(v), theta)
            parts.append(spikes * mask)
            v = run.v
        spikes = parts[0] if len(parts) == 1 else torch.cat(parts)
        return spikes, SRPState(v=v, t=t + n, mask=mask)

    def scan_values(self, currents: Tensor, state: SRPState) -> tuple[Tensor, SRPState]:
        spikes, state = self.scan(currents, state)
        return self.output(spikes), state

    scan_counted = SpikingNeuron.scan_counted  # count what this class's scan_values emits

    def step(self, current: Tensor, state: SRPState, t: int) -> tuple[Tensor, SRPState]:
        spikes, state = self.scan(current.unsqueeze(0), state)
        return spikes[0], state
