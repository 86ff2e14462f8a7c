"""Accuracy over time steps: one simulation up to max(T) per batch gives the accuracy at every T ≤ max(T)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from snnconv._deps import tqdm
from snnconv.convert.network import SpikingNetwork
from snnconv.simulate import Schedule, SimResult, simulate


@dataclass
class SweepResult:
    """SNN accuracy per T, spike statistics and the ANN reference, over a whole dataset."""

    T: list[int]
    snn_accuracy: dict[int, float]
    ann_accuracy: float | None
    spike_rate: dict[str, float]  #: per layer, spikes / (neurons · samples · max T)
    spike_rate_per_T: dict[int, float] = field(default_factory=dict)  #: all layers, over steps 1..T
    samples: int = 0

    def to_dict(self) -> dict:
        return {
            "T": self.T,
            "snn_accuracy": {str(t): a for t, a in self.snn_accuracy.items()},
            "ann_accuracy": self.ann_accuracy,
            "spike_rate": self.spike_rate,
            "total_spike_rate": {str(t): r for t, r in self.spike_rate_per_T.items()},
            "samples": self.samples,
        }


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (%) of an ANN."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x.to(device)).argmax(-1) == y.to(device)).sum())
        total += len(y)
    return 100.0 * correct / max(1, total)


@torch.no_grad()
def sweep(
    snn: SpikingNetwork,
    loader: Iterable,
    T: Sequence[int],
    *,
    ann: nn.Module | None = None,
    device: torch.device | str = "cpu",
    schedule: Schedule = "layer",
    chunk: int | str | None = "auto",
    progress: bool = True,
    simulate_fn: Callable[..., SimResult] = simulate,
) -> SweepResult:
    """Simulate every batch once up to ``max(T)``; report accuracy at each requested T.

    ``simulate_fn`` replaces ``snnconv.simulate`` (e.g. ``simulate_calibrated``, which returns only the T result
    steps of COS/SRP networks).
    """
    T = sorted(set(int(t) for t in T))
    Tmax = T[-1]
    correct = torch.zeros(Tmax, dtype=torch.long)
    ann_correct = total = 0
    counts: dict[str, Tensor] = {}
    neurons: dict[str, int] = {}
    if ann is not None:
        ann.eval()
    bar = tqdm(loader, desc=f"SNN T≤{Tmax}", disable=not progress, leave=False)
    for x, y in bar:
        x, y = x.to(device), y.to(device)
        result = simulate_fn(snn, x, Tmax, schedule=schedule, chunk=chunk)
        correct += result.correct(y).cpu()
        for k, c in result.spike_counts.items():
            counts[k] = counts.get(k, 0) + c.cpu().double()
        neurons = result.neurons
        if ann is not None:
            ann_correct += int((ann(x).argmax(-1) == y).sum())
        total += len(y)
        bar.set_postfix(acc=f"{100.0 * float(correct[-1]) / total:.2f}")
    rates = {k: float(c.sum()) / (neurons[k] * total * Tmax) for k, c in counts.items()}
    n_all = sum(neurons.values())
    per_T = {t: float(sum(c[:t].sum() for c in counts.values())) / max(1, n_all * total * t) for t in T}
    return SweepResult(
        T=T,
        snn_accuracy={t: 100.0 * float(correct[t - 1]) / max(1, total) for t in T},
        ann_accuracy=100.0 * ann_correct / total if ann is not None else None,
        spike_rate=rates,
        spike_rate_per_T=per_T,
        samples=total,
    )


def bitserial_bits(ann: nn.Module) -> int:
    """The smallest number of bits T with which the bit-serial SNN equals ``ann`` exactly."""
    from snnconv.convert import convert

    return convert(ann, method="bitserial").meta["T"]


def bitserial_plan(exact_T: int, t: int, extra_steps: str = "refine") -> dict:
    """Conversion arguments for t time steps: fewer steps than exact bits re-round; more refine below the LSB
    (``extra_steps="refine"``) or add silent leading bits (``"pad"``: SNN == QANN)."""
    return {"T": exact_T, "steps": t, "extra_steps": extra_steps}


@torch.no_grad()
def sweep_bitserial(
    ann: nn.Module,
    loader: Iterable,
    T: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    **options,
) -> dict:
    """Bit-serial SNN vs its quantized ANN at each T (seed 001 Table 5 shape); one conversion per T.

    T below the network's exact bit count fires fewer steps (re-rounded, ``rounding`` option); T above it refines
    below the LSB (``extra_steps="refine"``, the QANN compared with is then the finer T-bit quantizer) or pads
    (``"pad"``: exact). ``options`` go to ``convert(method="bitserial")`` (bias split, ablations, extra_steps).
    Reports accuracy of the SNN, of the QANN it must equal, of the ANN, the number of test images whose SNN
    prediction differs from the QANN's, and the spike rate.
    """
    from snnconv.convert import convert, quantized_reference

    ann = ann.to(dtype).eval()
    exact_T = bitserial_bits(ann)
    options = dict(options)
    extra = options.pop("extra_steps", "refine")
    plans = {t: bitserial_plan(exact_T, t, extra) for t in sorted(set(T))}
    nets = {t: convert(ann, method="bitserial", **kw, **options) for t, kw in plans.items()}
    rounding = options.get("rounding", "unbiased")
    refs = {t: quantized_reference(ann, kw["T"], steps=kw["steps"], rounding=rounding, extra_steps=extra)
            for t, kw in plans.items()}  # fmt: skip
    snn_ok = dict.fromkeys(plans, 0)
    q_ok = dict.fromkeys(plans, 0)
    differ = dict.fromkeys(plans, 0)
    spikes = dict.fromkeys(plans, 0.0)
    neurons = dict.fromkeys(plans, 0)
    ann_ok = total = 0
    for x, y in tqdm(loader, desc="bit-serial", disable=not progress, leave=False):
        x = x.to(dtype)
        ann_ok += int((ann(x).argmax(-1) == y).sum())
        total += len(y)
        for t, snn in nets.items():
            r = simulate(snn, x, snn.meta["steps"])
            pred, qpred = r.logits[-1].argmax(-1), refs[t](x).argmax(-1)
            snn_ok[t] += int((pred == y).sum())
            q_ok[t] += int((qpred == y).sum())
            differ[t] += int((pred != qpred).sum())
            spikes[t] += float(sum(c.sum() for c in r.spike_counts.values()))
            neurons[t] = sum(r.neurons.values())
    pct = lambda n: 100.0 * n / max(1, total)  # noqa: E731
    return {
        "exact_T": exact_T,
        "T": sorted(plans),
        "ann_accuracy": pct(ann_ok),
        "qann_accuracy": {str(t): pct(q_ok[t]) for t in plans},
        "snn_accuracy": {str(t): pct(snn_ok[t]) for t in plans},
        "disagreements": {str(t): differ[t] for t in plans},
        "spiking_activity": {str(t): spikes[t] / max(1, neurons[t] * total * nets[t].meta["steps"]) for t in plans},
        "samples": total,
        "dtype": str(dtype).replace("torch.", ""),
        "extra_steps": extra,
        "options": {k: v for k, v in options.items() if not isinstance(v, Tensor)},
    }
