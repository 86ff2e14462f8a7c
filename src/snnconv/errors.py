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
