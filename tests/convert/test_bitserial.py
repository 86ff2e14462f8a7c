"""Method "bitserial" (seed 001; SPEC §3): spikes are the QANN's bits, logits equal the QANN's, options, errors."""

from __future__ import annotations

import copy

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from helpers import randomize
from snnconv import QCFS, Add, IFNeuron, convert, simulate
from snnconv.convert import quantized_reference
from snnconv.convert.trace import set_module, trace
from snnconv.errors import ConversionError, SimulationError
from snnconv.functional.bitserial import bit_planes, codes_from_bits
from snnconv.layers import SpikingNeuron, make_act
from snnconv.layers.bitserial import BitIFNeuron, BitSerialNeuron
from snnconv.layers.channels import channel_view
from snnconv.models import create

# --- random networks ------------------------------------------------------------------------------------


def _act(L: int, c: int, per_channel: bool, g: torch.Generator) -> QCFS:
    q = QCFS(L, 1.0, per_channel=per_channel, channels=c if per_channel else None)
    with torch.no_grad():
        q.threshold.copy_(torch.rand(q.threshold.shape, generator=g) * 0.8 + 0.4)
    return q


class _Residual(nn.Module):
    def __init__(self, c: int, L: int, pc: bool, g: torch.Generator, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, c, 3, padding=1), nn.BatchNorm2d(c), _act(L, c, pc, g))
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), _act(L, c, pc, g),
                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))  # fmt: skip
        self.add, self.act = Add(), _act(L, c, pc, g)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    def forward(self, x):
        h = self.stem(x)
        return self.head(self.act(self.add(self.body(h), h)))


def _network(kind: str, L: int, width: int, per_channel: bool, seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    c = width
    if kind == "mlp":
        net = nn.Sequential(nn.Linear(6, c), nn.BatchNorm1d(c), _act(L, c, per_channel, g),
                            nn.Linear(c, c), _act(L, c, per_channel, g), nn.Linear(c, 3))  # fmt: skip
        shape = (6,)
    elif kind == "conv":
        net = nn.Sequential(nn.Conv2d(2, c, 3, padding=1), nn.BatchNorm2d(c), _act(L, c, per_channel, g),
                            nn.AvgPool2d(2), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c), _act(L, c, per_channel, g),
                            nn.Flatten(), nn.Linear(c * 4, 3))  # fmt: skip
        shape = (2, 8, 8)
    else:
        net, shape = _Residual(c, L, per_channel, g, 3), (2, 6, 6)
    qs = [m for m in net.modules() if isinstance(m, QCFS)]
    randomize(net, seed)
    with torch.no_grad():  # randomize() set every threshold to 1: vary them again
        for q in qs:
            q.threshold.copy_(torch.rand(q.threshold.shape, generator=g) * 0.8 + 0.4)
    return net, shape


class _Forced(SpikingNeuron):
    """Records the neuron's own spikes but sends the QANN's bits on (inputs of the next layer forced)."""

    causal = False

    def __init__(self, inner: SpikingNeuron, forced: torch.Tensor, record: dict, name: str) -> None:
        super().__init__()
        self.inner, self.forced, self.record, self.name = inner, forced, record, name

    def init_state(self, current):
        return self.inner.init_state(current)

    def scan(self, currents, state):
        spikes, state = self.inner.scan(currents, state)
        self.record[self.name] = spikes
        return self.forced.to(currents.dtype), state

    def output(self, spikes):
        return self.inner.output(spikes)


class _Replay(nn.Module):
    def __init__(self, value: torch.Tensor, record: dict, name: str) -> None:
        super().__init__()
        self.value, self.record, self.name = value, record, name

    def forward(self, z):
        self.record[self.name] = z
        return self.value


def _term_magnitudes(ann: nn.Module, x: torch.Tensor, acts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Σ|terms| of every QCFS pre-activation: the network with |W|, |b|, |BN terms| on |x| and the QANN's a."""
    gm = trace(copy.deepcopy(ann)).eval()
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for m in gm.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
                m.weight.abs_()
                if m.bias is not None:
                    m.bias.abs_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(-m.running_mean.abs())
        for name, a in acts.items():
            set_module(gm, name, _Replay(a, out, name))
        gm.recompile()
        gm(x.abs())
    return out


def _check_forced(ann: nn.Module, x: torch.Tensor, T: int) -> tuple[int, int]:
    """Layer by layer with inputs forced to the QANN's bits: spikes == bits of k (float32: ±1 near a boundary)."""
    ref = quantized_reference(ann, T).run(x)
    snn = convert(ann, method="bitserial", T=T)
    record: dict[str, torch.Tensor] = {}
    for name, neuron in snn.neurons().items():
        set_module(snn.graph, name, _Forced(neuron, bit_planes(ref.codes[name], T), record, name))
    simulate(snn, x, T)
    eps = torch.finfo(x.dtype).eps
    acts = {n: ref.codes[n] * channel_view(ref.steps[n], x.dim()) for n in ref.codes}
    mags = _term_magnitudes(ann, x, acts) if x.dtype != torch.float64 else {}
    q = dict(ann.named_modules())
    flips = near = 0
    for name, k_ref in ref.codes.items():
        k_snn = codes_from_bits(record[name])
        bad = k_snn != k_ref
        if x.dtype == torch.float64:
            assert not bool(bad.any()), f"layer {name}: {int(bad.sum())} codes differ from the QANN in float64"
            continue
        delta = channel_view(ref.steps[name], k_ref.dim())
        y = ref.pre[name] / delta + q[name].shift
        dist = (y - torch.round(y)).abs()
        bound = 8 * eps * mags[name] / delta
        assert bool(((k_snn - k_ref).abs() <= 1).all())
        assert bool((dist[bad] <= bound[bad]).all()), f"layer {name}: a flip away from a rounding boundary"
        flips, near = flips + int(bad.sum()), near + int((dist <= bound).sum())
    return flips, near


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["mlp", "conv", "residual"]), T=st.integers(1, 8), top=st.booleans(),
       width=st.integers(2, 5), per_channel=st.booleans(), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float64, torch.float32]))  # fmt: skip
def test_spikes_are_the_qann_bits_layer_by_layer(kind, T, top, width, per_channel, seed, dtype):
    L = 2 ** (T - 1) if top and T > 1 else 2**T - 1  # L = 2^(T-1): QCFS's top level reachable, needs the clamp
    ann, shape = _network(kind, L, width, per_channel, seed)
    ann = ann.to(dtype)
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 1.5
    _check_forced(ann, x, T)


def test_float32_flips_only_at_rounding_boundaries():
    """Inputs solved so that the first layer's z/Δ + 1/2 sits on integers: float32 may flip there, only there."""
    torch.manual_seed(0)
    L, T = 15, 4
    ann = nn.Sequential(nn.Linear(8, 8), QCFS(L, 1.0), nn.Linear(8, 8), QCFS(L, 1.0), nn.Linear(8, 3)).eval()
    W, b = ann[0].weight.detach().double(), ann[0].bias.detach().double()
    m = torch.randint(1, L, (64, 8)).double()
    x = torch.linalg.solve(W, ((m - 0.5) / L - b).T).T.float()  # z = (m - 1/2)Δ up to float32 rounding
    flips, near = _check_forced(ann, x, T)
    assert near > 100  # the check is exercised: many neurons lie within the float32 error bound of a boundary
    assert flips <= near


def test_forced_check_sees_varied_codes():
    ann, shape = _network("residual", 15, 4, True, 1)
    ref = quantized_reference(ann, 4).run(torch.randn(5, *shape) * 1.5)
    for codes in ref.codes.values():
        assert len(torch.unique(codes)) >= 4


# --- free running on registered models ------------------------------------------------------------------


def _model(name: str, kind: str = "qcfs", L: int = 4) -> nn.Module:
    torch.manual_seed(0)
    act = make_act(kind, levels=L, threshold=1.0)
    m = create(name, num_classes=10, in_channels=1, input_size=16, width=0.125, act=act)
    return randomize(m).double()


@pytest.mark.parametrize(("name", "kind", "L"), [("small_cnn", "qcfs", 4), ("resnet20", "qcfs", 7),
                                                 ("vgg11", "qcfs", 15), ("resnet20", "csqcfs", 8)])  # fmt: skip
@pytest.mark.parametrize("bias_split", ["first", "bn_shift"])
def test_free_running_logits_equal_the_qann(name, kind, L, bias_split):
    ann = _model(name, kind, L)
    x = torch.randn(8, 1, 16, 16, dtype=torch.float64)
    snn = convert(ann, method="bitserial", bias_split=bias_split)
    T = snn.meta["T"]
    assert T == L.bit_length()
    result = simulate(snn, x, T)
    expected = ann(x).detach()
    torch.testing.assert_close(result.logits[-1], expected, rtol=1e-9, atol=1e-9 * float(expected.abs().max()))
    ref = quantized_reference(ann).run(x)
    torch.testing.assert_close(ref.logits, expected, rtol=0, atol=0)
    for layer, codes in ref.codes.items():  # free running: spikes per step = the bits of the QANN codes
        per_step = bit_planes(codes, T).sum(dim=tuple(range(1, codes.dim() + 1)))
        torch.testing.assert_close(result.spike_counts[layer], per_step, rtol=0, atol=0)
    assert sum(float(c.sum()) for c in result.spike_counts.values()) > 0


def test_uniform_split_and_schedules():
    ann = _model("small_cnn", L=3)
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    snn = convert(ann, method="bitserial", bias_split="uniform")
    torch.testing.assert_close(simulate(snn, x, 2).logits[-1], ann(x), rtol=1e-9, atol=1e-12)
    with pytest.raises(SimulationError, match="accumulate-then-fire"):
        simulate(snn, x, 2, schedule="step")
    with pytest.raises(SimulationError, match="accumulate-then-fire"):
        simulate(snn, x, 2, chunk=1)
    with pytest.raises(SimulationError, match="fires 2 steps.*simulate with T=2"):
        simulate(snn, x, 3)


def test_the_ann_is_untouched_and_graph_contents():
    ann = _model("resnet20", L=4)
    before = copy.deepcopy(ann.state_dict())
    snn = convert(ann, method="bitserial")
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    mods = list(snn.modules())
    assert not any(isinstance(m, (QCFS, nn.BatchNorm2d)) for m in mods)
    assert all(isinstance(n, BitSerialNeuron) for n in snn.neurons().values())
    assert all(m.bias is None for m in mods if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert snn.meta["method"] == "bitserial" and snn.meta["clamped"] == list(snn.neurons())


# --- level conventions ----------------------------------------------------------------------------------


def _mlp(L: int) -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 16), QCFS(L, 1.0), nn.Linear(16, 16), QCFS(L, 1.5), nn.Linear(16, 4))
    return net.double().eval()


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5])
def test_level_conventions(T):
    x = torch.randn(64, 5, dtype=torch.float64) * 2
    # L = 2^T - 1: exactly T bits, no clamp, θ = λ·2^T/(2^T - 1)
    ann = _mlp(2**T - 1)
    snn = convert(ann, method="bitserial")
    assert snn.meta["T"] == T and snn.meta["clamped"] == []
    neuron = snn.neurons()["1"]
    torch.testing.assert_close(neuron.step_values[0] * 2, torch.tensor(2**T / (2**T - 1), dtype=torch.float64))
    torch.testing.assert_close(simulate(snn, x, T).logits[-1], ann(x), rtol=1e-12, atol=1e-12)
    # L = 2^T: QCFS's top level L is reachable → T + 1 bits and the clamp u <= λ
    ann = _mlp(2**T)
    snn = convert(ann, method="bitserial")
    assert snn.meta["T"] == T + 1 and snn.meta["clamped"] == ["1", "3"]
    assert float(snn.neurons()["3"].clamp) == 1.5
    torch.testing.assert_close(simulate(snn, x, T + 1).logits[-1], ann(x), rtol=1e-12, atol=1e-12)
    ref = quantized_reference(ann).run(x)
    assert float(ref.codes["1"].max()) == 2**T  # the top level is used
    with pytest.raises(ConversionError, match=rf"layer '1' has L={2**T} .*T={T} bits.*valid: T >= {T + 1}"):
        convert(ann, method="bitserial", T=T)
    # exact=False: fires T of its T + 1 bits, i.e. equals the T-bit re-rounded QANN
    approx = convert(ann, method="bitserial", T=T, exact=False)
    expected = quantized_reference(ann, T, exact=False).run(x).logits
    torch.testing.assert_close(simulate(approx, x, T).logits[-1], expected, rtol=1e-12, atol=1e-12)


def test_more_bits_than_needed_are_exact_with_the_clamp():
    ann = _mlp(3)
    x = torch.randn(32, 5, dtype=torch.float64)
    snn = convert(ann, method="bitserial", T=5)
    assert snn.meta["clamped"] == ["1", "3"]
    torch.testing.assert_close(simulate(snn, x, 5).logits[-1], ann(x), rtol=1e-12, atol=1e-12)


def test_invalid_options_are_explained():
    ann = _mlp(3)
    with pytest.raises(ConversionError, match="steps must be an integer in 1..T=2"):
        convert(ann, method="bitserial", steps=3)
    with pytest.raises(ConversionError, match="bias_split must be"):
        convert(ann, method="bitserial", bias_split="last")
    with pytest.raises(ConversionError, match="rounding must be"):
        convert(ann, method="bitserial", rounding="nearest")
    with pytest.raises(ConversionError, match="unknown ablation"):
        convert(ann, method="bitserial", ablation="neuron")
    with pytest.raises(ConversionError, match=r"layer '2' \(MaxPool2d\).*average pooling"):
        convert(nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(3), nn.MaxPool2d(2)), method="bitserial")

    class _Const(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.q = nn.Linear(2, 2), QCFS(3)

        def forward(self, x):
            return self.q(self.fc(x) + 0.5)

    with pytest.raises(ConversionError, match="adds a constant"):
        convert(_Const(), method="bitserial")


# --- fewer steps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [7, 8])
def test_fewer_steps(L):
    ann = _model("small_cnn", L=L)
    x = torch.randn(16, 1, 16, 16, dtype=torch.float64)
    T = L.bit_length()
    full = quantized_reference(ann).run(x)
    first = next(iter(full.codes))
    for s in range(1, T):
        unbiased = quantized_reference(ann, steps=s).run(x)
        trunc = quantized_reference(ann, steps=s, rounding="truncate").run(x)
        for rounding, ref in (("unbiased", unbiased), ("truncate", trunc)):
            snn = convert(ann, method="bitserial", steps=s, rounding=rounding)
            r = simulate(snn, x, s)
            torch.testing.assert_close(r.logits[-1], ref.logits, rtol=1e-9, atol=1e-9)
        # unbiased = the s-bit QANN: k' = clip(floor(z/Δ' + 1/2), 0, 2^s - 1) (and k' <= λ/Δ' with the clamp)
        z, lam = full.pre[first], float(ann.get_submodule(first).theta().detach())
        d = lam / L * 2 ** (T - s)
        kmax = min(2**s - 1, int(lam / d)) if L & (L - 1) == 0 else 2**s - 1
        torch.testing.assert_close(unbiased.codes[first], torch.clamp(torch.floor(z / d + 0.5), 0, kmax))
        # truncation keeps the s most significant bits of the full code: biased low by ~Δ'/2
        torch.testing.assert_close(
            trunc.codes[first], torch.div(full.codes[first], 2 ** (T - s), rounding_mode="floor")
        )
        a = full.codes[first] * lam / L
        err_trunc = (trunc.codes[first] * d - a).mean()
        err_unb = (unbiased.codes[first] * d - a).mean()
        assert err_trunc < 0 and abs(err_unb) < abs(err_trunc)


# --- ablations (seed 001 Table 4) -----------------------------------------------------------------------


def _agreement(snn, ann, x, T) -> float:
    """Fraction of inputs whose SNN logits equal the QANN's (to 1e-9)."""
    out, ref = simulate(snn, x, T).logits[-1], ann(x).detach()
    ok = ((out - ref).abs() <= 1e-9 * ref.abs().max()).all(dim=-1)
    return float(ok.double().mean())


@pytest.mark.parametrize(("name", "L"), [("small_cnn", 3), ("resnet20", 4), ("small_cnn", 15)])
def test_each_ablation_changes_results_and_never_helps(name, L):
    ann = _model(name, L=L)
    x = torch.randn(8, 1, 16, 16, dtype=torch.float64)
    T = L.bit_length()
    full = _agreement(convert(ann, method="bitserial"), ann, x, T)
    assert full == 1.0
    for off in ("left_shift", "bias_shift", "modified_neuron"):
        by_name = convert(ann, method="bitserial", ablation=off)
        by_flag = convert(ann, method="bitserial", **{off: False})
        assert by_name.meta[off] is False and by_flag.meta[off] is False
        torch.testing.assert_close(simulate(by_name, x, T).logits, simulate(by_flag, x, T).logits, rtol=0, atol=0)
        assert _agreement(by_name, ann, x, T) < full, off


def test_ablation_semantics():
    ann = _model("small_cnn", L=3)
    x = torch.randn(8, 1, 16, 16, dtype=torch.float64)
    # left shift off: equal spike values λ/T, so with T = L steps it is the L-level QCFS again (rate code)
    snn = convert(ann, method="bitserial", T=3, left_shift=False)
    torch.testing.assert_close(simulate(snn, x, 3).logits[-1], ann(x), rtol=1e-9, atol=1e-12)
    # modified neuron off: IF neurons whose threshold at step t is the spike value w(t); with equal values λ/T
    # (left shift off too) they are exactly snnconv.IFNeuron(λ/T, φ) on the same currents
    snn = convert(ann, method="bitserial", modified_neuron=False)
    assert all(isinstance(n, BitIFNeuron) for n in snn.neurons().values())
    snn = convert(ann, method="bitserial", T=3, modified_neuron=False, left_shift=False)
    result = simulate(snn, x, 3)
    for name in list(snn.neurons()):
        lam = ann.get_submodule(name).theta().detach()
        set_module(snn.graph, name, IFNeuron(lam / 3, phi=0.5).double())
        snn.graph.get_submodule(name).threshold = lam / 3
    torch.testing.assert_close(simulate(snn, x, 3, chunk=None).logits, result.logits, rtol=0, atol=0)
    # bias shift off: the full constant at every step, Σ_t c(t) = T·c (here only the output layer has one)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), QCFS(3, 1.0), nn.Linear(4, 2)).double().eval()
    xs = torch.randn(5, 3, dtype=torch.float64)
    plain = simulate(convert(net, method="bitserial"), xs, 2).logits[-1]
    noshift = simulate(convert(net, method="bitserial", bias_shift=False), xs, 2).logits[-1]
    torch.testing.assert_close(noshift - plain, (2 - 1) * net[2].bias.detach().expand(5, 2), rtol=0, atol=1e-12)


# --- more steps than bits (seed 001 Tables 1-2; SPEC §3): refine below the LSB, or pad ---------------------------


def _one_neuron() -> nn.Module:
    """z = x through one QCFS with L = 3, λ = 3 (Δ = 1, exact T = 2 bits, θ = 4), read out as a."""
    first, last = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        first.weight.fill_(1.0)
        last.weight.fill_(1.0)
    return nn.Sequential(first, QCFS(3, 3.0), last).double().eval()


def _neuron_spikes(snn, x: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the neuron's 0/1 spikes [T, B]): its currents are z = x at t = 1 and 0 after (bias_split first)."""
    neuron = next(iter(snn.neurons().values()))
    currents = torch.zeros(T, *x.shape, dtype=x.dtype)
    currents[0] = x
    return simulate(snn, x, T).logits[-1], neuron.scan(currents, None)[0].reshape(T, -1)


def test_refine_fires_bits_below_the_lsb_hand_computed():
    ann, x = _one_neuron(), torch.tensor([[2.3], [3.7], [0.3]], dtype=torch.float64)
    # exact T = 2: w = 2, 1 and u = z + Δ/2 → k = 2, 3 (saturated: the clip at λ = 3), 0
    assert simulate(convert(ann, method="bitserial"), x, 2).logits[-1].flatten().tolist() == [2.0, 3.0, 0.0]
    # refine to T' = 4: w = 2, 1, 0.5, 0.25 (θ = 4 kept), u = z + Δ'/2 with Δ' = 0.25, capped at λ + Δ'/2 = 3.125:
    # 2.425 → 1001 (2.25); 3.825 → 3.125 → 1100 (3 = λ, not 3.75); 0.425 → 0001 (0.25)
    refine = convert(ann, method="bitserial", steps=4, extra_steps="refine")
    logits, spikes = _neuron_spikes(refine, x, 4)
    assert logits.flatten().tolist() == [2.25, 3.0, 0.25]
    assert spikes.T.tolist() == [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1]]
    assert refine.meta["T"] == 2 and refine.meta["steps"] == 4 and refine.meta["extra_steps"] == "refine"
    # pad to T' = 4: θ = 16, w = 8, 4, 2, 1, u = z + 1/2 capped at 3.5: silent leading bits, SNN == QANN
    pad = convert(ann, method="bitserial", steps=4, extra_steps="pad")
    logits, spikes = _neuron_spikes(pad, x, 4)
    assert logits.flatten().tolist() == [2.0, 3.0, 0.0]
    assert spikes.T.tolist() == [[0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert pad.meta["T"] == 4 and pad.meta["steps"] == 4


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1.0, 4.0, allow_nan=False, width=32), min_size=1, max_size=16), st.integers(3, 10))
def test_refine_approaches_the_clipped_activation(values, steps):
    ann, x = _one_neuron(), torch.tensor(values, dtype=torch.float64).view(-1, 1)
    snn = convert(ann, method="bitserial", steps=steps, extra_steps="refine")
    got = simulate(snn, x, steps).logits[-1]
    delta = 2.0 ** (2 - steps)  # Δ' = θ·2^-T' with θ = 4
    assert bool(((got - x.clamp(0, 3)).abs() <= delta / 2 + 1e-12).all())  # within half a refined step of clip(z)
    torch.testing.assert_close(got, quantized_reference(ann, steps=steps, extra_steps="refine")(x), rtol=0, atol=0)


def test_refine_equals_its_reference_on_random_networks():
    ann, shape = _network("conv", 7, 4, True, 3)
    ann, x = ann.double().eval(), torch.randn(16, *shape, dtype=torch.float64)
    for steps in (4, 5, 7):  # exact T = 3
        snn = convert(ann, method="bitserial", steps=steps, extra_steps="refine")
        ref = quantized_reference(ann, steps=steps, extra_steps="refine")
        torch.testing.assert_close(simulate(snn, x, steps).logits[-1], ref(x), rtol=1e-12, atol=1e-12)
        pad = convert(ann, method="bitserial", steps=steps, extra_steps="pad")
        torch.testing.assert_close(simulate(pad, x, steps).logits[-1], ann(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ConversionError, match="extra_steps must be one of refine, pad, got 'zeros'"):
        convert(ann, method="bitserial", steps=5, extra_steps="zeros")
    with pytest.raises(ConversionError, match="extra_steps='refine'"):
        convert(ann, method="bitserial", steps=5)  # more steps than bits: name the rule
