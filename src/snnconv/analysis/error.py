"""Per-layer conversion-error decomposition (seed 004 §3; seed 000 §2.4; SPEC §1).

For spiking layer l over T steps, with the ANN's pre-activation z^l and activation a^l = QCFS_L(z^l), the
SNN's actual input currents I^l(1..T) and its free-running average output φ^l = Σ_t s^l(t)·θ/T, write
ψ(c) for the same neuron's average output when driven by the *constant* current c at every step, and
Ī^l = mean_t I^l(t). Then, elementwise and in units of θ^l,

    quantization = ψ(z^l) - a^l        teacher forcing: the neuron fed the ANN's own z^l as a constant current.
                                       Clipping + flooring of a T-step IF neuron vs the L-level QCFS; exactly 0
                                       when T = L (SPEC §1); at T ≠ L it is QCFS_T(z) - QCFS_L(z).
    inherited    = ψ(Ī^l) - ψ(z^l)     the mean input differs from the ANN's z^l: error propagated from the
                                       earlier layers (plus BN-folding rounding).
    unevenness   = φ^l - ψ(Ī^l)        same mean input, but spread unevenly over time (seed 004 Fig. 1b-d);
                                       exactly 0 for a time-constant input (e.g. the first layer, direct coding).
    total        = φ^l - a^l           the free-running (propagated) error = the sum of the three above.

Reported per layer: the mean absolute and the mean signed value of each term over all neurons and samples.
The averages ψ, φ are means over t of the neuron's output values (rate coding, as the IF method); Ī is taken
as I(1) + mean_t(I(t) - I(1)) so that a constant sequence gives exactly I(1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import set_module
from snnconv.errors import SnnconvError
from snnconv.hooks import forward_hooks
from snnconv.layers.channels import channel_view
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.qcfs import QCFS
from snnconv.simulate import SimResult, simulate

__all__ = [
    "TERMS", "ErrorDecomposition", "constant_response", "decompose_layer", "error_decomposition",
    "record_neurons",
]  # fmt: skip

TERMS: tuple[str, ...] = ("quantization", "inherited", "unevenness", "total")


class _Recorder(SpikingNeuron):
    """Delegates to a neuron and records its input currents and output values as [steps, B, ...] chunks."""

    def __init__(self, inner: SpikingNeuron) -> None:
        super().__init__()
        self.inner = inner
        self.causal = inner.causal
        self.currents: list[Tensor] = []
        self.values: list[Tensor] = []

    def init_state(self, current: Tensor) -> Any:
        return self.inner.init_state(current)

    def scan(self, currents: Tensor, state: Any) -> tuple[Tensor, Any]:
        spikes, state = self.inner.scan(currents, state)
        self.currents.append(currents.clone())
        self.values.append(self.inner.output(spikes))
        return spikes, state

    def step(self, current: Tensor, state: Any, t: int) -> tuple[Tensor, Any]:
        spikes, state = self.inner.step(current, state, t)
        self.currents.append(current.unsqueeze(0).clone())
        self.values.append(self.inner.output(spikes.unsqueeze(0)))
        return spikes, state

    def output(self, spikes: Tensor) -> Tensor:
        return self.inner.output(spikes)

    def scan_values(self, currents: Tensor, state: Any) -> tuple[Tensor, Any]:
        values, state = self.inner.scan_values(currents, state)
        self.currents.append(currents.clone())
        self.values.append(values.clone())
        return values, state


@torch.no_grad()
def record_neurons(
    snn: SpikingNetwork, x: Tensor, T: int, *, chunk: int | None = None
) -> tuple[SimResult, dict[str, Tensor], dict[str, Tensor]]:
    """Simulate and return (result, currents, outputs): each neuron's input currents and output values [T, B, ...].

    Runs the engine with every neuron temporarily wrapped in a recorder (restored afterwards).
    """
    neurons = snn.neurons()
    recorders = {name: _Recorder(n) for name, n in neurons.items()}
    try:
        for name, r in recorders.items():
            set_module(snn.graph, name, r)
        result = simulate(snn, x, T, chunk=chunk)
    finally:
        for name, n in neurons.items():
            set_module(snn.graph, name, n)
    currents = {k: torch.cat(r.currents) for k, r in recorders.items()}
    values = {k: torch.cat(r.values) for k, r in recorders.items()}
    return result, currents, values


def constant_response(neuron: SpikingNeuron, current: Tensor, T: int) -> Tensor:
    """ψ(c): the neuron's mean output over T steps for the constant current ``current`` [B, ...] at every step."""
    seq = current.unsqueeze(0).expand(T, *current.shape)
    values, _ = neuron.scan_values(seq, neuron.init_state(current))
    return values.mean(0)


def _threshold(neuron: SpikingNeuron, like: Tensor) -> Tensor:
    th = getattr(neuron, "threshold", None)
    if th is None:
        return torch.ones((), dtype=like.dtype, device=like.device)
    return channel_view(th.to(like.dtype), like.dim())


def decompose_layer(neuron: SpikingNeuron, currents: Tensor, z: Tensor, a: Tensor) -> dict[str, Tensor]:
    """The four error terms (module docstring) of one layer, elementwise in units of θ.

    ``currents`` [T, B, ...] are the neuron's actual inputs; ``z``, ``a`` [B, ...] the ANN's pre-activation and
    activation of the same layer.
    """
    T = currents.shape[0]
    mean_in = currents[0] + (currents - currents[0]).mean(0)  # exactly currents[0] if constant in time
    free = neuron.scan_values(currents, neuron.init_state(currents[0]))[0].mean(0)
    psi_z = constant_response(neuron, z, T)
    psi_mean = constant_response(neuron, mean_in, T)
    theta = _threshold(neuron, z)
    return {
        "quantization": (psi_z - a) / theta,
        "inherited": (psi_mean - psi_z) / theta,
        "unevenness": (free - psi_mean) / theta,
        "total": (free - a) / theta,
    }


@torch.no_grad()
def _ann_activations(ann: nn.Module, x: Tensor, names: Iterable[str]) -> dict[str, tuple[Tensor, Tensor]]:
    """(z, a) of the named QCFS modules of ``ann`` on ``x``."""
    modules = dict(ann.named_modules())
    found: dict[str, tuple[Tensor, Tensor]] = {}
    hooked: dict[str, nn.Module] = {}
    for name in names:
        m = modules.get(name)
        if not isinstance(m, QCFS):
            qcfs = [k for k, v in modules.items() if isinstance(v, QCFS)]
            raise SnnconvError(
                f"error_decomposition: the SNN's spiking layer {name!r} is not a QCFS module of the ANN "
                f"(ANN QCFS layers: {', '.join(qcfs) or 'none'}); pass the ANN the SNN was converted from"
            )
        hooked[name] = m
    with forward_hooks(ann, lambda k, mod, inp, out: found.__setitem__(k, (inp, out)), hooked):
        ann(x)
    return found


@dataclass
class ErrorDecomposition:
    """Per-layer sums of each error term (units of θ); means via ``mae``/``signed`` or ``to_dict``."""

    T: int
    layers: list[str] = field(default_factory=list)
    abs_sum: dict[str, dict[str, float]] = field(default_factory=dict)  #: layer -> term -> Σ|e|
    signed_sum: dict[str, dict[str, float]] = field(default_factory=dict)  #: layer -> term -> Σ e
    elements: dict[str, int] = field(default_factory=dict)  #: layer -> neurons · samples
    samples: int = 0

    def add(self, layer: str, terms: dict[str, Tensor]) -> None:
        if layer not in self.elements:
            self.layers.append(layer)
            self.abs_sum[layer] = dict.fromkeys(TERMS, 0.0)
            self.signed_sum[layer] = dict.fromkeys(TERMS, 0.0)
            self.elements[layer] = 0
        for k in TERMS:
            self.abs_sum[layer][k] += float(terms[k].double().abs().sum())
            self.signed_sum[layer][k] += float(terms[k].double().sum())
        self.elements[layer] += terms["total"].numel()

    def mae(self) -> dict[str, dict[str, float]]:
        """layer -> term -> mean |e| / θ."""
        return {k: {t: v / max(1, self.elements[k]) for t, v in d.items()} for k, d in self.abs_sum.items()}

    def signed(self) -> dict[str, dict[str, float]]:
        """layer -> term -> mean e / θ."""
        return {k: {t: v / max(1, self.elements[k]) for t, v in d.items()} for k, d in self.signed_sum.items()}

    def to_dict(self) -> dict:
        return {"T": self.T, "samples": self.samples, "layers": list(self.layers), "unit": "threshold",
                "mean_abs": self.mae(), "mean_signed": self.signed()}  # fmt: skip

    def table(self, digits: int = 4) -> str:
        """Text table: per layer, mean |e|/θ (and mean e/θ in parentheses) of each term."""
        from snnconv.analysis.spikes import _table

        mae, sig = self.mae(), self.signed()
        head = ["layer", *TERMS]
        rows = [[k] + [f"{mae[k][t]:.{digits}f} ({sig[k][t]:+.{digits}f})" for t in TERMS] for k in self.layers]
        return f"conversion error at T={self.T}, mean |e|/θ (mean e/θ), {self.samples} samples\n" + _table(head, rows)


@torch.no_grad()
def error_decomposition(
    ann: nn.Module,
    snn: SpikingNetwork,
    data: Tensor | Iterable,
    T: int,
    *,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    chunk: int | None = None,
) -> ErrorDecomposition:
    """Decompose the conversion error of every spiking layer of ``snn`` (converted from ``ann``) at ``T`` steps.

    ``data`` is a batch tensor or an iterable of ``(x, y)`` batches (at most ``max_batches`` are used).
    """
    batches = [(data, None)] if isinstance(data, Tensor) else data
    out = ErrorDecomposition(T=T)
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if device is not None:
            x = x.to(device)
        _, currents, _ = record_neurons(snn, x, T, chunk=chunk)
        ann_out = _ann_activations(ann, x, currents)
        neurons = snn.neurons()
        for name, cur in currents.items():
            z, a = ann_out[name]
            out.add(name, decompose_layer(neurons[name], cur, z, a))
        out.samples += x.shape[0]
    return out
