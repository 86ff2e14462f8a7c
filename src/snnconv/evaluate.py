"""Accuracy over time steps: one simulation up to max(T) per batch gives the accuracy at every T ≤ max(T)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from snnconv.convert.network import SpikingNetwork
from snnconv.simulate import Schedule, simulate


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
    chunk: int | None = None,
    progress: bool = True,
) -> SweepResult:
    """Simulate every batch once up to ``max(T)``; report accuracy at each requested T."""
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
        result = simulate(snn, x, Tmax, schedule=schedule, chunk=chunk)
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
