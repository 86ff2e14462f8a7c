"""Methods "cos" and "srp", threshold folding (binary spikes), and COS on a small trained digits model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import randomize
from snnconv import IFNeuron, convert, simulate
from snnconv.analysis.error import record_neurons
from snnconv.convert.calibration import calibrated_sweep, calibration_steps, fold_thresholds, simulate_calibrated
from snnconv.errors import ConversionError, SimulationError
from snnconv.evaluate import sweep
from snnconv.layers.calibrated import BinaryIFNeuron, CalibratedIFNeuron
from snnconv.models import create
from snnconv.twostage import to_channelwise


def _model(name: str, *, per_channel: bool = True, dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    ann = randomize(create(name, num_classes=10, in_channels=1, input_size=8, width=0.25), seed=seed, threshold=1.5)
    if per_channel:  # distinct per-channel thresholds
        ann = to_channelwise(ann, torch.zeros(2, 1, 8, 8))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in ann.modules():
                if hasattr(m, "theta") and m.per_channel:
                    m.threshold.add_(torch.rand(m.threshold.shape, generator=g) - 0.5)
    return ann.to(dtype).eval()


def _x(dtype=torch.float64) -> torch.Tensor:
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3


@pytest.mark.parametrize("method,key,steps", [("cos", "rho", 3), ("srp", "tau", 4)])
def test_methods_build_calibrated_neurons(method, key, steps):
    ann = _model("small_cnn")
    before = copy.deepcopy(ann.state_dict())
    snn = convert(ann, method=method, **{key: steps})
    ref = convert(ann, method="if")
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    neurons = snn.neurons()
    assert neurons and all(isinstance(n, CalibratedIFNeuron) and n.mode == method for n in neurons.values())
    for name, n in neurons.items():
        torch.testing.assert_close(n.threshold, ref.neurons()[name].threshold, rtol=0, atol=0)
    assert snn.meta["method"] == method and snn.meta[key] == steps and calibration_steps(snn) == steps
    assert calibration_steps(ref) == 0


def test_cos_with_rho_1_is_the_plain_if_network():
    ann = _model("small_cnn")
    x = _x()
    plain = simulate(convert(ann), x, 6).logits
    torch.testing.assert_close(simulate(convert(ann, method="cos"), x, 6).logits, plain, rtol=0, atol=0)


@pytest.mark.parametrize("method,kw", [("cos", {"rho": 4}), ("srp", {"tau": 4})])
def test_short_runs_are_prefixes_of_long_runs(method, kw):
    snn = convert(_model("small_cnn"), method=method, **kw)
    x = _x()
    with pytest.raises(SimulationError, match="simulate_calibrated"):
        simulate(snn, x, 2)
    with pytest.raises(SimulationError, match="schedule='layer'"):
        simulate(snn, x, 6, schedule="step")
    long = simulate(snn, x, 8)
    for T in (1, 2, 4, 8):
        short = simulate_calibrated(snn, x, T)
        torch.testing.assert_close(short.logits, long.logits[:T], rtol=0, atol=0)
        assert short.T == T and all(c.shape == (T,) for c in short.spike_counts.values())


def test_calibration_changes_the_network_and_sweep_runs_it():
    ann = _model("small_cnn")
    x = _x()
    plain = simulate(convert(ann), x, 4).logits
    cos = simulate(convert(ann, method="cos", rho=4), x, 4).logits
    assert not torch.equal(plain, cos)
    loader = [(x, torch.arange(6) % 10)] * 2
    snn = convert(ann, method="cos", rho=4)
    full = sweep(snn, loader, [1, 2, 4], progress=False)
    assert sorted(full.snn_accuracy) == [1, 2, 4]
    short = calibrated_sweep(snn, loader, [1, 2], progress=False)
    assert short.T == [1, 2] and sorted(short.snn_accuracy) == [1, 2]
    assert short.snn_accuracy == {t: full.snn_accuracy[t] for t in (1, 2)}


@pytest.mark.parametrize("name", ["small_cnn", "mlp", "vgg11"])
@pytest.mark.parametrize("method", ["if", "cos"])
def test_folded_thresholds_give_identical_logits_and_binary_spikes(name, method):
    ann = _model(name)
    snn = convert(ann, method=method, **({"rho": 2} if method == "cos" else {}))
    folded = fold_thresholds(snn)
    x = _x()
    T = 6
    ref = simulate(snn, x, T)
    out = simulate(folded, x, T)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-12, atol=1e-12)
    assert out.spike_counts.keys() == ref.spike_counts.keys()
    for k in ref.spike_counts:
        torch.testing.assert_close(out.spike_counts[k], ref.spike_counts[k], rtol=0, atol=0)
    _, _, values = record_neurons(folded, x, T)
    for v in values.values():
        assert set(v.unique().tolist()) <= {0.0, 1.0}
    # the unfolded network is untouched, the folded one is marked
    assert all(type(n) in (IFNeuron, CalibratedIFNeuron) and not getattr(n, "binary", False)
               for n in snn.neurons().values())  # fmt: skip
    assert folded.meta["binary_spikes"] is True
    if method == "if":
        assert all(isinstance(n, BinaryIFNeuron) for n in folded.neurons().values())


def test_binary_spikes_option_of_the_methods():
    ann = _model("small_cnn")
    x = _x()
    for method, kw in (("cos", {"rho": 2}), ("srp", {"tau": 2})):
        snn = convert(ann, method=method, binary_spikes=True, **kw)
        assert all(n.binary for n in snn.neurons().values())
        ref = convert(ann, method=method, **kw)
        torch.testing.assert_close(simulate(snn, x, 4).logits, simulate(ref, x, 4).logits, rtol=1e-12, atol=1e-12)


def test_folding_refuses_residual_consumers():
    ann = _model("resnet20", per_channel=False, dtype=torch.float32)
    snn = convert(ann)
    with pytest.raises(ConversionError, match=r"spiking layer '.+' feeds .*(Add|add).*cannot absorb"):
        fold_thresholds(snn)


@pytest.mark.parametrize("per_channel", [False, True])
def test_folding_handles_scalar_and_channel_thresholds(per_channel):
    ann = _model("small_cnn", per_channel=per_channel)
    snn = convert(ann)
    x = _x()
    torch.testing.assert_close(
        simulate(fold_thresholds(snn), x, 3).logits, simulate(snn, x, 3).logits, rtol=1e-12, atol=1e-12
    )


def test_cs_qcfs_with_cos_beats_qcfs_at_T1_on_digits(tmp_path):
    """Seed 002's claim in miniature: CS-QCFS + COS at T = 1 beats plain QCFS at T = 1 (small_cnn on digits).

    COS calibrates on ρ = 2 steps: with ρ = 1 it provably changes nothing (see test_cos_with_rho_1_...).
    """
    from snnconv.runs import load_run, test_loader
    from snnconv.train import TrainConfig
    from snnconv.twostage import load_two_stage, two_stage

    cfg = TrainConfig(model="small_cnn", dataset="digits", act="qcfs", levels=4, epochs=2, batch_size=32, lr=0.05,
                      threshold_init=4.0, device="cpu", augment=False, out=str(tmp_path / "run"))  # fmt: skip
    two_stage(cfg, 2)
    qcfs_ann, _ = load_run(tmp_path / "run" / "stage1", "last")
    cs_ann, _ = load_two_stage(tmp_path / "run" / "stage2", "last")
    loader = test_loader(cfg)
    qcfs_t1 = sweep(convert(qcfs_ann), loader, [1], progress=False).snn_accuracy[1]
    cs_t1 = sweep(convert(cs_ann), loader, [1], progress=False).snn_accuracy[1]
    cos_t1 = calibrated_sweep(convert(cs_ann, method="cos", rho=2), loader, [1], progress=False).snn_accuracy[1]
    cos1_t1 = sweep(convert(cs_ann, method="cos", rho=1), loader, [1], progress=False).snn_accuracy[1]
    print(f"T=1 accuracy: QCFS {qcfs_t1:.2f}%, CS-QCFS {cs_t1:.2f}%, CS-QCFS+COS(rho=2) {cos_t1:.2f}%, "
          f"CS-QCFS+COS(rho=1) {cos1_t1:.2f}%")  # fmt: skip
    assert cos1_t1 == cs_t1
    assert cos_t1 > qcfs_t1
