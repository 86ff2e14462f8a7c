"""Device names: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.

A name torch cannot parse, or a device this machine does not have, is refused with an ``SnnconvError`` before any
model is built (issue 20: ``--device bogus`` and ``--device cuda`` without a GPU ended in raw tracebacks).
"""

from __future__ import annotations

import torch

from snnconv.errors import SnnconvError


def check_device(name: str, *, flag: str = "device") -> torch.device:
    """The ``torch.device`` that ``name`` names on this machine, or an ``SnnconvError`` saying why not."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise SnnconvError(f"{flag}: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SnnconvError(f"{flag} {name}: no CUDA GPU is available on this machine; use --device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise SnnconvError(f"{flag} {name}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise SnnconvError(f"{flag} {name}: device type {device.type!r} is not available here; use cpu, cuda or auto")


def resolve_device(name: str = "auto") -> torch.device:
    """``check_device`` for API callers (``TrainConfig.device``)."""
    return check_device(name)
