"""Conversion-error decomposition (seed 004 §3): hand-computed unevenness, constant inputs, exact identities."""

import pytest
import torch
from torch import nn

from helpers import randomize
from snnconv import QCFS, IFNeuron, convert, simulate
from snnconv.analysis import constant_response, decompose_layer, error_decomposition, record_neurons
from snnconv.functional.qcfs import qcfs
from snnconv.models import create


def _terms(currents, z, levels=5):
    neuron = IFNeuron(1.0)
    I = torch.tensor(currents, dtype=torch.float64).view(-1, 1)
    z = torch.tensor([z], dtype=torch.float64)
    return {k: float(v) for k, v in decompose_layer(neuron, I, z, qcfs(z, 1.0, levels)).items()}


@pytest.mark.parametrize(
    ("currents", "unevenness"),
    [
        # seed 004 Fig. 1: inputs a = [0.6, 0.4], weights [2, -2], θ = 1, T = 5; mean current 0.4, ANN a^l = 0.4.
        # With v(0) = θ/2 the constant current 0.4 gives 2 spikes (t = 2, 4): ψ(Ī) = 0.4.
        ([2, -2, 2, -2, 2], 0.0),  # spikes at t = 1, 3, 5 and 2, 4: balanced, 2 output spikes -> 0.4
        ([2, 2, 2, -2, -2], 0.4),  # t = 1, 2, 3 then 4, 5: v = 2.5, 3.5, 4.5, 1.5, -1.5 -> 4 spikes -> 0.8
        ([-2, -2, 2, 2, 2], -0.2),  # t = 3, 4, 5 after 1, 2: v = -1.5, -3.5, -1.5, .5, 2.5 -> 1 spike -> 0.2
    ],
)
def test_seed004_unevenness_example(currents, unevenness):
    t = _terms(currents, 0.4)
    assert t["unevenness"] == pytest.approx(unevenness, abs=1e-12)
    assert t["quantization"] == 0.0 and t["inherited"] == pytest.approx(0.0, abs=1e-12)
    assert t["total"] == pytest.approx(unevenness, abs=1e-12)


def test_hand_computed_quantization_and_inherited():
    # z = 0.3, L = 4: a = QCFS_4(0.3) = 0.25; T = 2: ψ(0.3): v = .8, 1.1 -> 1 spike -> 0.5
    # actual input [0.7, 0.7] (constant): ψ(0.7): 1.2 fire (.2), .9 -> 1 spike -> 0.5
    t = _terms([0.7, 0.7], 0.3, levels=4)
    assert t == {"quantization": 0.25, "inherited": 0.0, "unevenness": 0.0, "total": 0.25}
    # actual input [1.0, 1.0]: 2 spikes -> 1.0: inherited 0.5
    t = _terms([1.0, 1.0], 0.3, levels=4)
    assert t == {"quantization": 0.25, "inherited": 0.5, "unevenness": 0.0, "total": 0.75}


def test_constant_input_has_exactly_zero_unevenness():
    torch.manual_seed(0)
    neuron = IFNeuron(torch.tensor([0.7, 1.3, 2.0]))
    for T in (1, 3, 7):
        c = torch.randn(5, 3, 2, 2) * 2
        I = c.unsqueeze(0).expand(T, *c.shape)
        e = decompose_layer(neuron, I, c, qcfs(c, neuron.threshold.view(-1, 1, 1), 4))
        assert bool((e["unevenness"] == 0).all()) and bool((e["inherited"] == 0).all())
        torch.testing.assert_close(e["total"], e["quantization"], rtol=0, atol=0)


def test_one_hidden_layer_free_running_error_is_the_quantization_error():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(4, 16), QCFS(4, 1.0), nn.Linear(16, 3)).eval()
    snn, x = convert(ann), torch.randn(32, 4)
    z = ann[0](x).detach()
    for T in (2, 3, 4, 8):
        d = error_decomposition(ann, snn, x, T)
        assert d.layers == ["1"] and d.samples == 32
        s = d.signed_sum["1"]
        assert s["unevenness"] == 0.0 and s["inherited"] == 0.0
        assert s["total"] == s["quantization"] and d.abs_sum["1"]["total"] == d.abs_sum["1"]["quantization"]
        # teacher forcing = a T-level QCFS minus the L-level QCFS (in units of θ = 1)
        expected = (qcfs(z, 1.0, T) - qcfs(z, 1.0, 4)).abs().mean()
        assert d.mae()["1"]["quantization"] == pytest.approx(float(expected), abs=1e-6)
        if T == 4:
            assert d.mae()["1"]["total"] == 0.0


def test_deep_network_identities_and_T_equals_L():
    torch.manual_seed(0)
    ann = randomize(create("small_cnn", num_classes=5, in_channels=1, input_size=8, width=0.25), threshold=1.0)
    snn, x = convert(ann), torch.randn(6, 1, 8, 8)
    levels = ann.features[2].levels
    d = error_decomposition(ann, snn, x, levels)
    assert all(d.abs_sum[k]["quantization"] == 0.0 for k in d.layers)  # T = L: teacher forcing is exact
    assert d.signed_sum[d.layers[0]]["unevenness"] == 0.0  # the first layer's input is constant
    # total = quantization + inherited + unevenness, elementwise
    _, currents, values = record_neurons(snn, x, 3)
    acts = {}
    hooks = [m.register_forward_hook(lambda m, a, o, k=k: acts.__setitem__(k, (a[0], o)))
             for k, m in ann.named_modules() if isinstance(m, QCFS)]  # fmt: skip
    with torch.no_grad():
        ann(x)
    for h in hooks:
        h.remove()
    for name, neuron in snn.neurons().items():
        e = decompose_layer(neuron, currents[name], *acts[name])
        torch.testing.assert_close(e["quantization"] + e["inherited"] + e["unevenness"], e["total"])
        z, a = acts[name]
        torch.testing.assert_close((values[name].mean(0) - a) / neuron.threshold, e["total"])  # free-running
        torch.testing.assert_close((constant_response(neuron, z, 3) - a) / neuron.threshold, e["quantization"])
    text = d.table()
    assert all(k in text for k in d.layers) and "unevenness" in text
    assert set(d.to_dict()["mean_abs"][d.layers[0]]) == {"quantization", "inherited", "unevenness", "total"}


def test_record_neurons_matches_simulate_and_restores_the_network():
    torch.manual_seed(0)
    ann = randomize(create("small_cnn", num_classes=5, in_channels=1, input_size=8, width=0.25), threshold=1.0)
    snn, x = convert(ann), torch.randn(3, 1, 8, 8)
    ref = simulate(snn, x, 5)
    for chunk in (None, 2):
        r, currents, values = record_neurons(snn, x, 5, chunk=chunk)
        torch.testing.assert_close(r.logits, ref.logits, rtol=0, atol=0)
        for k, v in values.items():
            assert currents[k].shape == v.shape and v.shape[:2] == (5, 3)
            assert int(torch.count_nonzero(v)) == int(ref.spike_counts[k].sum())
    assert all(isinstance(n, IFNeuron) for n in snn.neurons().values())


def test_mismatched_ann_is_explained():
    ann = nn.Sequential(nn.Linear(4, 8), QCFS(4, 1.0), nn.Linear(8, 3)).eval()
    other = nn.Sequential(nn.Linear(4, 8), nn.Identity(), QCFS(4, 1.0), nn.Linear(8, 3)).eval()
    with pytest.raises(ValueError, match="not a QCFS module of the ANN"):
        error_decomposition(other, convert(ann), torch.randn(2, 4), 3)


def test_loader_input_accumulates():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(4, 8), QCFS(4, 1.0), nn.Linear(8, 8), QCFS(4, 1.0), nn.Linear(8, 3)).eval()
    snn, x = convert(ann), torch.randn(12, 4)
    whole = error_decomposition(ann, snn, x, 3)
    parts = error_decomposition(ann, snn, [(p, None) for p in x.split(5)], 3)
    assert parts.samples == 12 and parts.elements == whole.elements
    for k in whole.layers:
        for t in whole.mae()[k]:
            assert parts.mae()[k][t] == pytest.approx(whole.mae()[k][t], abs=1e-9)
    assert error_decomposition(ann, snn, [(p, None) for p in x.split(5)], 3, max_batches=1).samples == 5
