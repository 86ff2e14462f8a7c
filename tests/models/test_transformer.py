"""vit_tiny and the encoder block (seed 001 A.6): shapes, gradients, options, and prepare() of torch's encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnconv import QCFS, make_act, prepare
from snnconv.convert import trace
from snnconv.errors import ConversionError
from snnconv.layers import Analog, SelfAttention
from snnconv.models import create
from snnconv.models.transformer import ViT


@pytest.mark.parametrize("kind", ["relu", "qcfs", "csqcfs"])
def test_forward_backward(kind, one_thread):
    torch.manual_seed(0)
    model = create("vit_tiny", num_classes=7, in_channels=1, input_size=28, act=make_act(kind, levels=7, threshold=1.0))
    assert model.patch == 7 and model.pos.weight.shape == (16, 64) and model.hidden == 128
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 7)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name
    qs = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(qs) == (0 if kind == "relu" else 2)
    if kind == "csqcfs":  # one threshold per FFN hidden unit: the activation sees [B, hidden, N]
        assert all(q.threshold.shape == (128,) for q in qs)


def test_config_and_errors():
    m = ViT(make_act("qcfs"), 10, 3, 32, patch=8, dim=48, depth=3, heads=3, mlp_ratio=1.5, width=0.5)
    assert (m.dim, m.hidden, len(m.blocks), m.pos.weight.shape) == (24, 36, 3, (16, 24))
    assert ViT(make_act("qcfs"), input_size=16, dim=64, heads=4, width=0.125).dim == 8  # a multiple of heads
    with pytest.raises(ValueError, match="not a multiple of 4"):
        ViT(make_act("qcfs"), input_size=30)
    with pytest.raises(ValueError, match="positive divisor"):
        ViT(make_act("qcfs"), input_size=28, patch=5)
    with pytest.raises(ValueError, match="multiple of heads"):
        SelfAttention(10, 3)


def test_analog_parts_are_single_traced_nodes():
    model = create("vit_tiny", input_size=16, width=0.25).eval()
    gm = trace(model)
    analog = [
        n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), Analog)
    ]
    assert analog == ["blocks.0.attn", "blocks.0.norm2", "blocks.1.attn", "blocks.1.norm2", "norm"]
    assert not any(n.op == "call_function" and "softmax" in str(n.target) for n in gm.graph.nodes)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=True).double().eval()
    ours = SelfAttention(12, 3).double()
    with torch.no_grad():
        ours.qkv.weight.copy_(mha.in_proj_weight)
        ours.qkv.bias.copy_(mha.in_proj_bias)
        ours.proj.weight.copy_(mha.out_proj.weight)
        ours.proj.bias.copy_(mha.out_proj.bias)
    x = torch.randn(4, 5, 12, dtype=torch.float64)
    torch.testing.assert_close(ours(x), mha(x, x, x, need_weights=False)[0], rtol=1e-12, atol=1e-12)


class _TokenModel(nn.Module):
    """A user model with torch's encoder: tokens [B, N, 6] → Linear → nn.TransformerEncoder → mean → Linear."""

    def __init__(self, norm_first: bool, activation: str = "relu", batch_first: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 12)
        layer = nn.TransformerEncoderLayer(12, 3, 20, dropout=0.1, activation=activation, batch_first=batch_first,
                                           norm_first=norm_first)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(12), enable_nested_tensor=False)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_prepare_replaces_torch_encoder_layers_exactly(norm_first, activation):
    torch.manual_seed(0)
    model = _TokenModel(norm_first, activation).double().eval()
    x = torch.randn(5, 7, 6, dtype=torch.float64)
    same = nn.ReLU if activation == "relu" else nn.GELU
    prepared = prepare(model, act=lambda c: same())  # the same activation: the same function
    torch.testing.assert_close(prepared(x), model(x), rtol=1e-12, atol=1e-12)
    assert not any(isinstance(m, (nn.TransformerEncoderLayer, nn.MultiheadAttention)) for m in prepared.modules())
    assert prepared.training is False and isinstance(prepared.encoder.norm, Analog)
    q = prepare(model, act="csqcfs", levels=7)
    qs = [m for m in q.modules() if isinstance(m, QCFS)]
    assert len(qs) == 2 and all(m.threshold.shape == (20,) for m in qs)
    attn = q.get_submodule("encoder.layers.0.attn")  # the traced copy keeps the block's analog stages
    assert isinstance(attn, Analog) and [type(m) for m in attn] == ([nn.LayerNorm] if norm_first else []) + [
        SelfAttention
    ]
    assert hasattr(q.encoder.layers.get_submodule("1"), "norm1") is not norm_first
    assert model.encoder.layers[0].activation_relu_or_gelu in (1, 2)  # the original is untouched


def test_prepare_rejects_what_it_cannot_convert():
    with pytest.raises(ConversionError, match="batch_first=False"):
        prepare(_TokenModel(True, batch_first=False))
    with pytest.raises(ConversionError, match="not ReLU or GELU"):
        prepare(nn.TransformerEncoderLayer(8, 2, 16, activation=torch.tanh, batch_first=True))

    class _Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

        def forward(self, x):
            return self.layer(x, is_causal=True, src_mask=None)

    with pytest.raises(ConversionError, match="masks are not supported"):
        prepare(_Masked())
