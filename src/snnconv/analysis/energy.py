"""Operation counts and compute energy of an SNN run vs its ANN (SPEC §6; seeds 001 Table 6, 002 §5.7, 004 A.8).

Counted per layer and per sample, from the actual spikes of a simulation:

* ``ac``  accumulates, conv/linear layers whose input changes over time (spikes): every non-zero input element
          × its fan-out, i.e. Σ_t Σ_i [x_i(t) ≠ 0] · fanout_i; plus one bias add per output element per step
          when the layer has a bias (BN folded into it is a per-step constant current).
* ``mac`` multiply-accumulates, conv/linear layers on the analog input (direct coding): all connections, once
          per step (``analog_per_step=True``, the convention of seed 002 / Yao et al. 2023) or once in all
          (``False``: the engine computes time-constant values once and reuses them). The ANN: all connections.
* ``cmp`` one threshold comparison per neuron per step;  ``reset`` one subtraction per spike;
  ``shift`` ``shifts_per_output`` per neuron per step (1 for bit-serial networks, seed 001; 0 for IF).

Connections are counted exactly (padding and stride borders included) by running the layer's own linear map
with all-one weights on the 0/1 indicator of its input: Σ_outputs Σ_{inputs in receptive field} [x ≠ 0].
For conv that is about out_channels·k²/stride² per input element, for linear out_features.
Pooling, un-folded BN and residual additions are not counted (as in seeds 001/002).

Prices (pJ), ``PRICE_TABLES``: ``"45nm"`` 32-bit float, 45 nm (Horowitz 2014; seed 002 §5.7): MAC 4.6, AC 0.9,
other ops not priced; ``"seed001"`` seed 001 Table 6 at ``bits`` 8 or 32: mult 0.2/3.1, add 0.03/0.1, shift
0.024/0.13, compare 0.03/0.08; MAC = mult + add, AC = reset = add; ``"seed004"`` seed 004 A.8 (the ROLLS chip,
Qiao et al. 2015): 77 fJ per synaptic operation (SOP: an AC) and 12.5 pJ per FLOP, a MAC being two FLOPs (its
Table S5 prices CIFAR VGG-16 at 0.628 GFLOP, twice its 0.31 G convolution multiply-accumulates), other ops not
priced. ``EnergyReport.op_counts`` gives its SOP and FLOP counts (seed 004 Table S5 tabulates GSOP per T).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnconv.convert.network import SpikingNetwork
from snnconv.errors import SnnconvError
from snnconv.hooks import forward_hooks
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.temporal import TimeAware
from snnconv.simulate import simulate

__all__ = ["OPS", "PRICE_TABLES", "EnergyReport", "connections", "energy", "price_table"]

OPS: tuple[str, ...] = ("mac", "ac", "cmp", "reset", "shift")
#: the selectable price tables (``price_table``; CLI ``snnconv analyze --prices``)
PRICE_TABLES: tuple[str, ...] = ("45nm", "seed001", "seed004")
SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
FLOPS_PER_MAC = 2  # a multiply and an add (seed 004's FLOP count)


def price_table(name: str = "45nm", bits: int = 32) -> dict[str, float]:
    """Energy per operation in pJ for ``name`` in ``PRICE_TABLES``; ``bits`` 8 or 32 selects seed 001's column."""
    if name == "45nm":
        return {"mac": 4.6, "ac": 0.9, "cmp": 0.0, "reset": 0.0, "shift": 0.0}
    if name == "seed004":  # 77 fJ per SOP, 12.5 pJ per FLOP (seed 004 A.8)
        return {"mac": FLOPS_PER_MAC * 12.5, "ac": 0.077, "cmp": 0.0, "reset": 0.0, "shift": 0.0}
    if name == "seed001":
        table = {8: (0.2, 0.03, 0.024, 0.03), 32: (3.1, 0.1, 0.13, 0.08)}
        if bits not in table:
            raise SnnconvError(f"price_table: seed001 has 8- and 32-bit prices, got bits={bits}")
        mult, add, shift, cmp = table[bits]
        return {"mac": mult + add, "ac": add, "cmp": cmp, "reset": add, "shift": shift}
    raise SnnconvError(f"price_table: unknown table {name!r}; choose one of {', '.join(PRICE_TABLES)}")


@torch.no_grad()
def connections(module: nn.Module, x: Tensor) -> float:
    """Σ over the non-zero elements of ``x`` of their fan-out in ``module`` (conv or linear), whole batch."""
    ind = (x != 0).float()
    if isinstance(module, nn.Linear):
        return float(ind.sum(dtype=torch.float64)) * module.out_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        ones = torch.ones_like(module.weight, dtype=torch.float32)
        return float(module._conv_forward(ind, ones, None).sum(dtype=torch.float64))
    raise TypeError(f"connections: {type(module).__name__} is not a conv/linear layer")


def _static_modules(gm: fx.GraphModule) -> set[str]:
    """Names of modules whose input is the same at every step (computed from the analog input only)."""
    return _modules_upstream_free_of(gm, (SpikingNeuron, TimeAware))


def _analog_modules(gm: fx.GraphModule) -> set[str]:
    """Names of modules with no spiking neuron upstream: their inputs are analog (multi-bit), so they MAC."""
    return _modules_upstream_free_of(gm, (SpikingNeuron,))


def _modules_upstream_free_of(gm: fx.GraphModule, kinds: tuple[type, ...]) -> set[str]:
    free: set[fx.Node] = set()
    names: set[str] = set()
    for n in gm.graph.nodes:
        mod = gm.get_submodule(n.target) if n.op == "call_module" else None
        if n.op == "placeholder" or (not isinstance(mod, kinds) and all(a in free for a in n.all_input_nodes)):
            free.add(n)
            if mod is not None:
                names.add(n.target)
    return names


def _ops() -> dict[str, float]:
    return dict.fromkeys(OPS, 0.0)


@dataclass
class EnergyReport:
    """Operation counts per layer and per sample, priced with ``prices`` (pJ)."""

    T: int
    prices: dict[str, float]
    snn_ops: dict[str, dict[str, float]] = field(default_factory=dict)
    ann_ops: dict[str, dict[str, float]] | None = None
    samples: int = 0

    @staticmethod
    def _price(ops: dict[str, dict[str, float]], prices: dict[str, float]) -> dict[str, float]:
        return {k: sum(v[o] * prices[o] for o in OPS) for k, v in ops.items()}

    def snn_energy(self) -> dict[str, float]:
        """pJ per sample, per layer."""
        return self._price(self.snn_ops, self.prices)

    def ann_energy(self) -> dict[str, float] | None:
        return None if self.ann_ops is None else self._price(self.ann_ops, self.prices)

    def totals(self, which: str = "snn") -> dict[str, float]:
        """Op counts per sample summed over layers."""
        ops = self.snn_ops if which == "snn" else (self.ann_ops or {})
        return {o: sum(v[o] for v in ops.values()) for o in OPS}

    def op_counts(self) -> dict[str, float | None]:
        """Per sample: the SNN's synaptic operations (SOP = AC) and FLOPs (2 per MAC), the ANN's FLOPs (seed 004)."""
        snn, ann = self.totals("snn"), self.totals("ann") if self.ann_ops is not None else None
        return {"snn_sop": snn["ac"], "snn_flop": FLOPS_PER_MAC * snn["mac"],
                "ann_flop": None if ann is None else FLOPS_PER_MAC * ann["mac"]}  # fmt: skip

    @property
    def snn_total(self) -> float:
        return sum(self.snn_energy().values())

    @property
    def ann_total(self) -> float | None:
        e = self.ann_energy()
        return None if e is None else sum(e.values())

    @property
    def ratio(self) -> float | None:
        """E_ANN / E_SNN (> 1: the SNN needs less energy)."""
        a = self.ann_total
        return None if a is None or self.snn_total == 0 else a / self.snn_total

    def to_dict(self) -> dict:
        return {
            "T": self.T, "samples": self.samples, "prices_pJ": self.prices, "unit": "pJ per sample",
            "snn_ops": self.snn_ops, "snn_energy": self.snn_energy(), "snn_total": self.snn_total,
            "snn_ops_total": self.totals("snn"), "ann_ops": self.ann_ops, "ann_energy": self.ann_energy(),
            "ann_total": self.ann_total, "ann_over_snn": self.ratio, "op_counts": self.op_counts(),
        }  # fmt: skip

    def table(self) -> str:
        """Text table of op counts and energy per layer (per sample)."""
        from snnconv.analysis.spikes import _table

        e = self.snn_energy()
        rows = [[k, *(f"{v[o]:.4g}" for o in OPS), f"{e[k]:.4g}"] for k, v in self.snn_ops.items()]
        tot = self.totals("snn")
        rows.append(["SNN total", *(f"{tot[o]:.4g}" for o in OPS), f"{self.snn_total:.4g}"])
        if self.ann_ops is not None:
            at = self.totals("ann")
            rows.append(["ANN total", *(f"{at[o]:.4g}" for o in OPS), f"{self.ann_total:.4g}"])
        text = _table(["layer", *OPS, "energy_pJ"], rows)
        if self.ratio is not None:
            text += f"\nE_ANN / E_SNN = {self.ratio:.3f}  (T={self.T})"
        return text


def _synaptic(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, SYNAPTIC)}


@torch.no_grad()
def energy(
    snn: SpikingNetwork,
    data: Tensor | Iterable,
    T: int,
    *,
    ann: nn.Module | None = None,
    table: str = "45nm",
    bits: int = 32,
    shifts_per_output: int = 0,
    analog_per_step: bool = True,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    chunk: int | None = None,
) -> EnergyReport:
    """Count the operations of ``snn`` (and of ``ann`` if given) on ``data`` at ``T`` steps and price them."""
    report = EnergyReport(T=T, prices=price_table(table, bits), ann_ops={} if ann is not None else None)
    static = _static_modules(snn.graph)
    analog = _analog_modules(snn.graph)
    neurons = snn.neurons()
    snn_ops: dict[str, dict[str, float]] = {}
    ann_ops: dict[str, dict[str, float]] = {}

    def snn_record(name: str, mod: nn.Module, x: Tensor, out: Tensor) -> None:
        ops = snn_ops.setdefault(name, _ops())
        if name in static:
            ops["mac"] += connections(mod, torch.ones_like(x)) * (T if analog_per_step else 1)
        elif name in analog:  # time-varying analog input (e.g. the bit-serial encoder): MACs on non-zero inputs
            ops["mac"] += connections(mod, x)
        else:
            ops["ac"] += connections(mod, x) + (out.numel() if mod.bias is not None else 0)

    def ann_record(name: str, mod: nn.Module, x: Tensor, out: Tensor) -> None:
        ann_ops.setdefault(name, _ops())["mac"] += connections(mod, torch.ones_like(x))

    batches = [(data, None)] if isinstance(data, Tensor) else data
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = x.to(device) if device is not None else x
        with forward_hooks(snn.graph, snn_record, _synaptic(snn.graph), eval_mode=False):
            result = simulate(snn, x, T, chunk=chunk)
        for name in neurons:
            ops = snn_ops.setdefault(name, _ops())
            n = result.neurons[name] * x.shape[0] * T
            ops["cmp"] += n
            ops["reset"] += float(result.spike_counts[name].sum())
            ops["shift"] += shifts_per_output * n
        if ann is not None:
            with forward_hooks(ann, ann_record, _synaptic(ann)):
                ann(x)
        report.samples += x.shape[0]
    order = [n.target for n in snn.graph.graph.nodes if n.target in snn_ops]
    report.snn_ops = {k: {o: v / report.samples for o, v in snn_ops[k].items()} for k in dict.fromkeys(order)}
    if ann is not None:
        report.ann_ops = {k: {o: v / report.samples for o, v in ops.items()} for k, ops in ann_ops.items()}
    return report
