"""Learned position embedding as a module, so conversion passes see the constant it adds (issue 11)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PositionEmbedding(nn.Module):
    """y = x + P for tokens x of shape [B, N, D] and a learned P of shape [N, D] (ViT, Dosovitskiy et al. 2021).

    P is a constant input current: the IF conversion adds it at every step (rate coding), the bit-serial one
    splits it over the steps like a bias (``StepBias``: all of it at t = 1, or P/T per step; SPEC §3).
    """

    def __init__(self, tokens: int, dim: int, std: float = 0.02) -> None:
        super().__init__()
        if tokens < 1 or dim < 1:
            raise ValueError(f"PositionEmbedding: tokens and dim must be positive, got {tokens}, {dim}")
        self.weight = nn.Parameter(torch.empty(tokens, dim))
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight

    def extra_repr(self) -> str:
        return f"tokens={self.weight.shape[0]}, dim={self.weight.shape[1]}"
