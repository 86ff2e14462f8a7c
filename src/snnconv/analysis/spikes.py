"""Spike statistics per layer (seed 000 §4.7.1; SPEC §2-3).

    rate^l       = spikes^l / (neurons^l · T · B)          (the seed 000 ``[layer] spike_rate=…`` number)
    rate^l(t)    = spikes^l(t) / (neurons^l · B)            (per time step, shape (T,))
    total rate   = Σ_l spikes^l / (Σ_l neurons^l · T · B)   (SPEC §3 "spiking activity")

Build ``SpikeStats`` from one ``SimResult`` (``spike_stats``) or accumulate several batches with
``SpikeCounter``. ``format_spike_rates`` also accepts a plain ``{layer: rate}`` mapping such as
``SweepResult.spike_rate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from snnconv.errors import SnnconvError
from snnconv.simulate import SimResult

__all__ = ["SpikeCounter", "SpikeStats", "format_spike_rates", "spike_stats", "spike_table"]


@dataclass
class SpikeStats:
    """Spike counts of B samples over T steps, per spiking layer (in graph order)."""

    counts: dict[str, Tensor]  #: layer -> (T,) spikes per step, summed over the batch (float64)
    neurons: dict[str, int]  #: layer -> neurons per sample
    samples: int

    @property
    def T(self) -> int:
        return len(next(iter(self.counts.values()))) if self.counts else 0

    @property
    def layers(self) -> list[str]:
        return list(self.counts)

    def spikes(self) -> dict[str, float]:
        """Total spikes per layer (all samples, all steps)."""
        return {k: float(c.sum()) for k, c in self.counts.items()}

    def rates(self) -> dict[str, float]:
        """spikes / (neurons · T · B) per layer."""
        return {k: float(c.sum()) / max(1, self.neurons[k] * self.T * self.samples) for k, c in self.counts.items()}

    def rates_per_step(self) -> dict[str, Tensor]:
        """(T,) spikes(t) / (neurons · B) per layer."""
        return {k: c / max(1, self.neurons[k] * self.samples) for k, c in self.counts.items()}

    def total_rate(self) -> float:
        """Σ spikes / (Σ neurons · T · B) over all layers."""
        n = sum(self.neurons.values())
        return sum(self.spikes().values()) / max(1, n * self.T * self.samples)

    def total_rate_per_step(self) -> Tensor:
        """(T,) all-layer rate at each step."""
        n = sum(self.neurons.values())
        total = torch.stack(list(self.counts.values())).sum(0) if self.counts else torch.zeros(0)
        return total / max(1, n * self.samples)

    def spikes_per_sample(self) -> float:
        """Total spikes of one inference (all layers, T steps), averaged over the samples."""
        return sum(self.spikes().values()) / max(1, self.samples)

    def to_dict(self) -> dict:
        return {
            "T": self.T,
            "samples": self.samples,
            "neurons": dict(self.neurons),
            "spike_rate": self.rates(),
            "spike_rate_per_step": {k: v.tolist() for k, v in self.rates_per_step().items()},
            "total_spike_rate": self.total_rate(),
            "spikes_per_sample": self.spikes_per_sample(),
        }


def spike_stats(result: SimResult, upto: int | None = None) -> SpikeStats:
    """``SpikeStats`` of one simulation, over steps 1..``upto`` (default all T)."""
    t = result.T if upto is None else upto
    if not 1 <= t <= result.T:
        raise SnnconvError(f"spike_stats: upto must be in 1..{result.T}, got {upto}")
    counts = {k: c[:t].detach().double().cpu() for k, c in result.spike_counts.items()}
    return SpikeStats(counts=counts, neurons=dict(result.neurons), samples=result.batch_size)


class SpikeCounter:
    """Accumulates ``SimResult``s of several batches (same network, same T) into one ``SpikeStats``."""

    def __init__(self) -> None:
        self._counts: dict[str, Tensor] = {}
        self._neurons: dict[str, int] = {}
        self._samples = 0

    def add(self, result: SimResult) -> None:
        s = spike_stats(result)
        if self._counts and (s.layers != list(self._counts) or s.T != len(next(iter(self._counts.values())))):
            raise SnnconvError("SpikeCounter: all results must come from the same network and the same T")
        for k, c in s.counts.items():
            self._counts[k] = self._counts[k] + c if k in self._counts else c.clone()
        self._neurons = s.neurons
        self._samples += s.samples

    def update(self, results: Iterable[SimResult]) -> SpikeCounter:
        for r in results:
            self.add(r)
        return self

    def stats(self) -> SpikeStats:
        return SpikeStats(counts=dict(self._counts), neurons=dict(self._neurons), samples=self._samples)


def format_spike_rates(stats: SpikeStats | Mapping[str, float], digits: int = 4) -> str:
    """Seed 000's print format: one ``[layer] spike_rate=0.0622`` line per layer."""
    rates = stats.rates() if isinstance(stats, SpikeStats) else dict(stats)
    return "\n".join(f"[{k}] spike_rate={v:.{digits}f}" for k, v in rates.items())


def spike_table(stats: SpikeStats, digits: int = 4, max_steps: int = 8) -> str:
    """A text table: layer, neurons, spikes/sample, rate, and the rate at each step (first ``max_steps``)."""
    T = stats.T
    steps = list(range(min(T, max_steps)))
    head = ["layer", "neurons", "spikes/sample", "rate"] + [f"t={t + 1}" for t in steps]
    rows = []
    per_step, rates, spikes = stats.rates_per_step(), stats.rates(), stats.spikes()
    for k in stats.layers:
        rows.append([k, str(stats.neurons[k]), f"{spikes[k] / max(1, stats.samples):.1f}", f"{rates[k]:.{digits}f}"]
                    + [f"{float(per_step[k][t]):.{digits}f}" for t in steps])  # fmt: skip
    tot = stats.total_rate_per_step()
    rows.append(["total", str(sum(stats.neurons.values())), f"{stats.spikes_per_sample():.1f}",
                 f"{stats.total_rate():.{digits}f}"] + [f"{float(tot[t]):.{digits}f}" for t in steps])  # fmt: skip
    return _table(head, rows)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
