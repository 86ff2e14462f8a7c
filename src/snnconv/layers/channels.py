"""Broadcasting of per-layer (scalar) or per-channel (C,) parameters over activations (channel axis 1)."""

from __future__ import annotations

from torch import Tensor

from snnconv.errors import SnnconvError


def channel_view(param: Tensor, ndim: int) -> Tensor:
    """View ``param`` (shape () or (C,)) so it broadcasts over an (N, C, ...) tensor with ``ndim`` dims.

    The view only fixes the trailing dims, so it also broadcasts over (T, N, C, ...).
    """
    if param.dim() == 0:
        return param
    if ndim < 2:
        raise SnnconvError(f"a per-channel parameter needs an (N, C, ...) input, got {ndim} dims")
    return param.view(-1, *([1] * (ndim - 2)))
