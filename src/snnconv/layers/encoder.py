"""Transformer encoder block whose FFN activation is a QCFS (spiking after conversion) and whose attention and
LayerNorms are ``Analog`` stages (seed 001 A.6: QCFS in place of GELU in BERT; issue 11).

Tokens are [B, N, D] (batch first). Pre-LN (``norm_first=True``)::

    x = x + Attn(LN1(x))                 Analog(LN1, SelfAttention)
    x = x + W2·act(W1·LN2(x) + b1) + b2  Analog(LN2), then the spiking feed-forward block

Post-LN (``norm_first=False``, the default of ``nn.TransformerEncoderLayer``): x = LN1(x + Attn(x)),
x = LN2(x + FFN(x)). The residual additions are ``Add`` modules; the FFN's activation sees [B, hidden, N] (two
transposes around it) so that channel-wise thresholds sit on axis 1 as in the CNNs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv.errors import ConversionError
from snnconv.layers.act import ActFactory
from snnconv.layers.add import Add
from snnconv.layers.analog import Analog
from snnconv.layers.attention import SelfAttention

__all__ = ["EncoderBlock", "EncoderStack", "FeedForward"]


def _no_masks(*masks: object) -> None:
    if any(m is not None and m is not False for m in masks):
        raise ConversionError(
            "attention masks are not supported in a converted transformer (the attention runs as an Analog stage "
            "without masks); call the encoder with the tokens only"
        )


class FeedForward(nn.Module):
    """W2·act(W1·x + b1) + b2 on tokens [B, N, D]; the activation runs on [B, hidden, N]."""

    def __init__(self, dim: int, hidden: int, act: ActFactory, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = act(hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x).transpose(1, 2)).transpose(1, 2)
        return self.dropout2(self.fc2(self.dropout(h)))


class EncoderBlock(nn.Module):
    """One encoder layer (module docstring); ``act`` builds the FFN activation from its width (QCFS for SNNs)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        hidden: int,
        act: ActFactory,
        *,
        norm_first: bool = True,
        dropout: float = 0.0,
        eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        attn = SelfAttention(dim, heads, dropout, bias)
        if norm_first:
            self.attn = Analog(nn.LayerNorm(dim, eps, bias=bias), attn)
        else:
            self.attn = Analog(attn)
            self.norm1 = Analog(nn.LayerNorm(dim, eps, bias=bias))
        self.add1 = Add()
        self.norm2 = Analog(nn.LayerNorm(dim, eps, bias=bias))
        self.ffn = FeedForward(dim, hidden, act, dropout, bias)
        self.add2 = Add()

    def forward(
        self, x: Tensor, src_mask: None = None, src_key_padding_mask: None = None, is_causal: bool = False
    ) -> Tensor:
        """``nn.TransformerEncoderLayer``'s signature; masks are rejected."""
        _no_masks(src_mask, src_key_padding_mask, is_causal)
        if self.norm_first:
            x = self.add1(x, self.attn(x))
            return self.add2(x, self.ffn(self.norm2(x)))
        x = self.norm1(self.add1(x, self.attn(x)))
        return self.norm2(self.add2(x, self.ffn(x)))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer, act: ActFactory) -> EncoderBlock:
        """The equivalent block of a ``batch_first`` ``nn.TransformerEncoderLayer`` (weights copied), with
        ``act(dim_feedforward)`` in place of its ReLU/GELU. Anything else raises ``ConversionError``."""
        mha = layer.self_attn
        if not mha.batch_first:
            raise ConversionError(
                "prepare: nn.TransformerEncoderLayer(batch_first=False) keeps the batch on axis 1; the simulator folds "
                "time into the batch on axis 0: build the model with batch_first=True"
            )
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ConversionError("prepare: only plain self-attention (no kdim/vdim, add_bias_kv, add_zero_attn)")
        activation = layer.activation
        if not (activation in (F.relu, F.gelu, torch.relu) or isinstance(activation, (nn.ReLU, nn.GELU))):
            raise ConversionError(
                f"prepare: the encoder layer's activation {activation!r} is not ReLU or GELU; only those are replaced "
                "by QCFS (seed 001 A.6)"
            )
        dim, hidden = layer.linear1.in_features, layer.linear1.out_features
        bias = layer.linear1.bias is not None
        block = cls(dim, mha.num_heads, hidden, act, norm_first=layer.norm_first, eps=layer.norm1.eps, bias=bias)
        attn = block.attn[-1]
        attn.attn_drop.p, attn.proj_drop.p = mha.dropout, layer.dropout1.p
        block.ffn.dropout.p, block.ffn.dropout2.p = layer.dropout.p, layer.dropout2.p
        norm1 = block.attn[0] if layer.norm_first else block.norm1[0]
        pairs = [(attn.qkv, (mha.in_proj_weight, mha.in_proj_bias)), (attn.proj, mha.out_proj),
                 (block.ffn.fc1, layer.linear1), (block.ffn.fc2, layer.linear2), (norm1, layer.norm1),
                 (block.norm2[0], layer.norm2)]  # fmt: skip
        with torch.no_grad():
            for new, old in pairs:
                weight, b = old if isinstance(old, tuple) else (old.weight, old.bias)
                new.weight.copy_(weight)
                if new.bias is not None:
                    new.bias.copy_(b)
        return block.to(device=layer.linear1.weight.device, dtype=layer.linear1.weight.dtype).train(layer.training)


class EncoderStack(nn.Module):
    """The traceable counterpart of ``nn.TransformerEncoder``: blocks, then an optional ``Analog`` final norm."""

    def __init__(self, blocks: list[EncoderBlock], norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.Sequential(*blocks)
        self.norm = norm

    def forward(
        self, src: Tensor, mask: None = None, src_key_padding_mask: None = None, is_causal: bool | None = None
    ) -> Tensor:
        _no_masks(mask, src_key_padding_mask, is_causal)
        x = self.layers(src)
        return self.norm(x) if self.norm is not None else x

    @classmethod
    def from_torch(cls, encoder: nn.TransformerEncoder, act: ActFactory) -> EncoderStack:
        """``nn.TransformerEncoder`` → blocks from :meth:`EncoderBlock.from_torch`, its norm as ``Analog(norm)``."""
        blocks = [EncoderBlock.from_torch(layer, act) for layer in encoder.layers]
        norm = Analog(encoder.norm) if encoder.norm is not None else None
        return cls(blocks, norm).train(encoder.training)
