"""Human-readable output: aligned text tables (plots live in ``snnconv.analysis.plots``)."""

from __future__ import annotations

from collections.abc import Sequence


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
