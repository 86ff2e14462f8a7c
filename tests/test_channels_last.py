"""TrainConfig.channels_last (issue 21): NHWC weights and batches end to end, bit-exact resume, same function."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnconv
from snnconv.checkpoint import load_checkpoint
from snnconv.errors import CheckpointError
from snnconv.train import TrainConfig, evaluate, fit

NHWC = torch.channels_last


@functools.cache
def digits() -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return TensorDataset(x[:1400], torch.tensor(y[:1400])), TensorDataset(x[1400:], torch.tensor(y[1400:]))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), snnconv.QCFS(4, 4.0), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), snnconv.QCFS(4, 4.0), nn.Flatten(), nn.Linear(256, 10),
    )  # fmt: skip


def config(**kw) -> TrainConfig:
    base = {"model": "cnn", "dataset": "digits", "epochs": 3, "batch_size": 64, "lr": 0.05, "device": "cpu",
            "channels_last": True}  # fmt: skip
    return TrainConfig(**{**base, **kw})


def loaders() -> tuple[DataLoader, DataLoader]:
    train, test = digits()
    return DataLoader(train, 64, shuffle=True), DataLoader(test, 200)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    seen, threads = [], torch.get_num_threads()
    model = make_model()
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=NHWC)))
    torch.set_num_threads(1)  # as the tests that compare with it (the thread count changes conv rounding)
    try:
        result = fit(model, *loaders(), config(), tmp_path_factory.mktemp("nhwc"))
    finally:
        torch.set_num_threads(threads)
    return {"model": model, "result": result, "weights": copy.deepcopy(model.state_dict()), "seen": seen}


def test_weights_and_every_batch_are_nhwc_and_the_network_learns(straight, one_thread):
    model = straight["model"]
    assert model[4].weight.is_contiguous(memory_format=NHWC) and not model[4].weight.is_contiguous()
    assert straight["seen"] and all(straight["seen"])  # training and evaluation batches
    assert straight["result"]["final_acc"] > 0.8


def test_the_nhwc_network_computes_the_same_function_as_its_nchw_copy(straight, one_thread):
    nchw = make_model(seed=5)
    nchw.load_state_dict(straight["model"].state_dict())
    assert nchw[4].weight.is_contiguous()
    test = loaders()[1]
    a = evaluate(straight["model"], test, channels_last=True)
    b = evaluate(nchw, test)
    assert a["acc"] == pytest.approx(b["acc"], abs=0.01) and a["loss"] == pytest.approx(b["loss"], rel=1e-3)


def test_resume_is_bit_identical_and_keeps_the_layout(straight, tmp_path, one_thread):
    fit(make_model(), *loaders(), config(), tmp_path, callbacks=[lambda info: info["epoch"] == 1])
    model = make_model(seed=9)
    fit(model, *loaders(), config(), tmp_path, resume=True)
    for k, v in straight["weights"].items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model[4].weight.is_contiguous(memory_format=NHWC) and not model[4].weight.is_contiguous()
    assert load_checkpoint(tmp_path / "last.pt")["config"]["channels_last"] is True


def test_resuming_with_the_other_layout_is_refused(tmp_path, one_thread):
    fit(make_model(), *loaders(), config(epochs=2), tmp_path, callbacks=[lambda info: info["epoch"] == 1])
    with pytest.raises(CheckpointError, match="channels_last: True -> False"):
        fit(make_model(), *loaders(), config(epochs=2, channels_last=False), tmp_path, resume=True)


@pytest.mark.parametrize("avx512", [False, True])
def test_cli_default_follows_the_engines_layout_rule_and_a_resumed_run_keeps_its_own(tmp_path, monkeypatch, avx512):
    import importlib
    import json

    from snnconv.cli import _config, build_parser

    monkeypatch.setattr(importlib.import_module("snnconv.simulate"), "_cpu_has_avx512", lambda: avx512)
    argv = ["train", "--model", "small_cnn", "--dataset", "digits", "--device", "cpu", "--out", str(tmp_path / "r")]
    assert _config(build_parser().parse_args(argv)).channels_last is (not avx512)
    assert _config(build_parser().parse_args([*argv, "--channels-last"])).channels_last is True
    assert _config(build_parser().parse_args([*argv, "--no-channels-last"])).channels_last is False
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"model": "small_cnn"}))  # saved before the option
    assert _config(build_parser().parse_args([*argv, "--resume"])).channels_last is False
