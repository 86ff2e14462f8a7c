"""Non-positive QCFS thresholds during training, recorded per layer (issue 28).

A plain QCFS threshold λ (seed 004) is an ordinary parameter: a large gradient step early in training can push it
to or below 0. The layer then outputs 0 for every positive pre-activation (a dead layer) and momentum usually
carries λ further down, so the network cannot be converted (``convert`` refuses θ ≤ 0). :class:`ThresholdMonitor`
checks every layer's λ after each optimizer step (one device sync per step for all layers) and records the first
step of each excursion below or at 0 — layer, epoch, step, value — plus the step where it came back, if it does.
``fit`` keeps the events in its checkpoints and in ``RUN/threshold_events.json``; ``snnconv inspect`` prints them.

With a ``floor`` > 0 (``TrainConfig.threshold_floor``, ``snnconv train --threshold-floor``; not in seed 004) an
excursion is a step that leaves λ at or below the floor, and the monitor projects λ back onto it
(λ ← max(λ, floor)) before the next step: the layer stays alive (a small positive λ makes it a near-binary
activation whose scale the next BatchNorm absorbs) and gradient descent can raise λ again.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from snnconv.checkpoint import atomic_write
from snnconv.layers.qcfs import QCFS

__all__ = ["EVENTS_FILE", "ThresholdMonitor", "format_events", "read_events"]

EVENTS_FILE = "threshold_events.json"


class ThresholdMonitor:
    """Watches the plain (``positive="none"``) QCFS thresholds of ``model``; softplus thresholds are always > 0."""

    def __init__(self, model: nn.Module, events: list[dict] | None = None, floor: float = 0.0) -> None:
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, QCFS) and m.positive == "none"]
        self.events: list[dict] = [dict(e) for e in (events or [])]
        self._open = {e["layer"] for e in self.events if e.get("recovered_step") is None}
        self.floor = float(floor)

    def check(self, epoch: int, step: int) -> list[dict]:
        """Record layers whose min θ is ≤ the floor (0 by default) or not finite (new excursions) and those that came
        back; with a floor > 0, project those thresholds onto it. One device sync for all layers."""
        if not self.layers:
            return []
        with torch.no_grad():
            mins = torch.stack([m.threshold.detach().min().float() for _, m in self.layers])
            if bool((mins > self.floor).all()) and not self._open:
                return []
            values = mins.tolist()
        new = []
        for (name, module), v in zip(self.layers, values, strict=True):
            bad = not (v > self.floor)  # NaN too
            if bad and self.floor > 0 and math.isfinite(v):
                with torch.no_grad():
                    module.threshold.clamp_(min=self.floor)
            if bad and name not in self._open:
                event = {"layer": name, "epoch": epoch, "step": step, "value": v if math.isfinite(v) else str(v),
                         "recovered_epoch": None, "recovered_step": None}  # fmt: skip
                if self.floor > 0:
                    event["floor"] = self.floor
                self.events.append(event)
                self._open.add(name)
                new.append(event)
            elif not bad and name in self._open:
                for e in reversed(self.events):
                    if e["layer"] == name and e["recovered_step"] is None:
                        e["recovered_epoch"], e["recovered_step"] = epoch, step
                        break
                self._open.discard(name)
        for e in new:
            if "floor" in e:
                what = (f"fell to {e['value']} (at or below the floor {e['floor']}) at epoch {e['epoch']}, step "
                        f"{e['step']}: held at the floor; recorded in {EVENTS_FILE}")  # fmt: skip
            else:
                what = (
                    f"became non-positive ({e['value']}) at epoch {e['epoch']}, step {e['step']}: the layer "
                    f"outputs 0 for positive inputs; recorded in {EVENTS_FILE}. Lower the learning rate, set "
                    "a threshold floor (--threshold-floor) or use softplus thresholds (CS-QCFS: --two-stage)"
                )
            warnings.warn(f"QCFS threshold of layer '{e['layer']}' {what}", RuntimeWarning, stacklevel=2)
        return new

    def write(self, run_dir: str | Path) -> None:
        """Write the events to ``run_dir/threshold_events.json`` (atomically; nothing when there are none)."""
        path = Path(run_dir) / EVENTS_FILE
        if not self.events and not path.exists():
            return
        text = json.dumps(self.events, indent=1) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))


def read_events(run_dir: str | Path) -> list[dict]:
    """The recorded events of a run directory ([] when none were recorded)."""
    path = Path(run_dir) / EVENTS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def format_events(events: list[dict]) -> str:
    """One line per event, for ``snnconv inspect``."""
    lines = []
    for e in events:
        floor = e.get("floor", 0)
        level = f"the floor {floor}" if floor else "0"
        back = f"back above {level} at epoch {e['recovered_epoch']}, step {e['recovered_step']}"
        if e.get("recovered_step") is None:
            back = f"still at {level} at the end of training" if floor else "still non-positive at the end of training"
        held = f" (held at the floor {floor})" if floor else ""
        lines.append(f"  {e['layer']}: θ = {e['value']}{held} at epoch {e['epoch']}, step {e['step']}; {back}")
    return "\n".join(lines)
