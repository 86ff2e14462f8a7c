"""Modules of the error-free bit-serial SNN (seed 001; SPEC §3): neuron, per-step bias, input encoder, readout.

Values are "sum coded": what a layer sends over the T' steps adds up to the QANN activation, Σ_t x(t) = a.
Per-layer parameters are scalars or one value per channel (channel axis 1, see ``channel_view``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from snnconv.errors import SimulationError, SnnconvError, count_not_positive
from snnconv.functional.bitserial import (
    bitserial_fire,
    bitserial_potential,
    bitserial_scan_values,
    per_step,
    quantize_codes,
    stepped_if_scan,
)
from snnconv.layers.channels import channel_view
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.temporal import TimeAware

Split = Literal["first", "uniform", "every"]
SPLITS: tuple[str, ...] = ("first", "uniform", "every")


def _view(p: Tensor | None, ndim: int) -> Tensor | None:
    return None if p is None else channel_view(p, ndim)


class BitSerialNeuron(SpikingNeuron):
    """Accumulate, then fire (seed 001 Eq. 9, corrected): ``u = min(v0 + Σ_t I(t), clamp)``, then for t = 1..T'
    ``s(t) = H(u - w(t))``, ``u ← u - s(t)·w(t)``; the spike of step t carries w(t).

    ``step_values`` [T'] or [T', C]: w(t) = θ·2^-t (MSB first) or λ/T' (left shift ablated); ``v0`` the initial
    potential (Δ'/2); ``clamp`` the cap λ of u (or None). Runs layer by layer only (``causal = False``).
    """

    causal = False

    def __init__(self, step_values: Tensor, v0: Tensor, clamp: Tensor | None = None) -> None:
        super().__init__()
        if count_not_positive(step_values):
            raise SnnconvError("BitSerialNeuron: step values (thresholds) must be finite and > 0")
        self.register_buffer("step_values", step_values.detach().clone())
        self.register_buffer("v0", torch.as_tensor(v0).detach().clone())
        self.register_buffer("clamp", None if clamp is None else clamp.detach().clone())

    @property
    def steps(self) -> int:
        return self.step_values.shape[0]

    def _check(self, T: int) -> None:
        if T != self.steps:
            raise SimulationError(
                f"this bit-serial network fires {self.steps} steps per layer but was simulated with T={T}; "
                f"simulate with T={self.steps} or convert again with steps={T}"
            )

    def init_state(self, current: Tensor) -> None:
        return None

    def scan(self, currents: Tensor, state: None) -> tuple[Tensor, None]:
        self._check(currents.shape[0])
        nd = currents.dim() - 1
        u = bitserial_potential(currents, _view(self.v0, nd), _view(self.clamp, nd))
        return bitserial_fire(u, self.step_values), None

    def scan_counted(self, currents: Tensor, state: None, overwrite: bool = False) -> tuple[Tensor, None, Tensor]:
        self._check(currents.shape[0])
        nd = currents.dim() - 1
        out, counts = bitserial_scan_values(
            currents, _view(self.v0, nd), _view(self.clamp, nd), self.step_values, overwrite=overwrite
        )
        return out, None, counts

    def scan_values(self, currents: Tensor, state: None) -> tuple[Tensor, None]:
        return self.scan_counted(currents, state)[:2]

    def step(self, current: Tensor, state: None, t: int) -> tuple[Tensor, None]:
        raise SimulationError("BitSerialNeuron fires only after integrating all T inputs: use schedule='layer'")

    def output(self, spikes: Tensor) -> Tensor:
        self._check(spikes.shape[0])
        return spikes * per_step(self.step_values, spikes.dim())

    def extra_repr(self) -> str:
        shape = tuple(self.step_values.shape[1:])
        kind = f"channels={shape[0]}" if shape else "layer-wise"
        return f"steps={self.steps}, {kind}, clamp={self.clamp is not None}"


class BitIFNeuron(BitSerialNeuron):
    """Ablation "modified neuron off": an ordinary IF neuron (reset by subtraction, no clamp) on the same
    currents, ``m = v + I(t)``, ``s(t) = H(m - w(t))``, ``v = m - s(t)·w(t)``, ``v(0) = v0``; its threshold at
    step t is the value w(t) its spike carries (with equal w = λ/T' this is ``IFNeuron(λ/T', φ)``).

    Its dynamics are causal, but it is scheduled layer by layer like the rest of the bit-serial network.
    """

    def __init__(self, step_values: Tensor, v0: Tensor) -> None:
        super().__init__(step_values, v0, None)

    # its own dynamics (``scan``), not the accumulate-then-fire fast path of the parent class
    scan_values = SpikingNeuron.scan_values
    scan_counted = SpikingNeuron.scan_counted

    def scan(self, currents: Tensor, state: None) -> tuple[Tensor, None]:
        self._check(currents.shape[0])
        v = channel_view(self.v0, currents.dim() - 1).expand_as(currents[0])
        return stepped_if_scan(currents, v, self.step_values)[0], None


def _split_add(y: Tensor, c: Tensor, split: str, start: int, T: int, in_place: bool = False) -> Tensor:
    """y(t) + c(t) with Σ_t c(t) = c ("first": all at t = 1; "uniform": c/T) or c(t) = c ("every").

    Always a new tensor, except for "first" with ``in_place`` (y is the caller's to change): c is added to y[0].
    """
    if split == "uniform":
        return y + c / T
    if split == "every":
        return y + c
    y = y if in_place else y.clone()  # keeps y's memory layout (channels-last conv outputs stay so)
    if start == 0:
        y[0] += c
    return y


class StepBias(TimeAware):
    """y(t) = scale·x(t) + c(t), the constant of a folded conv/linear/BN split over the steps (SPEC §3).

    ``split``: "first" (all of c at t = 1, exact for any T), "uniform" (c/T at every step) or "every" (the full c
    at every step: the bias-shift ablation, Σ_t c(t) = T·c). ``channel_last`` for nn.Linear outputs.
    """

    def __init__(self, bias: Tensor, split: Split = "first", *, scale: Tensor | None = None,
                 channel_last: bool = False) -> None:  # fmt: skip
        super().__init__()
        if split not in SPLITS:
            raise SnnconvError(f"StepBias: split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.register_buffer("bias", bias.detach().clone())
        self.register_buffer("scale", None if scale is None else scale.detach().clone())
        self.split = split
        self.channel_last = channel_last

    def _v(self, p: Tensor, ndim: int) -> Tensor:
        return p if self.channel_last else channel_view(p, ndim)

    def seq(self, x: Tensor, start: int, T: int, overwrite: bool = False) -> Tensor:
        """``overwrite=True``: ``x`` is the caller's to change (the engine, for values it owns); the result is
        then written into it where the split allows. The result is never a view of anything else."""
        nd = x.dim() - 1
        fresh = self.scale is not None
        y = x * self._v(self.scale, nd) if fresh else x
        return _split_add(y, self._v(self.bias, nd), self.split, start, T, in_place=fresh or overwrite)

    def extra_repr(self) -> str:
        return f"features={self.bias.numel()}, split={self.split}, scaled={self.scale is not None}"


class ShiftedBatchNorm(TimeAware):
    """The paper's BN bias shift kept unfolded (seed 001 Theorem I), with the conv bias b split as b/T:

    y(t) = γ(x(t) + b/T - μ)/σ + β_c,   β_c = β/T + (1 - 1/T)·γμ/σ   (Σ_t y(t) = BN(Σ_t x(t) + b)).
    ``shift=False`` gives the unshifted BN at every step (bias-shift ablation).
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, conv_bias: Tensor | None, shift: bool = True) -> None:
        super().__init__()
        n = bn.num_features
        ref = bn.running_mean
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones(n, dtype=ref.dtype)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros(n, dtype=ref.dtype)
        b = conv_bias.detach() if conv_bias is not None else torch.zeros(n, dtype=ref.dtype)
        for name, value in (("gamma", gamma), ("beta", beta), ("mean", bn.running_mean), ("conv_bias", b),
                            ("sigma", torch.sqrt(bn.running_var + bn.eps))):  # fmt: skip
            self.register_buffer(name, value.detach().clone())
        self.shift = shift

    def seq(self, x: Tensor, start: int, T: int) -> Tensor:
        nd = x.dim() - 1
        g, be, mu, b, sd = (channel_view(p, nd) for p in (self.gamma, self.beta, self.mean, self.conv_bias, self.sigma))
        if not self.shift:
            return g * (x + b - mu) / sd + be
        return g * (x + b / T - mu) / sd + (be / T + (1 - 1 / T) * g * mu / sd)


class AnalogInput(TimeAware):
    """Input encoder of the multi-bit first layer: the analog x at t = 1 and zeros after ("first"), or x/T at
    every step ("uniform"); either way Σ_t x(t) = x, so Σ_t I^1(t) = W x + c."""

    def __init__(self, split: Literal["first", "uniform"] = "first") -> None:
        super().__init__()
        if split not in ("first", "uniform"):
            raise SnnconvError(f"AnalogInput: split must be 'first' or 'uniform', got {split!r}")
        self.split = split

    def seq(self, x: Tensor, start: int, T: int) -> Tensor:
        if self.split == "uniform":
            return x / T
        y = torch.zeros_like(x, memory_format=torch.contiguous_format)
        if start == 0:
            y[0] = x[0]
        return y

    def extra_repr(self) -> str:
        return f"split={self.split}"


class SumReadout(TimeAware):
    """x(t)·T: the engine reports the mean over steps, so the final logits are the sum Σ_t I^L(t) (= QANN)."""

    def seq(self, x: Tensor, start: int, T: int) -> Tensor:
        return x * T


class CodeQuantizer(nn.Module):
    """Reference QANN activation (replaces a QCFS): k = clip(floor(min(z + v0, clamp)/Δ'), 0, K), a = k·Δ'.

    The last call's codes and pre-activations are kept in ``codes`` / ``pre`` (for comparisons with the SNN).
    """

    def __init__(self, step: Tensor, v0: Tensor, max_code: int, clamp: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("step", step.detach().clone())
        self.register_buffer("v0", torch.as_tensor(v0).detach().clone())
        self.register_buffer("clamp", None if clamp is None else clamp.detach().clone())
        self.max_code = int(max_code)
        self.codes: Tensor | None = None
        self.pre: Tensor | None = None

    def forward(self, z: Tensor) -> Tensor:
        nd = z.dim()
        step = channel_view(self.step, nd)
        k = quantize_codes(z, step, channel_view(self.v0, nd), self.max_code, _view(self.clamp, nd))
        self.codes, self.pre = k, z
        return k * step
