"""Analog sub-networks of a spiking network: non-linear parts that stay analog (seed 001 A.6; issue 11).

In seed 001 A.6 a transformer (BERT) is converted by replacing only the FFN's GELU with QCFS; attention (the
softmax and the two activation-activation products) and LayerNorm are not affine maps of spike trains, so they
are computed on *decoded* values. ``Analog(m1, m2, ...)`` marks such a chain in the ANN (it is ``nn.Sequential``
there); the conversion methods replace it by a stage that defines how the analog chain f reads the spiking part:

* ``RateAnalog`` (method ``"if"``, rate coding: a value is the mean of what a layer sends over steps 1..t).
  After step t the stage has received the running mean ā(t) = (1/t)·Σ_{τ≤t} x(τ) and sends
  ``y(t) = t·f(ā(t)) - (t-1)·f(ā(t-1))``, so that (1/t)·Σ_{τ≤t} y(τ) = f(ā(t)) for every t: the mean of its
  output is f of the mean of its input (the rate-consistent, "expectation compensation" form). Causal: it runs
  step by step or layer by layer (f once per step on the [steps·B, ...] folded batch) with the same outputs. A
  stage whose input is time-constant (e.g. computed from the analog image only) is evaluated once, y(t) = f(x).
* ``SumAnalog`` (method ``"bitserial"``, sum coding: a value is Σ_t x(t)). The stage waits for all T steps
  (accumulate, like the modified neuron), computes f(Σ_t x(t)) once and sends it at t = 1 (``split="first"``)
  or as f(·)/T at every step (``"uniform"``), so Σ_t y(t) = f(Σ_t x(t)): the following layers see exactly the
  QANN's value and the SNN logits equal the QANN's. Not causal: layer-by-layer schedule only.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from snnconv.errors import SimulationError

__all__ = ["Analog", "AnalogStage", "RateAnalog", "RateState", "SumAnalog"]


class Analog(nn.Sequential):
    """A chain of modules that the SNN computes on decoded (rate or sum) values, not on spikes.

    In the ANN it is plain ``nn.Sequential``; tracing keeps it as one leaf node (the spiking/analog boundary).
    Wrap every non-affine part other than the QCFS activations: ``Analog(nn.LayerNorm(d), SelfAttention(d, h))``.
    """

    def describe(self) -> str:
        """``LayerNorm → SelfAttention``: the chain, for reports."""
        return " → ".join(type(m).__name__ for m in self)


class AnalogStage(nn.Module):
    """Base of the SNN's analog stages; the engine keeps their state like a neuron's (``init_state``/``scan``)."""

    #: True if the stage can advance one step at a time.
    causal: bool = True
    #: True if a time-constant input x gives the time-constant output f(x) (the engine then computes it once).
    static_on_constant: bool = False
    #: "rate" or "sum": how the stage decodes its input (reports).
    coding: str = ""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def init_state(self, x: Tensor) -> Any:
        return None

    def scan(self, x: Tensor, state: Any, start: int, T: int) -> tuple[Tensor, Any]:
        """Outputs [steps, B, ...] for inputs [steps, B, ...] of steps start+1 .. start+steps of a T-step run."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """f on a decoded value (a time-constant input, or direct use)."""
        return self.inner(x)

    def apply_folded(self, values: Tensor) -> Tensor:
        """f on [steps, B, ...] values, time folded into the batch: [steps, B, ...] out."""
        steps, B = values.shape[:2]
        out = self.inner(values.reshape(steps * B, *values.shape[2:]))
        return out.reshape(steps, B, *out.shape[1:])

    def extra_repr(self) -> str:
        return f"coding={self.coding}"


class RateState(NamedTuple):
    """Running sum Σ_{τ≤t} x(τ), the last f(ā(t)) (None before step 1) and t."""

    total: Tensor
    last: Tensor | None
    t: int


class RateAnalog(AnalogStage):
    """y(t) = t·f(ā(t)) - (t-1)·f(ā(t-1)), ā(t) = (1/t)·Σ_{τ≤t} x(τ): mean output = f(mean input) at every t."""

    coding = "rate"
    static_on_constant = True

    def init_state(self, x: Tensor) -> RateState:
        return RateState(torch.zeros_like(x, memory_format=torch.contiguous_format), None, 0)

    def scan(self, x: Tensor, state: RateState, start: int = 0, T: int = 0) -> tuple[Tensor, RateState]:
        total, last, t0 = state
        means = []
        for i in range(x.shape[0]):  # the same sequence of additions whatever the chunking
            total = total + x[i]
            means.append(total / (t0 + i + 1))
        f = self.apply_folded(torch.stack(means))
        steps = f.shape[0]
        t = torch.arange(t0 + 1, t0 + steps + 1, dtype=f.dtype, device=f.device).view(-1, *([1] * (f.dim() - 1)))
        prev = torch.cat([(last if last is not None else torch.zeros_like(f[0])).unsqueeze(0), f[:-1]])
        return t * f - (t - 1) * prev, RateState(total, f[-1], t0 + steps)


class SumAnalog(AnalogStage):
    """y = f(Σ_t x(t)) at t = 1 and 0 after (``"first"``), or f(Σ_t x(t))/T at every step (``"uniform"``)."""

    causal = False
    coding = "sum"

    def __init__(self, inner: nn.Module, split: Literal["first", "uniform"] = "first") -> None:
        super().__init__(inner)
        if split not in ("first", "uniform"):
            raise ValueError(f"SumAnalog: split must be 'first' or 'uniform', got {split!r}")
        self.split = split

    def scan(self, x: Tensor, state: None, start: int = 0, T: int | None = None) -> tuple[Tensor, None]:
        T = x.shape[0] if T is None else T
        if start != 0 or x.shape[0] != T:
            raise SimulationError(
                "SumAnalog waits for all T steps of its input (bit-serial, sum coding): use schedule='layer' "
                "without chunk"
            )
        f = self.inner(x.sum(0))
        if self.split == "uniform":
            return (f / T).unsqueeze(0).expand(T, *f.shape), None
        out = torch.zeros((T, *f.shape), dtype=f.dtype, device=f.device)
        out[0] = f
        return out, None

    def extra_repr(self) -> str:
        return f"coding=sum, split={self.split}"
