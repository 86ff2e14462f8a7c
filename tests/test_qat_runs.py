"""QAT run directories (seed 003): train, save the fake-quantized model + scales, load back, evaluate Ca-LIF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.ao.quantization import FakeQuantize

from snnconv.checkpoint import KIND_TRAIN, load_checkpoint
from snnconv.errors import CheckpointError, SnnconvError
from snnconv.qat import QATSchedule, fake_quantizers, prepare_qat
from snnconv.qat_runs import (
    QAT_FILE,
    evaluate_calif_run,
    load_qat_run,
    print_calif_report,
    qat_test_loader,
    train_qat_run,
    write_calif_report,
)
from snnconv.runs import build_model, train_run
from snnconv.train import TrainConfig, fit


def config(out: Path, epochs: int = 2, **kw) -> TrainConfig:
    base = dict(model="small_cnn", dataset="digits", act="relu", epochs=epochs, batch_size=32, lr=0.05, width=0.5,
                augment=False, device="cpu", out=str(out))  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    out = tmp_path_factory.mktemp("qat") / "run"
    result = train_qat_run(config(out, epochs=4, act="qcfs"), bits=8, freeze_observer=3)
    assert result["method"] == "qat" and result["bits"] == 8 and result["epochs_completed"] == 4
    return out


def test_run_directory_holds_fake_quantized_model_and_scales(run: Path) -> None:
    assert json.loads((run / QAT_FILE).read_text())["method"] == "qat"
    assert json.loads((run / QAT_FILE).read_text())["bits"] == 8
    assert json.loads((run / "config.json").read_text())["act"] == "relu"  # QAT always trains the ReLU network
    for name in ("best.pt", "last.pt"):
        raw = torch.load(run / name, weights_only=True)  # plain tensors only
        state = load_checkpoint(run / name)["model"]
        assert raw["model"].keys() == state.keys()
        scales = [k for k in state if k.endswith(".scale")]
        assert scales and any("weight_fake_quant" in k for k in scales) and any("activation" in k for k in scales)
        assert all(int(state[k.replace(".scale", ".zero_point")].abs().max()) == 0 for k in scales)
        assert all(int(state[k]) == 0 for k in state if k.endswith("observer_enabled"))  # frozen from epoch 3


def test_load_reproduces_saved_model_predictions(run: Path) -> None:
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    model, cfg = load_qat_run(run, "last")
    assert not model.training and cfg.act == "relu"
    assert all(int(fq.observer_enabled) == 0 for fq in model.modules() if isinstance(fq, FakeQuantize))
    x, _ = next(iter(qat_test_loader(run, batch_size=360)))
    assert 0 <= float(x.min()) and float(x.max()) <= 1  # inputs="unit": pixels in [0, 1]
    state = load_checkpoint(run / "last.pt")["model"]
    with torch.no_grad():
        first = model(x)
        again, _ = load_qat_run(run, "last")
        assert torch.equal(again(x), first)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # evaluation changed nothing
    scales = {n: float(fq.scale) for n, fq in fake_quantizers(model).items()}
    assert all(s > 0 and s == 2.0 ** round(torch.log2(torch.tensor(s)).item()) for s in scales.values())


def test_resume_is_exact(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    kw = {"freeze_bn": 1, "freeze_observer": 1, "inputs": "normalized"}
    whole = train_qat_run(config(tmp_path / "whole"), **kw)
    stopped = train_qat_run(config(tmp_path / "split"), **kw, callbacks=[lambda info: info["epoch"] == 1])
    assert stopped["stopped_early"] and stopped["epochs_completed"] == 1
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_qat_run(config(tmp_path / "split"), **kw)
    with pytest.raises(CheckpointError, match="QAT settings differ"):
        train_qat_run(config(tmp_path / "split"), bits=6, **kw, resume=True)
    resumed = train_qat_run(config(tmp_path / "split"), **kw, resume=True)
    assert resumed["epochs_completed"] == 2 and resumed["best_acc"] == whole["best_acc"]
    a, b = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("whole", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SnnconvError, match="normalized"):  # ISI coding needs [0, 1] pixels
        evaluate_calif_run(tmp_path / "split", [8], input_coding="isi", progress=False)


def test_evaluate_calif_run_agrees_with_qat_model(run: Path, tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    report = evaluate_calif_run(run, [16, 128], progress=False, max_spikes_per_step=None)  # burst: SNN = QAT model
    for key in ("qat_accuracy", "snn_accuracy", "agreement", "disagreements", "spike_rate", "gap", "model", "dataset",
                "bits", "method", "input_coding", "samples"):  # fmt: skip
        assert key in report
    assert report["method"] == "calif" and report["bits"] == 8 and report["input_coding"] == "codes"
    assert report["samples"] == 360 and set(report["snn_accuracy"]) == {"16", "128"}
    assert report["qat_accuracy"] > 80
    assert report["agreement"]["128"] >= 0.99
    assert abs(report["gap"]["128"]) <= 1.0
    assert json.loads(json.dumps(report)) == report
    print_calif_report(report)
    assert "agreement" in capsys.readouterr().out
    path = write_calif_report(report, run, tmp_path / "eval_calif.json")
    assert json.loads(path.read_text())["T"] == [16, 128] and path.with_suffix(".png").is_file()
    isi = evaluate_calif_run(run, [128], subset=64, input_coding="isi", progress=False, max_spikes_per_step=None)
    assert isi["input_coding"] == "isi" and isi["agreement"]["128"] > 0.8


def test_non_qat_run_is_refused(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    train_run(config(tmp_path / "relu", epochs=1, width=0.25))
    with pytest.raises(CheckpointError, match="not a QAT run"):
        load_qat_run(tmp_path / "relu")
    with pytest.raises(CheckpointError, match="not a QAT run"):
        evaluate_calif_run(tmp_path / "relu", [8], progress=False)
    with pytest.raises(CheckpointError, match="not a QAT run"):
        load_qat_run(tmp_path / "missing")
    with pytest.raises(SnnconvError, match="bits"):
        train_qat_run(config(tmp_path / "bad"), bits=12)
    with pytest.raises(CheckpointError, match="qat.json is missing"):
        train_qat_run(config(tmp_path / "relu", epochs=1, width=0.25), resume=True)


def test_qat_schedule_as_fit_callback(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    cfg = config(tmp_path, epochs=2, width=0.25)
    model = prepare_qat(build_model(cfg), torch.zeros(2, 1, 8, 8))
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    fit(model, lambda epoch: batches, batches, cfg, tmp_path, callbacks=[QATSchedule(freeze_bn=1, freeze_observer=1)])
    assert all(int(fq.observer_enabled) == 0 for fq in fake_quantizers(model).values())
    assert all(m.freeze_bn for m in model.modules() if hasattr(m, "freeze_bn"))


def _strip_config_keys(run: Path, dest: Path, keys: tuple[str, ...]) -> Path:
    """A copy of ``run`` as an older snnconv wrote it: ``keys`` absent from config.json and the checkpoints."""
    import shutil

    from snnconv.checkpoint import KIND_MODEL, save_checkpoint

    shutil.copytree(run, dest)
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(dest / name)
        kind = ckpt.pop("kind", KIND_TRAIN if name == "last.pt" else KIND_MODEL)
        ckpt["config"] = {k: v for k, v in ckpt["config"].items() if k not in keys}
        save_checkpoint(dest / name, ckpt, kind=kind)
    cfg = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k not in keys}))
    return dest


def test_calif_neuron_follows_the_run_config_old_runs_keep_bursts(run: Path, tmp_path: Path) -> None:
    """Runs record max_spikes_per_step (1: the seed's neuron); a run saved before the option evaluates as before."""
    torch.set_num_threads(1)  # this test only: the suite-wide conftest restores the setting
    assert json.loads((run / "config.json").read_text())["max_spikes_per_step"] == 1
    new = evaluate_calif_run(run, [8], subset=64, progress=False)
    assert new["max_spikes_per_step"] == 1
    old = _strip_config_keys(run, tmp_path / "old", ("max_spikes_per_step", "extra_steps", "cos_shift"))
    legacy = evaluate_calif_run(old, [8], subset=64, progress=False)
    burst = evaluate_calif_run(run, [8], subset=64, progress=False, max_spikes_per_step=None)
    assert legacy["max_spikes_per_step"] is None and legacy["snn_accuracy"] == burst["snn_accuracy"]
    assert legacy["disagreements"]["8"] == 0  # bursts with exact input codes: SNN = QAT model at any T
    with pytest.raises(SnnconvError, match="max_spikes_per_step"):
        evaluate_calif_run(run, [8], progress=False, max_spikes_per_step=0)
