"""PNG figures for the analysis (matplotlib, Agg backend): accuracy vs T, spike rates, error decomposition."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnconv._deps import require

require("matplotlib", "snnconv.analysis.plots").use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snnconv.analysis.error import ErrorDecomposition  # noqa: E402
from snnconv.analysis.spikes import SpikeStats  # noqa: E402

__all__ = ["plot_accuracy_vs_T", "plot_error_decomposition", "plot_spike_rates"]


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_accuracy_vs_T(
    results: Mapping[str, Any],
    path: str | Path,
    *,
    ann_accuracy: float | Mapping[str, float] | None = None,
    title: str = "SNN accuracy vs time steps",
) -> Path:
    """One line per method: ``results[method]`` is ``{T: accuracy %}`` or a ``SweepResult``.

    ANN accuracies (one number, or one per method) are drawn as dashed horizontal lines. T is on a log2 axis.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, res) in enumerate(results.items()):
        acc = res.snn_accuracy if hasattr(res, "snn_accuracy") else res
        ts = sorted(int(t) for t in acc)
        color = f"C{i}"
        ax.plot(ts, [acc[t] if t in acc else acc[str(t)] for t in ts], "o-", color=color, label=name)
        if isinstance(ann_accuracy, Mapping):
            ann = ann_accuracy.get(name)
        else:  # a single number is drawn once below; else a SweepResult's own ANN accuracy
            ann = None if ann_accuracy is not None else getattr(res, "ann_accuracy", None)
        if ann is not None:
            ax.axhline(ann, linestyle="--", color=color, alpha=0.7, label=f"{name} ANN")
    if ann_accuracy is not None and not isinstance(ann_accuracy, Mapping):
        ax.axhline(ann_accuracy, linestyle="--", color="k", alpha=0.7, label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_spike_rates(
    rates: SpikeStats | Mapping[str, float] | Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    title: str = "spike rate per layer",
) -> Path:
    """Bar chart of spikes/(neurons·T·B) per layer; a mapping of mappings draws grouped bars (one per run)."""
    if isinstance(rates, SpikeStats):
        rates = rates.rates()
    groups: dict[str, Mapping[str, float]] = (
        dict(rates) if rates and isinstance(next(iter(rates.values())), Mapping) else {"": rates}  # type: ignore[dict-item]
    )
    layers = list(dict.fromkeys(k for g in groups.values() for k in g))
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(layers) + 2), 4))
    width = 0.8 / len(groups)
    for i, (name, g) in enumerate(groups.items()):
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(layers))]
        ax.bar(xs, [g.get(k, 0.0) for k in layers], width=width, label=name or None)
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("spike rate")
    ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_error_decomposition(
    errors: ErrorDecomposition | Mapping[str, Any], path: str | Path, *, title: str | None = None
) -> Path:
    """Stacked bars of mean |quantization|, |inherited|, |unevenness| (units of θ) per layer; dots: mean |total|.

    ``errors`` is an ``ErrorDecomposition`` or its ``to_dict()``. The parts' absolute values need not add up to
    |total| (errors of opposite sign cancel).
    """
    if isinstance(errors, Mapping):
        mae, layers, T = errors["mean_abs"], list(errors["layers"]), errors["T"]
    else:
        mae, layers, T = errors.mae(), errors.layers, errors.T
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(layers) + 2), 4))
    bottom = [0.0] * len(layers)
    for term in ("quantization", "inherited", "unevenness"):
        vals = [mae[k][term] for k in layers]
        ax.bar(range(len(layers)), vals, bottom=bottom, label=term)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.plot(range(len(layers)), [mae[k]["total"] for k in layers], "ko", label="total (free-running)")
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean |error| / θ")
    ax.set_title(title or f"conversion error per layer, T={T}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_heatmap(
    grid: Mapping[int, Mapping[int, float]], path: str | Path, *, title: str = "SNN accuracy (%)", row: str = "L"
) -> Path:
    """Heatmap of ``grid[row_value][T]`` (e.g. accuracy for levels L × time steps T), values written in cells."""
    rows = sorted(grid)
    cols = sorted({t for r in grid.values() for t in r})
    data = [[grid[r].get(c, float("nan")) for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(0.7 * len(cols) + 2, 0.5 * len(rows) + 1.5))
    im = ax.imshow(data, cmap="viridis", aspect="auto")
    for i, r in enumerate(data):
        for j, v in enumerate(r):
            ax.text(
                j,
                i,
                f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                color="w" if v < 0.5 * max(map(max, data)) else "k",
            )
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel("time steps T")
    ax.set_ylabel(row)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def plot_energy(energy: Mapping[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Energy per layer (pJ per sample) of the SNN and, if present, the ANN, from ``EnergyReport.to_dict()``."""
    snn = energy["snn_energy"]
    ann = energy.get("ann_energy") or {}
    layers = [k for k in snn if snn[k] > 0 or ann.get(k, 0) > 0]
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(layers) + 2), 4))
    xs = range(len(layers))
    ax.bar([x - 0.2 for x in xs], [snn[k] for k in layers], width=0.4, label=f"SNN ({energy['snn_total']:.3g} pJ)")
    if ann:
        ax.bar([x + 0.2 for x in xs], [ann.get(k, 0.0) for k in layers], width=0.4,
               label=f"ANN ({energy['ann_total']:.3g} pJ)")  # fmt: skip
    ax.set_xticks(list(xs), layers, rotation=60, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("energy per sample (pJ)")
    ax.set_title(title or f"energy breakdown, T={energy['T']}")
    ax.legend(fontsize=8)
    return _save(fig, path)
