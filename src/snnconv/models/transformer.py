"""A small vision transformer with QCFS in place of GELU, for conversion (seed 001 A.6; issue 11).

``vit_tiny``: patch embedding (conv with stride = patch) + learned position embedding + ``depth`` pre-LN
encoder blocks (``snnconv.layers.encoder.EncoderBlock``: Analog(LN → self-attention) + residual,
Analog(LN) → Linear → act → Linear + residual) + Analog(LN) + mean over tokens + Linear head.

After conversion only the FFN activations spike; the LayerNorms and the attention are ``Analog`` stages that
read the decoded values of the spiking part (``snnconv.layers.analog``). The patch embedding, the position
embedding and the first attention read the analog image only, so under direct coding they are computed once.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnconv.layers.act import ActFactory
from snnconv.layers.analog import Analog
from snnconv.layers.embedding import PositionEmbedding
from snnconv.layers.encoder import EncoderBlock
from snnconv.models.registry import check_input, register_model

__all__ = ["ViT", "vit_tiny"]


class ViT(nn.Module):
    """Vision transformer (Dosovitskiy et al., ICLR 2021) with pre-LN blocks, mean pooling and QCFS FFNs.

    ``patch`` defaults to ``input_size // 4`` (a 4×4 grid of tokens; 7×7 patches on 28×28 images); ``dim`` is
    scaled by ``width`` and rounded to a multiple of ``heads``; the FFN is ``round(mlp_ratio·dim)`` wide.
    """

    def __init__(
        self,
        act: ActFactory,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        patch: int | None = None,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        width: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_input(num_classes, in_channels, input_size)
        if patch is None:
            if input_size % 4:
                raise ValueError(f"ViT: input_size {input_size} is not a multiple of 4; pass patch=<a divisor>")
            patch = input_size // 4
        if not isinstance(patch, int) or patch < 1 or input_size % patch:
            raise ValueError(f"ViT: patch must be a positive divisor of input_size {input_size}, got {patch!r}")
        if depth < 1 or heads < 1 or width <= 0 or mlp_ratio <= 0:
            raise ValueError("ViT: depth, heads, width and mlp_ratio must be positive")
        dim = heads * max(1, round(dim * width / heads))
        hidden = max(1, round(mlp_ratio * dim))
        grid = input_size // patch
        self.patch, self.dim, self.hidden = patch, dim, hidden
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = PositionEmbedding(grid * grid, dim)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, hidden, act, dropout=dropout) for _ in range(depth)])
        self.norm = Analog(nn.LayerNorm(dim))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.pos(self.embed(x).flatten(2).transpose(1, 2))  # [B, N, D]
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


@register_model("vit_tiny")
def vit_tiny(num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs) -> ViT:
    """ViT with a 4×4 token grid, dim 64, depth 2, 4 heads, FFN 128; kwargs: ``patch``, ``dim``, ``depth``,
    ``heads``, ``mlp_ratio``, ``width``, ``dropout``."""
    return ViT(act, num_classes, in_channels, input_size, **kwargs)
