"""Method "bitserial": error-free bit-serial conversion of QCFS networks (seed 001; SPEC §3, corrected).

Pipeline: trace → check_convertible → plan the levels (per QCFS layer: Δ = λ/L, bits, clamp) → split every
constant over the steps (fold BN + ``StepBias``, or the paper's ``ShiftedBatchNorm``; a ``PositionEmbedding`` is a
constant too) → QCFS → ``BitSerialNeuron`` → ``Analog`` → ``SumAnalog`` (f of the summed input, sent at t = 1 or
split uniformly: transformer attention and LayerNorm, seed 001 A.6) → ``AnalogInput`` after the input →
``SumReadout`` before the output.

With T bits and all options on, the spikes of every layer are the MSB-first bits of the QANN codes k and the
final logits ``simulate(snn, x, T').logits[-1]`` equal the logits of ``quantized_reference(ann, T, steps=T')``
(= the ANN itself when T' = T), up to floating-point summation order.

More steps than bits (T' > T, seed 001 Tables 1-2 report T = 6...32 for 4-bit codes and the accuracy moves):
``extra_steps="refine"`` (the seed's, SPEC §3; the default of ``snnconv.evaluate.sweep_bitserial`` and of
``snnconv evaluate --method bitserial`` for T above the exact T) keeps θ = 2^T·Δ and fires θ·2^-t for
t = T+1..T' below the LSB from the residual, MSB first, starting from Δ'/2 (Δ' = θ·2^-T') with u capped at
λ + Δ'/2: the SNN is the T'-bit quantizer of clip(z, 0, λ) and approaches the un-quantized clipped activation as
T' grows. ``"pad"`` makes the extra steps silent leading bits (θ = 2^T'·Δ), so the SNN stays equal to the T-bit
QANN (the ANN) at every T'.
``convert(..., steps=T' > T)`` needs one of them named (``extra_steps=None`` refuses, as before).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv.convert.check import check_convertible
from snnconv.convert.fold_bn import fold_bn
from snnconv.convert.methods import register_method
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import set_module, trace
from snnconv.errors import ConversionError, count_not_positive
from snnconv.functional.bitserial import EXTRA_STEPS, ExtraSteps, bit_step_values, clamp_value, ldexp, min_bits
from snnconv.layers.analog import Analog, SumAnalog
from snnconv.layers.bitserial import (
    AnalogInput,
    BitIFNeuron,
    BitSerialNeuron,
    CodeQuantizer,
    ShiftedBatchNorm,
    StepBias,
    SumReadout,
)
from snnconv.layers.embedding import PositionEmbedding
from snnconv.layers.qcfs import QCFS

__all__ = ["LayerPlan", "QuantizedANN", "ReferenceResult", "convert_bitserial", "plan_levels", "quantized_reference"]

BiasSplit = Literal["first", "uniform", "bn_shift"]
Rounding = Literal["unbiased", "truncate"]
ABLATIONS = ("left_shift", "bias_shift", "modified_neuron")
_BN = nn.modules.batchnorm._BatchNorm
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LayerPlan:
    """Level convention of one QCFS layer: Δ = λ/L, θ = 2^bits·Δ, ``steps`` fired bits (steps > bits: refined
    below Δ), optional clamp."""

    name: str
    levels: int
    lam: Tensor  # λ: () or (C,)
    phi: float
    delta: Tensor
    bits: int
    steps: int
    clamp: Tensor | None

    @property
    def theta(self) -> Tensor:
        return ldexp(self.delta, self.bits)

    def params(
        self, rounding: Rounding = "unbiased", left_shift: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | None, int]:
        """(step values w(t) [T', ...], v0, clamp, max code) of the neuron and of the reference quantizer."""
        if not left_shift:  # equal spike values λ/T': count = T'-level QCFS of the accumulated current
            w = self.lam / self.steps
            return w.unsqueeze(0).expand(self.steps, *w.shape).clone(), self.phi * w, None, self.steps
        w = bit_step_values(self.delta, self.bits, self.steps)
        v0 = self.phi * (w[-1] if rounding == "unbiased" else self.delta)
        return w, v0, self.clamp, 2**self.steps - 1


def _qcfs_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), QCFS)]


def plan_levels(
    gm: fx.GraphModule,
    T: int | None = None,
    steps: int | None = None,
    exact: bool = True,
    extra_steps: ExtraSteps | None = None,
) -> tuple[int, int, list[LayerPlan]]:
    """Check the level conventions and return (T, steps, plans). T=None: the smallest exact T for every layer.

    ``steps`` > T: ``extra_steps="refine"`` fires bits below Δ (clamp λ + Δ'/2), ``"pad"`` uses T = steps bits,
    None refuses.
    """
    if extra_steps is not None and extra_steps not in EXTRA_STEPS:
        raise ConversionError(f"bitserial: extra_steps must be one of {', '.join(EXTRA_STEPS)}, got {extra_steps!r}")
    nodes = _qcfs_nodes(gm)
    if not nodes:
        raise ConversionError("the model has no QCFS activation: nothing to convert into spiking neurons")
    qs = {n.target: gm.get_submodule(n.target) for n in nodes}
    need = {name: min_bits(q.levels) for name, q in qs.items()}
    if T is None:
        T = max(need.values())
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ConversionError(f"bitserial: T (bits) must be a positive integer or None, got {T!r}")
    steps = T if steps is None else steps
    more = extra_steps is not None and isinstance(steps, int) and steps > T
    if not isinstance(steps, int) or isinstance(steps, bool) or not (1 <= steps <= T or more):
        raise ConversionError(f"bitserial: steps must be an integer in 1..T={T} (fewer steps than bits), got "
                              f"{steps!r}; to fire more steps than bits pass extra_steps='refine' (bits below the "
                              "LSB, seed 001) or 'pad' (silent leading bits, SNN == QANN)")  # fmt: skip
    if steps > T and extra_steps == "pad":
        T = steps  # silent leading bits: θ = 2^steps·Δ
    plans = []
    for name, q in qs.items():
        L, lam = q.levels, q.theta().detach()
        if exact and need[name] > T:
            raise ConversionError(
                f"bitserial: layer '{name}' has L={L} quantization levels, which T={T} bits cannot represent exactly "
                f"(needs 2^T - 1 >= L); valid: T >= {need[name]} (smallest exact T = {need[name]}: L = 2^T - 1 "
                "converts with T bits, L = 2^T needs one more bit and the clamp u <= λ), or pass exact=False"
            )
        if count_not_positive(lam):
            raise ConversionError(f"bitserial: layer '{name}' has a non-positive or non-finite threshold λ")
        bits = max(T, need[name])
        delta = lam / L
        if steps > bits:  # refine: k' <= L·2^extra, i.e. u <= λ + Δ'/2 (the clip of the QCFS at λ)
            extra = steps - bits
            clamp = clamp_value(ldexp(delta, -extra), L << extra)
        else:
            clamp = clamp_value(delta, L) if 2**bits - 1 > L else None
        plans.append(LayerPlan(name, L, lam, q.shift, delta, bits, steps, clamp))
    return T, steps, plans


# --- graph surgery --------------------------------------------------------------------------------------


def _fresh(gm: fx.GraphModule, base: str) -> str:
    base = base.replace(".", "_")
    name, i = base, 1
    while hasattr(gm, name):
        name, i = f"{base}_{i}", i + 1
    return name


def _insert_after(gm: fx.GraphModule, node: fx.Node, module: nn.Module, base: str) -> fx.Node:
    name = _fresh(gm, base)
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
    return new


def _reject_constants(gm: fx.GraphModule) -> None:
    """Constants hidden in functional calls would be added at every step: reject them (use modules instead)."""
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in (F.linear, F.conv1d, F.conv2d, F.conv3d):
            bias = n.args[2] if len(n.args) > 2 else n.kwargs.get("bias")
            if bias is not None:
                raise ConversionError(f"operation '{n.name}' has a functional bias, which bitserial cannot split over "
                                      "the time steps; use an nn.Conv/nn.Linear module")  # fmt: skip
        is_add = (n.op == "call_function" and n.target in (operator.add, torch.add)) or (
            n.op == "call_method" and n.target in ("add", "add_", "__add__")
        )
        if is_add and any(isinstance(a, (float, Tensor)) or (isinstance(a, fx.Node) and a.op == "get_attr")
                          for a in n.args[:2]):  # fmt: skip
            raise ConversionError(f"operation '{n.name}' adds a constant, which bitserial cannot split over the time "
                                  "steps; express it as a layer bias")  # fmt: skip


def _split_biases(gm: fx.GraphModule, split: str) -> None:
    """Remove the bias of every conv/linear and the shift of every remaining BN; add them back with StepBias.

    A ``PositionEmbedding`` (x + P, P of shape [N, D]) becomes ``StepBias(P)`` on the token axes.
    """
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if isinstance(mod, PositionEmbedding):
            set_module(gm, node.target, StepBias(mod.weight.detach(), split, channel_last=True))
            continue
        if isinstance(mod, (*_CONV, nn.Linear)) and mod.bias is not None:
            bias = mod.bias.detach().clone()
            mod.bias = None
            _insert_after(
                gm, node, StepBias(bias, split, channel_last=isinstance(mod, nn.Linear)), node.target + "_bias"
            )
        elif isinstance(mod, _BN):
            bn = ShiftedBatchNorm(mod, None)
            scale = bn.gamma / bn.sigma
            shift = bn.beta - scale * bn.mean
            set_module(gm, node.target, StepBias(shift, split, scale=scale))


def _shift_batchnorms(gm: fx.GraphModule, shift: bool) -> None:
    """bias_split="bn_shift": keep BN unfolded with β_c = β/T + (1-1/T)γμ/σ and the conv bias split as b/T."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _BN):
            continue
        bn, prev, conv_bias = gm.get_submodule(node.target), node.args[0], None
        if isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1:
            layer = gm.get_submodule(prev.target)
            if isinstance(layer, (*_CONV, nn.Linear)) and layer.bias is not None:
                conv_bias = layer.bias.detach().clone()
                layer.bias = None
        set_module(gm, node.target, ShiftedBatchNorm(bn, conv_bias, shift))
    _split_biases(gm, "uniform" if shift else "every")  # biases of conv/linear layers without a BN


def _make_neuron(p: LayerPlan, rounding: Rounding, left_shift: bool, modified: bool) -> nn.Module:
    w, v0, clamp, _ = p.params(rounding, left_shift)
    return BitSerialNeuron(w, v0, clamp) if modified else BitIFNeuron(w, v0)


def _options(ablation: str | Iterable[str] | None, **flags: bool) -> dict[str, bool]:
    off = [ablation] if isinstance(ablation, str) else list(ablation or [])
    unknown = [a for a in off if a not in ABLATIONS]
    if unknown:
        raise ConversionError(f"bitserial: unknown ablation {unknown}; valid: {', '.join(ABLATIONS)}")
    return {k: bool(v) and k not in off for k, v in flags.items()}


@register_method("bitserial")
def convert_bitserial(
    ann: nn.Module,
    *,
    T: int | None = None,
    steps: int | None = None,
    exact: bool = True,
    bias_split: BiasSplit = "first",
    rounding: Rounding = "unbiased",
    left_shift: bool = True,
    bias_shift: bool = True,
    modified_neuron: bool = True,
    ablation: str | Iterable[str] | None = None,
    extra_steps: ExtraSteps | None = None,
) -> SpikingNetwork:
    """QCFS network → bit-serial SNN (seed 001 / SPEC §3). Simulate with ``T = steps`` and ``schedule="layer"``.

    T: bits, θ = 2^T·Δ per layer (None = the smallest exact T; must satisfy 2^T - 1 >= L unless exact=False).
    steps: time steps fired (default T). More steps than bits need ``extra_steps``: ``"refine"`` (the seed's, SPEC
    §3: bits below Δ, the SNN approaches clip(z, 0, λ)) or ``"pad"`` (silent leading bits, SNN == the T-bit QANN;
    the same as T=steps). Fewer steps re-round: ``rounding="unbiased"`` starts from φ·Δ' (Δ' = θ·2^-steps,
    a steps-bit QANN), ``"truncate"`` from φ·Δ (keeps the top bits of k, biased low). exact=False: a layer needing
    more bits than T keeps its own minimal bits and fires T of them. bias_split: "first" (all constants and the
    analog input at t = 1), "uniform" (c/T and x/T each step), "bn_shift" (BN kept, β_c = β/T + (1-1/T)γμ/σ, b/T;
    input x/T). Ablations (flags or ``ablation=("left_shift", ...)``): left_shift=False → every spike carries λ/T'
    and the neuron's T' thresholds are λ/T' (a T'-level QCFS: exact only for T' = L); bias_shift=False → the full
    constant at every step (Σ_t c(t) = T'·c); modified_neuron=False → ``BitIFNeuron`` (causal IF with reset by
    subtraction, threshold = the step's spike value, same v0, no clamp) on the same currents.
    ``simulate(snn, x, steps).logits[-1]`` equals ``quantized_reference(ann, T, steps=...)`` logits (``SumReadout``).
    ``Analog`` sub-networks (attention, LayerNorm) become ``SumAnalog`` stages: f(Σ_t x(t)) once, sent at t = 1
    ("first") or as f/T per step (otherwise), so the equality holds for transformers too (seed 001 A.6).
    """
    if bias_split not in ("first", "uniform", "bn_shift"):
        raise ConversionError(f"bitserial: bias_split must be 'first', 'uniform' or 'bn_shift', got {bias_split!r}")
    if rounding not in ("unbiased", "truncate"):
        raise ConversionError(f"bitserial: rounding must be 'unbiased' or 'truncate', got {rounding!r}")
    opts = _options(ablation, left_shift=left_shift, bias_shift=bias_shift, modified_neuron=modified_neuron)
    gm = trace(copy.deepcopy(ann)).eval()
    check_convertible(gm, (QCFS,), analog=True)
    _reject_constants(gm)
    T, steps, plans = plan_levels(gm, T, steps, exact, extra_steps)
    if bias_split == "bn_shift":
        _shift_batchnorms(gm, opts["bias_shift"])
    else:
        gm = fold_bn(gm, inplace=True)
        _split_biases(gm, bias_split if opts["bias_shift"] else "every")
    for p in plans:
        set_module(gm, p.name, _make_neuron(p, rounding, opts["left_shift"], opts["modified_neuron"]))
    value_split = "first" if bias_split == "first" else "uniform"
    analog = [n.target for n in gm.graph.nodes
              if n.op == "call_module" and isinstance(gm.get_submodule(n.target), Analog)]  # fmt: skip
    for name in analog:
        set_module(gm, name, SumAnalog(gm.get_submodule(name), value_split))
    _add_encoder_and_readout(gm, value_split)
    meta = {
        "method": "bitserial", "levels": sorted({p.levels for p in plans}), "T": T, "steps": steps,
        "bias_split": bias_split, "rounding": rounding, "extra_steps": extra_steps, **opts,
        "clamped": [p.name for p in plans if p.clamp is not None], "readout": "sum",
    }  # fmt: skip
    if analog:
        meta["analog"] = analog
    return SpikingNetwork(gm, meta)


def _add_encoder_and_readout(gm: fx.GraphModule, input_split: str) -> None:
    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            _insert_after(gm, node, AnalogInput(input_split), "input_encoder")
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                raise ConversionError("bitserial: the model must return a single tensor (the logits)")
            _insert_after(gm, out, SumReadout(), "readout")
    gm.graph.lint()
    gm.recompile()


# --- the QANN the SNN must equal ------------------------------------------------------------------------


@dataclass
class ReferenceResult:
    logits: Tensor
    codes: dict[str, Tensor]  #: layer -> integer codes k (float tensor), the SNN's spikes are their bits
    pre: dict[str, Tensor]  #: layer -> pre-activation z
    steps: dict[str, Tensor]  #: layer -> the value of one level Δ' (scalar or (C,))


class QuantizedANN(nn.Module):
    """The ANN with each QCFS replaced by the T'-bit quantizer that the bit-serial SNN implements."""

    def __init__(self, graph: fx.GraphModule, meta: dict) -> None:
        super().__init__()
        self.graph = graph
        self.meta = meta

    def quantizers(self) -> dict[str, CodeQuantizer]:
        return {n: m for n, m in self.graph.named_modules() if isinstance(m, CodeQuantizer)}

    def forward(self, x: Tensor) -> Tensor:
        return self.graph(x)

    @torch.no_grad()
    def run(self, x: Tensor) -> ReferenceResult:
        logits = self.graph(x)
        qs = self.quantizers()
        return ReferenceResult(logits, {n: q.codes for n, q in qs.items()}, {n: q.pre for n, q in qs.items()},
                               {n: q.step for n, q in qs.items()})  # fmt: skip


def quantized_reference(
    ann: nn.Module,
    T: int | None = None,
    *,
    steps: int | None = None,
    exact: bool = True,
    rounding: Rounding = "unbiased",
    left_shift: bool = True,
    extra_steps: ExtraSteps | None = None,
) -> QuantizedANN:
    """The QANN that ``convert(ann, "bitserial", T=T, steps=steps, ...)`` equals: k per layer and the logits.

    For steps = T (exact) it computes the same activations as the ANN's QCFS layers (a = k·λ/L); for steps > T
    with ``extra_steps="refine"`` the steps-bit quantizer of clip(z, 0, λ) with step Δ' = θ·2^-steps.
    """
    gm = trace(copy.deepcopy(ann)).eval()
    check_convertible(gm, (QCFS,), analog=True)
    T, steps, plans = plan_levels(gm, T, steps, exact, extra_steps)
    for p in plans:
        w, v0, clamp, max_code = p.params(rounding, left_shift)
        set_module(gm, p.name, CodeQuantizer(w[-1], v0, max_code, clamp))
    gm.recompile()
    return QuantizedANN(gm, {"T": T, "steps": steps, "rounding": rounding, "left_shift": left_shift,
                             "extra_steps": extra_steps})  # fmt: skip
