"""``snnconv inspect``: what a model or a converted SNN is made of, layer by layer, with its thresholds.

``inspect_model(model_or_snn)`` lists every threshold-carrying layer (QCFS activations of an ANN: "analog"; neurons
of a ``SpikingNetwork``: "spiking") with its type, θ min/max/mean over channels, Diff = (max θ - min θ) / min θ and
the number of non-positive thresholds, then MaxDiff and AvgDiff over the layers (seed 002 Table 5; statistics from
``snnconv.analysis.thresholds``). ``inspect_run(run_dir)`` does the same for the trained ANN of a run directory.
A model with ``Analog`` stages (transformers) gets one more section: the domain of every graph node (input, static,
spiking, synaptic, analog with its coding) and the edges where spikes meet analog stages
(``snnconv.analysis.boundary``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from torch import nn

from snnconv.analysis.boundary import boundary_report, has_analog
from snnconv.analysis.thresholds import threshold_stats
from snnconv.convert.network import SpikingNetwork
from snnconv.report import table
from snnconv.threshold_events import EVENTS_FILE, format_events, read_events

__all__ = ["inspect_model", "inspect_run"]

HEADERS = ["layer", "type", "kind", "channels", "min θ", "max θ", "mean θ", "Diff", "θ ≤ 0"]


def _pct(x: float) -> str:
    return "nan" if math.isnan(x) else f"{100 * x:.2f}%"


def _header(model: nn.Module) -> str:
    params = sum(p.numel() for p in model.parameters())
    if isinstance(model, SpikingNetwork):
        meta = ", ".join(f"{k}={v}" for k, v in model.meta.items())
        return f"SpikingNetwork ({meta}): {len(model.neurons())} spiking layers, {params} parameters"
    return f"{type(model).__name__}: {params} parameters"


def inspect_model(model: nn.Module) -> str:
    """A text report of ``model`` (an ANN or a ``SpikingNetwork``): per-layer thresholds, MaxDiff, AvgDiff."""
    stats = threshold_stats(model, warn=False)
    modules = dict(model.named_modules())
    rows = []
    for layer in stats.layers:
        mod = modules.get(layer.name, model)
        rows.append([
            layer.name.removeprefix("graph."), type(mod).__name__, "spiking" if layer.positive == "snn" else "analog",
            layer.channels, f"{layer.min:.4g}", f"{layer.max:.4g}", f"{layer.mean:.4g}", _pct(layer.diff),
            layer.non_positive,
        ])  # fmt: skip
    lines = [_header(model)]
    if not rows:
        lines.append("(no threshold-carrying layers: no QCFS activation or IF-type neuron)")
    else:
        lines += [table(HEADERS, rows), f"MaxDiff {_pct(stats.max_diff)}  AvgDiff {_pct(stats.avg_diff)}"]
        bad = sum(l.non_positive for l in stats.layers)
        if bad:
            lines.append(f"warning: {bad} non-positive threshold(s): these layers cannot be converted faithfully")
    if has_analog(model):
        lines.append(boundary_report(model))
    return "\n".join(lines)


def inspect_run(run_dir: str | os.PathLike, which: str = "last") -> str:
    """``inspect_model`` of the trained ANN of a run directory (``snnconv.runs.load_run``), with its config."""
    from snnconv.runs import load_run

    model, config = load_run(run_dir, which)
    head = (f"run {Path(run_dir)} ({which}.pt): {config.model} (width {config.width}) on {config.dataset}, "
            f"act {config.act}, L = {config.levels}")  # fmt: skip
    text = head + "\n" + inspect_model(model)
    events = read_events(run_dir)
    if events:
        text += f"\nthreshold excursions to θ ≤ 0 during training ({EVENTS_FILE}):\n" + format_events(events)
    return text
