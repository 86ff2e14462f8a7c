"""Conversion passes: BN folding, QCFS → IF, the ANN left untouched, clear errors for unsupported layers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconv
from helpers import randomize
from snnconv import QCFS, IFNeuron, convert, fold_bn
from snnconv.errors import ConversionError, RegistryError
from snnconv.models import create, list_models

MODELS = list_models()


def _small(name: str, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)

    return randomize(create(name, num_classes=10, in_channels=1, input_size=16, width=0.125)).to(dtype)


@pytest.mark.parametrize("name", MODELS)
def test_convert_every_model(name):
    ann = _small(name)
    before = copy.deepcopy(ann.state_dict())
    kinds_before = [type(m) for m in ann.modules()]
    snn = convert(ann)
    # the ANN is untouched
    assert [type(m) for m in ann.modules()] == kinds_before
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    # no QCFS and no BatchNorm after conv/linear left; one IF neuron per QCFS
    mods = list(snn.modules())
    assert not any(isinstance(m, QCFS) for m in mods)
    n_qcfs = sum(isinstance(m, QCFS) for m in ann.modules())
    assert len(snn.neurons()) == n_qcfs == sum(isinstance(m, IFNeuron) for m in mods)
    # neurons keep the ANN's names and thresholds
    ann_mods = dict(ann.named_modules())
    for path, neuron in snn.neurons().items():
        assert isinstance(ann_mods[path], QCFS)
        torch.testing.assert_close(neuron.threshold, ann_mods[path].theta().detach(), rtol=0, atol=0)
        assert neuron.phi == 0.5


@pytest.mark.parametrize("name", MODELS)
def test_first_layer_matches_an_independent_computation(name):
    """First spiking layer: spikes per step from the ANN's own pre-activation and a hand-written IF loop."""
    ann = _small(name, torch.float64)
    first = next(p for p, m in ann.named_modules() if isinstance(m, QCFS))
    captured = {}
    handle = ann.get_submodule(first).register_forward_hook(lambda m, i, o: captured.setdefault("z", i[0]))
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    ann(x)
    handle.remove()
    z, theta, T = captured["z"], float(ann.get_submodule(first).theta().detach()), 6
    v = torch.full_like(z, theta / 2)
    expected = []
    for _ in range(T):  # SPEC §1, written out
        v = v + z
        s = (v >= theta).double()
        v = v - s * theta
        expected.append(s.sum())
    result = snnconv.simulate(convert(ann), x, T)
    torch.testing.assert_close(result.spike_counts[first], torch.stack(expected), rtol=0, atol=0)


def test_single_hidden_layer_logits_match_hand_computation():
    torch.manual_seed(1)
    ann = nn.Sequential(nn.Linear(5, 7), QCFS(4, 1.0), nn.Linear(7, 3)).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    z = ann[0](x)
    v, acc, out = torch.full_like(z, 0.5), torch.zeros(4, 3, dtype=torch.float64), []
    for t in range(1, 9):
        v = v + z
        s = (v >= 1.0).double()
        v = v - s
        acc = acc + ann[2](s * 1.0)
        out.append(acc / t)
    logits = snnconv.simulate(convert(ann), x, 8).logits
    torch.testing.assert_close(logits, torch.stack(out), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_fold_bn_preserves_function(name):
    ann = _small(name)
    x = torch.randn(2, 1, 16, 16)
    bn = nn.modules.batchnorm._BatchNorm
    n_bn = sum(isinstance(m, bn) for m in ann.modules())  # every model but the transformer (LayerNorm) has BN
    assert n_bn > 0 or name.startswith("vit")
    folded = fold_bn(ann)
    assert not any(isinstance(m, bn) for m in folded.modules())  # every BN of the zoo follows a conv/linear
    torch.testing.assert_close(folded(x), ann(x), rtol=1e-4, atol=1e-5)
    assert sum(isinstance(m, bn) for m in ann.modules()) == n_bn  # original untouched


def test_fold_bn_keeps_bn_not_after_a_layer():
    m = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    folded = fold_bn(m)
    assert sum(isinstance(x, nn.BatchNorm1d) for x in folded.modules()) == 1
    x = torch.randn(3, 4)
    torch.testing.assert_close(folded(x), m(x), rtol=1e-5, atol=1e-6)


class _FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.relu(self.fc(x))


class _Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


@pytest.mark.parametrize(
    ("model", "pattern"),
    [
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(4), nn.MaxPool2d(2)),
            r"layer '2' \(MaxPool2d\).*average pooling",
        ),
        (
            nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
            r"layer '1' \(ReLU\).*train with QCFS.*ReLU conversion method",
        ),
        (_FunctionalRelu(), r"relu.*functional activation.*train with QCFS"),
        (nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1)), r"layer '1' \(Softmax\).*not supported"),
        (
            nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False), QCFS(4)),
            "batch statistics",
        ),
        (nn.Sequential(nn.Linear(4, 4)), "no QCFS activation"),
        (_Branchy(), "could not trace"),
    ],
)
def test_unsupported_models_get_clear_errors(model, pattern):
    with pytest.raises(ConversionError, match=pattern):
        convert(model)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(RegistryError, match=r"unknown conversion method 'nope'; valid methods: .*if"):
        convert(nn.Sequential(nn.Linear(2, 2), QCFS(2)), method="nope")


def test_softplus_channelwise_thresholds_convert_to_per_channel_neurons():
    m = nn.Sequential(nn.Conv2d(1, 3, 3), QCFS(4, 2.0, per_channel=True, channels=3, positive="softplus"))
    snn = convert(m.eval())
    (neuron,) = snn.neurons().values()
    assert neuron.threshold.shape == (3,)
    torch.testing.assert_close(neuron.threshold, torch.full((3,), 2.0), rtol=1e-6, atol=1e-6)
