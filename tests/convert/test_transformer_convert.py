"""Transformers with QCFS in place of GELU (seed 001 A.6, issue 11): the analog stages, IF and bit-serial conversion.

Bit-serial: the FFN neurons fire the QANN's bits and the logits equal the QANN's (float64) on random ViTs; IF: both
schedules agree and the SNN approaches the ANN's continuous limit as T grows; the spiking/analog boundary.
"""

from __future__ import annotations

import copy

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from helpers import randomize
from snnconv import QCFS, convert, make_act, prepare, simulate
from snnconv.analysis.boundary import boundary_edges, node_domains
from snnconv.convert import quantized_reference
from snnconv.errors import ConversionError, SimulationError
from snnconv.functional.bitserial import bit_planes
from snnconv.inspect import inspect_model
from snnconv.layers import Analog, RateAnalog, SumAnalog
from snnconv.layers.bitserial import BitSerialNeuron
from snnconv.models import create


def _vit(L: int, kind: str = "qcfs", *, dim: int = 8, heads: int = 2, depth: int = 2, seed: int = 0,
         input_size: int = 8, mlp_ratio: float = 2.0) -> nn.Module:  # fmt: skip
    """A random ViT (4 tokens of 4×4 patches of a 2-channel image) with varied thresholds, float64, eval."""
    torch.manual_seed(seed)
    act = make_act(kind, levels=L, threshold=1.0)
    ann = create("vit_tiny", num_classes=5, in_channels=2, input_size=input_size, act=act, dim=dim, heads=heads,
                 depth=depth, mlp_ratio=mlp_ratio)  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, QCFS):
                m.threshold.copy_(torch.rand(m.threshold.shape, generator=g) + 0.5)
            elif isinstance(m, nn.LayerNorm):  # non-trivial affine parameters
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return ann.double().eval()


# --- the analog stages --------------------------------------------------------------------------------------


def test_rate_analog_output_mean_is_f_of_input_mean():
    """(1/t)·Σ_{τ≤t} y(τ) = f(ā(t)) at every t, in one scan or in chunks with the state carried over."""
    torch.manual_seed(0)
    f = nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 4)).double()
    stage = RateAnalog(Analog(f))
    x = torch.randn(9, 3, 6, dtype=torch.float64)
    y, _ = stage.scan(x, stage.init_state(x[0]))
    t = torch.arange(1, 10, dtype=torch.float64).view(-1, 1, 1)
    expected = f(x.cumsum(0) / t)
    torch.testing.assert_close(y.cumsum(0) / t, expected, rtol=1e-12, atol=1e-12)
    state, parts = stage.init_state(x[0]), []
    for lo, hi in ((0, 1), (1, 5), (5, 9)):
        part, state = stage.scan(x[lo:hi], state)
        parts.append(part)
    torch.testing.assert_close(torch.cat(parts), y, rtol=0, atol=0)


@pytest.mark.parametrize("split", ["first", "uniform"])
def test_sum_analog_sends_f_of_the_sum_once(split):
    f = nn.LayerNorm(5).double()
    stage = SumAnalog(Analog(f), split)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    y, _ = stage.scan(x, None, 0, 4)
    torch.testing.assert_close(y.sum(0), f(x.sum(0)), rtol=1e-12, atol=1e-12)
    if split == "first":
        assert bool((y[1:] == 0).all())
    with pytest.raises(SimulationError, match="all T steps"):
        stage.scan(x[:2], None, 0, 4)


# --- bit-serial: exact ----------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 4), top=st.booleans(), kind=st.sampled_from(["qcfs", "csqcfs"]), heads=st.integers(1, 3),
       head_dim=st.integers(1, 3), depth=st.integers(1, 2), bias_split=st.sampled_from(["first", "uniform"]),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_bitserial_ffn_blocks_equal_the_quantized_ann(T, top, kind, heads, head_dim, depth, bias_split, seed):
    L = 2 ** (T - 1) if top and T > 1 else 2**T - 1  # L = 2^(T-1): QCFS's top level reachable → T bits + clamp
    ann = _vit(L, kind, dim=heads * head_dim, heads=heads, depth=depth, seed=seed)
    x = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    snn = convert(ann, method="bitserial", bias_split=bias_split)
    assert snn.meta["T"] == T
    assert all(isinstance(n, BitSerialNeuron) for n in snn.neurons().values()) and len(snn.neurons()) == depth
    result = simulate(snn, x, T)
    expected = ann(x).detach()
    ref = quantized_reference(ann).run(x)
    torch.testing.assert_close(ref.logits, expected, rtol=0, atol=0)
    scale = float(expected.abs().max())
    torch.testing.assert_close(result.logits[-1], expected, rtol=1e-9, atol=1e-9 * scale)
    for layer, codes in ref.codes.items():  # every step's spikes are the bits of the QANN codes, layer by layer
        per_step = bit_planes(codes, T).sum(dim=tuple(range(1, codes.dim() + 1)))
        torch.testing.assert_close(result.spike_counts[layer], per_step, rtol=0, atol=0)


def test_bitserial_vit_tiny_at_fewer_steps_and_more_bits():
    ann = _vit(7, dim=16, heads=4, seed=3)
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    codes = quantized_reference(ann).run(x).codes
    assert all(len(torch.unique(c)) >= 5 for c in codes.values())  # the check sees varied codes
    for steps in (1, 2):  # fewer steps than bits: the re-rounded steps-bit QANN
        snn = convert(ann, method="bitserial", steps=steps)
        ref = quantized_reference(ann, steps=steps).run(x).logits
        torch.testing.assert_close(simulate(snn, x, steps).logits[-1], ref, rtol=1e-9, atol=1e-12)
    snn = convert(ann, method="bitserial", T=6)  # more bits than needed: exact with the clamp
    torch.testing.assert_close(simulate(snn, x, 6).logits[-1], ann(x), rtol=1e-9, atol=1e-12)
    with pytest.raises(SimulationError, match="accumulate-then-fire"):
        simulate(convert(ann, method="bitserial"), x, 3, schedule="step")


# --- IF: schedules and convergence ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["qcfs", "csqcfs"])
def test_if_schedules_agree(kind, one_thread):
    ann = _vit(4, kind, dim=16, heads=4, seed=1, input_size=16)
    snn = convert(ann)
    assert sorted(type(m).__name__ for m in snn.modules() if isinstance(m, RateAnalog)) == ["RateAnalog"] * 5
    x = torch.randn(3, 2, 16, 16, dtype=torch.float64)
    layer = simulate(snn, x, 9, chunk=None)
    assert sum(float(c.sum()) for c in layer.spike_counts.values()) > 0
    for other in (simulate(snn, x, 9, schedule="step"), simulate(snn, x, 9, chunk=4)):
        torch.testing.assert_close(other.logits, layer.logits, rtol=0, atol=0)
        for k, c in layer.spike_counts.items():
            torch.testing.assert_close(other.spike_counts[k], c, rtol=0, atol=0)


def test_if_snn_approaches_the_ann_as_T_grows(one_thread):
    """With T → ∞ an IF neuron's rate is clip(z, 0, θ)/θ: the SNN tends to the ANN with QCFS → clip (L → ∞) as 1/T,
    and at T = L it is already close to the QCFS ANN itself."""
    ann = _vit(7, dim=16, heads=4, seed=2)
    limit = copy.deepcopy(ann)
    for m in limit.modules():
        if isinstance(m, QCFS):
            m.levels = 2**20
    x = torch.randn(32, 2, 8, 8, dtype=torch.float64)
    logits = simulate(convert(ann), x, 256).logits
    ref, lim = ann(x).detach(), limit(x).detach()
    err = {t: float((logits[t - 1] - lim).abs().max()) for t in (4, 16, 64, 256)}
    assert err[256] < err[64] < err[16] < err[4]
    assert err[256] < 0.1 * err[16]
    scale = float(ref.abs().max())
    assert float((logits[6] - ref).abs().max()) < 0.1 * scale  # T = L
    agree = (logits[-1].argmax(-1) == ref.argmax(-1)).double().mean()
    assert float(agree) >= 0.9


# --- prepare()d torch encoder -----------------------------------------------------------------------------------


class _TokenModel(nn.Module):
    def __init__(self, norm_first: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 12)
        layer = nn.TransformerEncoderLayer(12, 3, 20, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=norm_first)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(12)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.norm(self.encoder(self.embed(x))).transpose(1, 2).mean(dim=2))


@pytest.mark.parametrize("norm_first", [True, False])
def test_prepared_torch_encoder_converts_exactly(norm_first):
    torch.manual_seed(0)
    ann = prepare(_TokenModel(norm_first), act="qcfs", levels=7, threshold=1.0).double().eval()
    x = torch.randn(5, 7, 6, dtype=torch.float64)
    snn = convert(ann, method="bitserial", bias_split="uniform")
    torch.testing.assert_close(simulate(snn, x, 3).logits[-1], ann(x), rtol=1e-9, atol=1e-12)
    rate = convert(ann)
    step, layer = simulate(rate, x, 6, schedule="step"), simulate(rate, x, 6)
    torch.testing.assert_close(step.logits, layer.logits, rtol=1e-12, atol=1e-12)


# --- what is rejected -------------------------------------------------------------------------------------------


def test_unsupported_uses_are_explained():
    ann = _vit(3)
    with pytest.raises(ConversionError, match="not supported for networks with Analog stages"):
        convert(ann, calibration="cos")
    with pytest.raises(ConversionError, match="analog .*sub-network.*use method 'if' or 'bitserial'"):
        relu_vit = create("vit_tiny", input_size=16, act=make_act("relu")).eval()
        convert(relu_vit, method="ratenorm", calibration=torch.randn(2, 3, 16, 16))

    class _Swap(nn.Module):  # moves the batch axis: the simulator folds time into axis 0
        def __init__(self):
            super().__init__()
            self.fc, self.q = nn.Linear(4, 4), QCFS(3)

        def forward(self, x):
            return self.q(self.fc(x)).transpose(0, 1)

    with pytest.raises(ConversionError, match="leave the batch axis 0 in place"):
        convert(_Swap())

    class _Norm(nn.Module):  # a LayerNorm outside an Analog stage
        def __init__(self):
            super().__init__()
            self.fc, self.q, self.norm = nn.Linear(4, 4), QCFS(3), nn.LayerNorm(4)

        def forward(self, x):
            return self.norm(self.q(self.fc(x)))

    with pytest.raises(ConversionError, match=r"'norm' \(LayerNorm\).*snnconv.layers.Analog"):
        convert(_Norm(), method="bitserial")


# --- the spiking/analog boundary ----------------------------------------------------------------------------


def test_boundary_of_vit_tiny():
    ann = randomize(create("vit_tiny", in_channels=1, input_size=16, act=make_act("qcfs", levels=7)))
    domains = {d.name: d for d in node_domains(convert(ann))}
    assert domains["blocks.0.attn"].coding == "once" and domains["blocks.0.ffn.fc1"].domain == "static"
    assert domains["blocks.0.ffn.act"].domain == "spiking" and domains["blocks.1.attn"].coding == "rate"
    assert domains["head"].domain == "per-step"
    edges = boundary_edges(list(domains.values()))
    assert ("blocks.0.add2", "blocks.1.attn", "decode: per-step → analog (rate)") in edges
    assert ("blocks.1.norm2", "blocks.1.ffn.fc1", "encode: analog → per-step") in edges
    assert len(edges) == 6  # block 1's two stages and the final norm: one decode and one encode each
    bits = node_domains(convert(ann, method="bitserial"))
    assert [d.name for d in bits if d.domain == "analog"] == [
        "blocks.0.attn", "blocks.0.norm2", "blocks.1.attn", "blocks.1.norm2", "norm"
    ]  # fmt: skip
    assert all(d.coding == "sum" for d in bits if d.domain == "analog")
    text = inspect_model(convert(ann, method="bitserial"))
    assert "spiking/analog boundary: 2 spiking, 5 analog" in text
    assert "pos → blocks.0.attn  (decode: per-step → analog (sum))" in text
    assert "spiking/analog boundary" not in inspect_model(create("small_cnn", input_size=16))
