"""Multi-head self-attention written out with plain tensor ops (traceable, batch-invariant, no fused fast path).

It is an analog module of a converted transformer (wrap it in ``snnconv.layers.Analog``): the softmax and the
products of two activations are not affine maps of spike trains (seed 001 A.6).
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class SelfAttention(nn.Module):
    """softmax(Q·Kᵀ/√d_h)·V per head on tokens [B, N, D], then the output projection (Vaswani et al. 2017).

    ``qkv`` is one Linear D → 3D (the layout of ``nn.MultiheadAttention.in_proj_weight``: Q, K, V rows), ``proj``
    the output projection; ``dropout`` acts on the attention weights and after the projection (as in
    ``nn.TransformerEncoderLayer``: inside attention and ``dropout1``).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"SelfAttention: dim ({dim}) must be a positive multiple of heads ({heads})")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, N = x.shape[0], x.shape[1]  # indexing (not unpacking) keeps it traceable by torch.fx
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]  # [B, H, N, d_h]
        attn = self.attn_drop((q @ k.transpose(-2, -1)).softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(B, N, self.heads * self.head_dim)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}"
