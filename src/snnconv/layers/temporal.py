"""Stateless layers whose map depends on the time step (per-step bias split, input encoders).

The engine calls ``seq(x, start, T)`` with ``x`` of shape [steps, B, ...] holding steps ``start+1 ..
start+steps`` of a T-step simulation (``x`` may be an expanded view of a time-constant value).
"""

from __future__ import annotations

from torch import Tensor, nn


class TimeAware(nn.Module):
    """Base class of step-dependent stateless layers; subclasses implement ``seq``."""

    def seq(self, x: Tensor, start: int, T: int) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Direct use on a whole [T, B, ...] sequence."""
        return self.seq(x, 0, x.shape[0])
