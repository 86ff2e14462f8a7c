"""Export of QAT models to Ca-LIF SNNs (seed 003 / SPEC §5)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from snnconv import convert, simulate
from snnconv.errors import ConversionError
from snnconv.layers.calif import CalifNeuron
from snnconv.qat import fake_quantizers, freeze, prepare_qat, record_codes, train_qat

W_SCALE = 2.0**-5


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.r2(self.c2(self.r1(self.c1(x))) + x)


def exact_net(seed: int, residual: bool) -> tuple[nn.Module, torch.Tensor]:
    """A random QAT net whose QANN is exact in float (power-of-two scales, integer weights, no bias)."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2)]
    layers += [Residual(4)] if residual else [nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.ReLU()]
    layers += [nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data = torch.randint(-12, 13, m.weight.shape).float() * W_SCALE
    x = torch.rand(6, 1, 8, 8)
    q = prepare_qat(model, x)
    with torch.no_grad():
        for _ in range(3):
            q(torch.rand(16, 1, 8, 8))
    freeze(q)
    for name, m in q.named_modules():
        if name.endswith("weight_fake_quant"):
            m.scale.fill_(W_SCALE)
    return q, x


def neuron_totals(snn, x: torch.Tensor, T: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    totals: list[torch.Tensor] = []
    for mod in snn.graph.modules():
        if isinstance(mod, CalifNeuron):
            orig = mod.scan_values

            def scan_values(cur, state, orig=orig):
                values, state = orig(cur, state)
                totals.append(values.sum(0))
                return values, state

            mod.scan_values = scan_values
    return simulate(snn, x, T).logits[-1], totals


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), residual=st.booleans(), order=st.sampled_from(["even", "first", "last", "random"]))
def test_signed_counts_equal_qann_codes_for_any_spike_order(seed: int, residual: bool, order: str) -> None:
    q, x = exact_net(seed % 7, residual)
    out, codes = record_codes(q, x)
    T = 128  # >= the largest code (127): one input spike per step
    snn = convert(q, method="calif", T=T, order=order, seed=seed, max_spikes_per_step=None)
    logits, totals = neuron_totals(snn, x, T)
    hidden = [c for name, c in codes.items() if name != "activation_post_process_0"]
    assert len(totals) == len(hidden)
    for got, want in zip(totals, hidden, strict=True):
        assert torch.equal(got.reshape(want.shape), want)
    torch.testing.assert_close(logits, out, rtol=0, atol=1e-6)


def test_neuron_parameters_follow_eq5() -> None:
    q, x = exact_net(0, False)
    snn = convert(q, method="calif", T=128)
    neurons = list(snn.neurons().values())
    fqs = fake_quantizers(q)
    s_x, s_y = float(fqs["activation_post_process_0"].scale), float(fqs["activation_post_process_1"].scale)
    first = neurons[0]
    assert float(first.threshold) == pytest.approx(s_y / (W_SCALE * s_x))  # V_th = S_y/(S_w·S_x)
    assert first.lo == 0 and first.hi == 127
    assert float(neurons[1].threshold) == 4.0 and neurons[1].lo == -127  # 2×2 avg pool: V_th = p², no gating
    assert snn.meta["method"] == "calif" and snn.meta["T"] == 128


def test_leak_from_bias_and_bn_folding() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    q = prepare_qat(model, torch.rand(4, 1, 8, 8))
    with torch.no_grad():
        for _ in range(3):
            q(torch.rand(32, 1, 8, 8))
    freeze(q)
    x = torch.rand(8, 1, 8, 8)
    out, codes = record_codes(q, x)
    snn = convert(q, method="calif", T=128, max_spikes_per_step=None)
    neuron = next(iter(snn.neurons().values()))
    assert neuron.bias.shape == (4,) and torch.allclose(neuron.leak(128) * 128, -neuron.bias)
    logits, totals = neuron_totals(snn, x, 128)
    want = codes["activation_post_process_1"]
    assert (totals[0].reshape(want.shape) != want).float().mean() < 1e-3  # float noise at exact ties only
    torch.testing.assert_close(
        logits, out, rtol=0, atol=2 * float(fake_quantizers(q)["activation_post_process_3"].scale)
    )


def test_refuses_nonzero_zero_point() -> None:
    q, _ = exact_net(0, False)
    fake_quantizers(q)["activation_post_process_1"].zero_point.fill_(3)
    with pytest.raises(ConversionError, match="zero point"):
        convert(q, method="calif")


def test_refuses_max_pooling_and_unsupported_ops() -> None:
    x = torch.rand(4, 1, 8, 8)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3))
    with pytest.raises(ConversionError, match="max pooling"):
        convert(prepare_qat(model, x), method="calif")
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(144, 3))
    with pytest.raises(ConversionError, match="not supported"):
        convert(prepare_qat(model, x), method="calif")
    with pytest.raises(ConversionError, match="prepare_qat"):
        convert(nn.Linear(2, 2), method="calif")


@pytest.mark.slow
def test_digits_qat_export_matches_predictions() -> None:
    from snnconv.data.digits import load_digits_split

    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = load_digits_split(True), load_digits_split(False)
    xtr, xte = xtr.float() / 255, xte.float() / 255
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip
    q = train_qat(prepare_qat(model, xtr[:8]), x=xtr, y=ytr, epochs=4, lr=0.1, freeze_observer=3)
    with torch.no_grad():
        qann = q(xte).argmax(1)
    assert (qann == yte).float().mean() > 0.85
    snn = convert(q, method="calif", T=128, max_spikes_per_step=None)
    pred = simulate(snn, xte, 128).logits[-1].argmax(1)
    agreement = (pred == qann).float().mean().item()
    print(f"digits: QANN acc {(qann == yte).float().mean():.4f}, SNN acc {(pred == yte).float().mean():.4f}, "
          f"agreement {agreement:.4f}")  # fmt: skip
    assert agreement >= 0.995


def test_one_spike_per_step_is_the_default_and_approaches_the_qann_as_T_grows() -> None:
    """Seed 003 §3.2 / Table 3: the seed's neuron sends at most one spike per step (plus one rounding spike), so
    a short window clips large codes and the logits move toward the QAT model's as T grows; bursts equal it."""
    q, x = exact_net(2, True)
    out, _ = record_codes(q, x)
    errors = {}
    for T in (8, 32, 128):
        snn = convert(q, method="calif", T=T)
        assert snn.meta["max_spikes_per_step"] == 1
        assert all(n.max_spikes_per_step == 1 for n in snn.neurons().values())
        steps: list[torch.Tensor] = []
        for mod in snn.graph.modules():
            if isinstance(mod, CalifNeuron):
                orig = mod.scan_values

                def scan_values(cur, state, orig=orig, steps=steps):
                    values, state = orig(cur, state)
                    steps.append(values)
                    return values, state

                mod.scan_values = scan_values
        errors[T] = float((simulate(snn, x, T).logits[-1] - out).abs().mean())
        assert steps and all(bool((v[:-1].abs() <= 1).all()) and bool((v[-1].abs() <= 2).all()) for v in steps)
    assert errors[8] > errors[32] > errors[128] and errors[128] < 0.25 * errors[8]
    burst = convert(q, method="calif", T=8, max_spikes_per_step=None)
    torch.testing.assert_close(simulate(burst, x, 8).logits[-1], out, rtol=0, atol=1e-6)
    with pytest.raises(ConversionError, match="max_spikes_per_step"):
        convert(q, method="calif", max_spikes_per_step=0)
