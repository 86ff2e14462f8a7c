"""Errors raised by snnconv. Each message names the offending thing and the fix."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class SnnconvError(ValueError):
    """Base class of every error snnconv raises on bad input."""


class ConversionError(SnnconvError):
    """A model (or one of its layers) cannot be converted with the requested method."""


class SimulationError(SnnconvError):
    """Bad input to the simulation engine (shape, dtype, non-finite values, T)."""


class RegistryError(SnnconvError, KeyError):
    """Unknown or duplicate name in a registry (models, methods, datasets)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CheckpointError(SnnconvError):
    """A checkpoint is missing, corrupted, refused as unsafe, or does not match the model/run."""


class TrainingDiverged(SnnconvError, RuntimeError):
    """The training loss (or a weight) became non-finite; no checkpoint was written for that epoch."""


def count_not_positive(values: Tensor) -> int:
    """How many entries are NaN, ±Inf or <= 0: thresholds and spike values must be finite and > 0 (a neuron with
    θ <= 0 fires on every step). Shared by the neuron constructors, ``convert`` and ``simulate``."""
    return int((values.isnan() | values.isinf() | (values <= 0)).sum())


def all_positive(values: Tensor) -> bool:
    """``count_not_positive(values) == 0`` in one reduction (min and max propagate NaN): the check ``simulate``
    runs on every neuron's thresholds at every call, at a third of the cost of counting (issue 8)."""
    if values.numel() == 0:
        return True
    lo, hi = torch.aminmax(values)
    return lo.item() > 0 and hi.item() < math.inf


def nonfinite_tensors(module: torch.nn.Module) -> list[tuple[str, int]]:
    """``(name, count)`` of every floating-point parameter or buffer of ``module`` holding NaN/Inf values.

    Buffers of torch.ao observers are left out: their running min/max start at ±Inf before calibration and are not
    weights of the network (the fake quantizers' scales are).
    """
    from torch.ao.quantization.observer import ObserverBase

    skip = {f"{m}." for m, mod in module.named_modules() if isinstance(mod, ObserverBase) and m}
    found = []
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not any(name.startswith(p) for p in skip):
            bad = int(t.numel() - torch.isfinite(t).sum())
            if bad:
                found.append((name, bad))
    return found


def describe_nonfinite(found: list[tuple[str, int]]) -> str:
    """``"tensor '0.weight' has 1 non-finite value(s) (NaN/Inf)"`` (+ how many more tensors)."""
    (name, count), more = found[0], len(found) - 1
    extra = f" (and {more} more tensor(s): {', '.join(n for n, _ in found[1:4])}{', ...' if more > 3 else ''})"
    return f"tensor '{name}' has {count} non-finite value(s) (NaN/Inf)" + (extra if more else "")
