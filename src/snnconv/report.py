"""Human-readable output: aligned text tables and the accuracy-vs-T plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (numbers right-aligned, floats with 2 decimals)."""

    def fmt(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def accuracy_table(T: Sequence[int], snn: dict[int, float], ann: float | None, rates: dict[int, float]) -> str:
    rows = [[t, snn[t], (snn[t] - ann) if ann is not None else "", f"{rates.get(t, 0.0):.4f}"] for t in T]
    return table(["T", "SNN acc %", "vs ANN", "spike rate"], rows)


def plot_accuracy(path: str | Path, curves: dict[str, dict[int, float]], ann: float | None, title: str) -> Path:
    """Accuracy vs T (log2 x axis), one line per method, the ANN as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, acc in curves.items():
        ts = sorted(acc)
        ax.plot(ts, [acc[t] for t in ts], marker="o", label=label)
    if ann is not None:
        ax.axhline(ann, linestyle="--", color="gray", label=f"ANN {ann:.2f}%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
