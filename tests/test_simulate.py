"""The simulation engine: schedules agree bit for bit, chunking, spike statistics, input validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import randomize
from snnconv import QCFS, IFNeuron, SpikingNetwork, convert, make_act, simulate
from snnconv.convert import trace
from snnconv.errors import SimulationError
from snnconv.layers import TimeAware
from snnconv.models import create, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_by_layer_equals_step_by_step(name, dtype):
    torch.manual_seed(0)
    ann = randomize(create(name, num_classes=10, in_channels=3, input_size=16, width=0.125)).to(dtype)
    snn = convert(ann)
    x = torch.randn(3, 3, 16, 16, dtype=dtype)
    layer = simulate(snn, x, 7, schedule="layer", chunk=None)  # all 7 steps folded into the batch
    step = simulate(snn, x, 7, schedule="step")
    chunked = simulate(snn, x, 7, schedule="layer", chunk=3)
    auto = simulate(snn, x, 7, fold_bytes=4096)  # auto chunk from a tiny budget: 1 step per chunk
    for other in (step, chunked, auto):
        torch.testing.assert_close(other.logits, layer.logits, rtol=0, atol=0)
        assert other.spike_counts.keys() == layer.spike_counts.keys()
        for k in layer.spike_counts:
            torch.testing.assert_close(other.spike_counts[k], layer.spike_counts[k], rtol=0, atol=0)
    assert layer.neurons == step.neurons
    assert sum(c.sum() for c in layer.spike_counts.values()) > 0


@pytest.mark.parametrize("name", ["small_cnn", "resnet20", "mlp"])
def test_channelwise_thresholds_schedules_agree(name):
    torch.manual_seed(0)
    ann = randomize(create(name, in_channels=3, input_size=16, width=0.125, act=make_act("csqcfs", levels=4)))
    with torch.no_grad():  # distinct per-channel thresholds
        for m in ann.modules():
            if isinstance(m, QCFS):
                m.threshold.uniform_(0.0, 2.0)
    snn = convert(ann)
    assert any(n.threshold.dim() == 1 for n in snn.neurons().values())
    x = torch.randn(3, 3, 16, 16)
    layer, step = simulate(snn, x, 5), simulate(snn, x, 5, schedule="step")
    torch.testing.assert_close(step.logits, layer.logits, rtol=0, atol=0)
    assert layer.spike_counts.keys() == step.spike_counts.keys()
    assert all(torch.equal(layer.spike_counts[k], step.spike_counts[k]) for k in layer.spike_counts)


def _tiny():
    torch.manual_seed(0)
    return randomize(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), QCFS(4), nn.AvgPool2d(2),
                                   nn.Flatten(), nn.Linear(16, 5), QCFS(4), nn.Linear(5, 3)))  # fmt: skip


def test_result_shapes_and_rates():
    snn = convert(_tiny())
    x = torch.randn(6, 1, 4, 4)
    r = simulate(snn, x, 5)
    assert r.logits.shape == (5, 6, 3) and r.T == 5 and r.batch_size == 6
    assert r.neurons == {"2": 4 * 4 * 4, "6": 5}
    rates = r.spike_rates()
    for k, c in r.spike_counts.items():
        assert c.shape == (5,)
        assert rates[k] == pytest.approx(float(c.sum()) / (r.neurons[k] * 6 * 5))
        assert 0.0 <= rates[k] <= 1.0
    assert r.correct(torch.zeros(6, dtype=torch.long)).shape == (5,)
    # prefix property: simulating T=3 gives the first 3 steps of T=5
    torch.testing.assert_close(simulate(snn, x, 3).logits, r.logits[:3], rtol=0, atol=0)


def test_first_layer_current_is_computed_once(monkeypatch):
    snn = convert(_tiny())
    conv = snn.graph.get_submodule("0")
    calls = []
    conv.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    simulate(snn, torch.randn(2, 1, 4, 4), 8)
    assert calls == [2]  # once, on the batch of 2, not on 8·2
    calls.clear()
    simulate(snn, torch.randn(2, 1, 4, 4), 8, schedule="step")
    assert calls == [2]


@pytest.mark.parametrize(
    ("x", "T", "kw", "pattern"),
    [
        (torch.full((2, 1, 4, 4), float("nan")), 4, {}, "non-finite"),
        (torch.randn(2, 1, 4, 4), 0, {}, "T must be a positive integer"),
        (torch.randn(2, 1, 4, 4), 2.0, {}, "T must be a positive integer"),
        (torch.randn(2, 1, 4, 4).double(), 4, {}, "float64.*network is torch.float32"),
        (torch.randint(0, 3, (2, 1, 4, 4)), 4, {}, "floating-point"),
        (torch.randn(2, 3, 4, 4), 4, {}, r"layer '0' failed"),
        (torch.randn(4), 4, {}, r"batch \[B, \.\.\.\]"),
        (torch.randn(2, 1, 4, 4), 4, {"schedule": "async"}, "schedule must be one of layer, step"),
        (torch.randn(2, 1, 4, 4), 4, {"chunk": 0}, "chunk must be"),
    ],
)
def test_bad_input_is_explained(x, T, kw, pattern):
    with pytest.raises(SimulationError, match=pattern):
        simulate(convert(_tiny()), x, T, **kw)


class _Ramp(TimeAware):
    """A step-dependent layer: multiplies step t (1-based) by t."""

    def seq(self, x, start, T):
        t = torch.arange(start + 1, start + x.shape[0] + 1, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return x * t


def test_time_aware_layer_on_a_static_input_is_not_cached_across_chunks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), _Ramp(), IFNeuron(1.0), nn.Linear(6, 3)).eval()
    snn = SpikingNetwork(trace(model), {"method": "hand-built"})
    x = torch.randn(5, 4)
    full = simulate(snn, x, 6, chunk=None)
    for kw in ({"chunk": 1}, {"chunk": 4}, {"schedule": "step"}, {"fold_bytes": 1}):
        torch.testing.assert_close(simulate(snn, x, 6, **kw).logits, full.logits, rtol=0, atol=0)


class _DoubleCount(IFNeuron):
    def scan_counted(self, currents, state):  # what the engine calls in both schedules
        values, state, counts = super().scan_counted(currents, state)
        return values, state, 2 * counts


def test_engine_counts_spikes_with_the_neurons_own_rule():
    """Multi-spike neurons (Ca-LIF) count |value| spikes per step; the engine asks the neuron, not a fixed rule."""
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    plain = SpikingNetwork(trace(nn.Sequential(nn.Linear(5, 6), IFNeuron(0.5), nn.Linear(6, 2))), {})
    double = SpikingNetwork(trace(nn.Sequential(nn.Linear(5, 6), _DoubleCount(0.5), nn.Linear(6, 2))), {})
    double.load_state_dict(plain.state_dict())
    a, b = simulate(plain, x, 5), simulate(double, x, 5)
    torch.testing.assert_close(b.spike_counts["1"], 2 * a.spike_counts["1"], rtol=0, atol=0)
    c = simulate(double, x, 5, schedule="step")
    torch.testing.assert_close(c.spike_counts["1"], 2 * a.spike_counts["1"], rtol=0, atol=0)
    assert float(a.spike_counts["1"].sum()) > 0


@pytest.mark.parametrize("name", ["vgg11", "resnet20"])
@pytest.mark.parametrize("layout", ["auto", "nchw", "channels_last"])
def test_auto_chunking_stages_and_layouts_keep_the_schedules_identical(name, layout):
    """``chunk="auto"`` splits the graph into stages that fold more steps towards the output (issue 8); every
    layout gives the same result in both schedules and every chunking."""
    import importlib

    engine = importlib.import_module("snnconv.simulate")
    torch.manual_seed(0)
    snn = convert(randomize(create(name, num_classes=10, in_channels=3, input_size=16, width=0.25)))
    x = torch.randn(3, 3, 16, 16)
    plans = []
    real = engine._plan_stages
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "_plan_stages", lambda *a: plans.append(real(*a)) or plans[-1])
        auto = simulate(snn, x, 11, fold_bytes=8 * 1024, layout=layout)
    (stages,) = plans
    chunks = [s.chunk for s in stages]
    assert len(stages) > 1 and chunks == sorted(set(chunks))
    assert [n for s in stages for n in s.nodes] == list(snn.graph.graph.nodes)
    full = simulate(snn, x, 11, chunk=None, layout=layout)
    step = simulate(snn, x, 11, schedule="step", layout=layout)
    for other in (auto, step):
        torch.testing.assert_close(other.logits, full.logits, rtol=0, atol=0)
        for k in full.spike_counts:
            torch.testing.assert_close(other.spike_counts[k], full.spike_counts[k], rtol=0, atol=0)
    # layouts differ only in the convolutions' float rounding
    torch.testing.assert_close(full.logits, simulate(snn, x, 11, chunk=None, layout="nchw").logits,
                               rtol=0, atol=0.05)  # fmt: skip


@pytest.mark.parametrize("avx512", [False, True])
def test_auto_layout_follows_the_cpu(monkeypatch, avx512):
    """``layout="auto"``: channels-last for every 2-D conv on CPUs without AVX-512, up to 128 input channels on
    CPUs with it (``resolve_layout``, issue 8); the same bits as the layout it resolves to."""
    import importlib

    engine = importlib.import_module("snnconv.simulate")
    monkeypatch.setattr(engine, "_cpu_has_avx512", lambda: avx512)
    assert engine.resolve_layout("auto", torch.device("cpu")) == ("auto" if avx512 else "channels_last")
    assert engine.resolve_layout("auto", torch.device("cuda")) == "auto"  # GPUs: unchanged
    assert engine.resolve_layout("nchw", torch.device("cpu")) == "nchw"
    torch.manual_seed(0)
    snn = convert(randomize(create("vgg11", num_classes=10, in_channels=3, input_size=32, width=0.5)))
    seen: list[tuple[int, bool]] = []
    for mod in snn.modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_pre_hook(lambda m, a: seen.append(
                (m.in_channels, a[0].is_contiguous(memory_format=torch.channels_last))))  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    auto = simulate(snn, x, 3, schedule="step")
    wide = [cl for c, cl in seen if c > engine.CHANNELS_LAST_MAX_IN]
    assert wide and all(cl for c, cl in seen if c <= engine.CHANNELS_LAST_MAX_IN)
    assert all(wide) if not avx512 else not any(wide)
    explicit = simulate(snn, x, 3, schedule="step", layout="channels_last")
    if not avx512:
        torch.testing.assert_close(auto.logits, explicit.logits, rtol=0, atol=0)


def test_bad_layout_is_explained():
    with pytest.raises(SimulationError, match="layout must be one of auto, nchw, channels_last"):
        simulate(convert(_tiny()), torch.randn(2, 1, 4, 4), 4, layout="nhwc")


def _no_donation(monkeypatch):
    """The engine without its in-place paths (neurons overwriting currents, additions into an operand)."""
    import importlib

    engine = importlib.import_module("snnconv.simulate")  # the module (the package exports the function)
    monkeypatch.setattr(engine, "_owned", lambda program, producer: False)


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "small_cnn", "mlp"])
@pytest.mark.parametrize("schedule", ["layer", "step"])
def test_in_place_paths_change_nothing(name, schedule, monkeypatch):
    """Writing outputs over owned values (issue 8) gives bit-identical logits and counts to allocating."""
    torch.manual_seed(0)
    snn = convert(randomize(create(name, num_classes=10, in_channels=3, input_size=16, width=0.125)))
    x = torch.randn(3, 3, 16, 16)
    fast = simulate(snn, x, 6, schedule=schedule, fold_bytes=2**14)
    _no_donation(monkeypatch)
    plain = simulate(snn, x, 6, schedule=schedule, fold_bytes=2**14)
    torch.testing.assert_close(fast.logits, plain.logits, rtol=0, atol=0)
    assert all(torch.equal(fast.spike_counts[k], plain.spike_counts[k]) for k in plain.spike_counts)


def test_in_place_paths_respect_hooks_and_shared_values(monkeypatch):
    """A forward hook that keeps a layer's output sees the currents, not spikes written over them; a value read by
    two layers (or through a view) is never overwritten."""
    from snnconv.layers.add import Add

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act1 = nn.Linear(6, 6), QCFS(4, threshold=1.0)
            self.fc2, self.act2 = nn.Linear(6, 6), QCFS(4, threshold=1.0)
            self.fc3, self.act3, self.act4 = nn.Linear(6, 6), QCFS(4, threshold=0.5), QCFS(4, threshold=0.7)
            self.add, self.out = Add(), nn.Linear(6, 3)

        def forward(self, x):
            s = self.act1(self.fc1(x))
            h = self.fc2(s)  # hooked below: act2 must not write over it
            u = self.fc3(s)  # read by the addition and, through a view, by act3: never overwritten
            y = self.add(self.act2(h), u)
            return self.out(self.act4(y) + self.act3(u.view(u.shape)))

    torch.manual_seed(0)
    snn = convert(Net())
    x = torch.randn(4, 6) * 2
    T = 5
    kept: list[torch.Tensor] = []
    fc2 = snn.graph.get_submodule("fc2")
    handle = fc2.register_forward_hook(lambda m, i, o: kept.append(o))
    hooked = simulate(snn, x, T, chunk=None)
    handle.remove()
    fast = simulate(snn, x, T, chunk=None)
    _no_donation(monkeypatch)
    plain = simulate(snn, x, T, chunk=None)
    torch.testing.assert_close(hooked.logits, plain.logits, rtol=0, atol=0)
    torch.testing.assert_close(fast.logits, plain.logits, rtol=0, atol=0)
    act1 = snn.graph.get_submodule("act1")
    cur = snn.graph.get_submodule("fc1")(x).expand(T, 4, 6).clone()
    spikes_in, _, _ = act1.scan_counted(cur, act1.init_state(cur[0]))
    assert len(kept) == 1 and torch.equal(kept[0], fc2(spikes_in.reshape(T * 4, 6)))
    assert float(plain.spike_counts["act2"].sum()) > 0 and float(plain.spike_counts["act3"].sum()) > 0


def test_in_place_addition_still_runs_pre_hooks():
    """A forward pre-hook on a residual Add (or a global one) sees and may change its inputs: the in-place add is
    not used then, and the result is what calling the module gives."""
    from snnconv.layers.add import Add

    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc0, self.act0 = nn.Linear(5, 5), QCFS(4, threshold=1.0)
            self.fc1, self.fc2, self.add = nn.Linear(5, 5), nn.Linear(5, 5), Add()
            self.act, self.out = QCFS(4, threshold=0.8), nn.Linear(5, 2)

        def forward(self, x):
            s = self.act0(self.fc0(x))
            return self.out(self.act(self.add(self.fc1(s), self.fc2(s))))

    torch.manual_seed(0)
    snn = convert(Res())
    x = torch.randn(3, 5) * 2
    plain = simulate(snn, x, 4)
    add = snn.graph.get_submodule("add")
    calls = []
    handle = add.register_forward_pre_hook(lambda m, args: calls.append(1) or (args[0] * 0, args[1]))
    hooked = simulate(snn, x, 4)
    handle.remove()
    assert calls and not torch.equal(hooked.logits, plain.logits)  # the hook ran and changed the input
    zeroed = simulate(snn, x, 4)  # hooks gone: back to the plain result
    torch.testing.assert_close(zeroed.logits, plain.logits, rtol=0, atol=0)


def test_auto_plan_reuses_the_sizes_of_an_earlier_call_and_notices_changes():
    """The sizes ``chunk="auto"`` plans from are measured on step 1 alone the first time a network sees an input
    shape; later calls fold step 1 with the others (issue 8), with bit-identical results, and measure again for
    another shape or once a module of the graph was replaced."""
    import copy
    import importlib

    engine = importlib.import_module("snnconv.simulate")
    torch.manual_seed(0)
    snn = convert(randomize(create("resnet20", num_classes=10, in_channels=3, input_size=16, width=0.25)))
    x = torch.randn(3, 3, 16, 16)
    planned: list[int] = []  # the number of steps each plan covers: T - 1 after a measuring step, else T
    real = engine._plan_stages
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "_plan_stages", lambda p, sizes, fb, n: planned.append(n) or real(p, sizes, fb, n))
        runs = [simulate(snn, x, 7, fold_bytes=8 * 1024) for _ in range(3)]
        assert planned == [6, 7, 7]
        simulate(snn, x[:2], 7, fold_bytes=8 * 1024)
        assert planned[-1] == 6  # another batch size: measured anew
        simulate(snn, x, 7, fold_bytes=8 * 1024)
        assert planned[-1] == 7  # the first shape is still known
        conv = next(n.target for n in snn.graph.graph.nodes if n.op == "call_module"
                    and isinstance(snn.graph.get_submodule(n.target), nn.Conv2d))  # fmt: skip
        snn.graph.set_submodule(conv, copy.deepcopy(snn.graph.get_submodule(conv)))
        runs.append(simulate(snn, x, 7, fold_bytes=8 * 1024))
        assert planned[-1] == 6  # a replaced module: measured anew
    full = simulate(snn, x, 7, chunk=None)
    for run in runs:
        torch.testing.assert_close(run.logits, full.logits, rtol=0, atol=0)
        assert all(torch.equal(run.spike_counts[k], full.spike_counts[k]) for k in full.spike_counts)


def test_a_threshold_edited_after_a_run_is_still_refused():
    """``simulate`` checks the thresholds on every call (in place, through ``.data`` or replaced)."""
    snn = convert(_tiny())
    x = torch.randn(2, 1, 4, 4)
    simulate(snn, x, 4)
    neuron = next(iter(snn.neurons().values()))
    for edit in (lambda: neuron.threshold.data.fill_(-1.0), lambda: neuron.threshold.fill_(float("nan")),
                 lambda: setattr(neuron, "threshold", torch.full_like(neuron.threshold, float("inf")))):  # fmt: skip
        with torch.no_grad():
            edit()
        with pytest.raises(SimulationError, match="not finite and > 0"):
            simulate(snn, x, 4)
        with torch.no_grad():
            neuron.threshold = torch.ones_like(neuron.threshold)
        simulate(snn, x, 4)
