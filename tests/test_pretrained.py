"""Shipped reference networks: create(name, pretrained=...), sha256 check, `snnconv evaluate zoo:NAME`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from snnconv.checkpoint import load_checkpoint
from snnconv.cli import main
from snnconv.errors import CheckpointError, RegistryError, SnnconvError
from snnconv.models import create
from snnconv.models.pretrained import available_pretrained, export_pretrained, load_pretrained
from snnconv.runs import train_run
from snnconv.train import TrainConfig


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A weights folder holding one trained digits MLP, as a release ships them."""
    root = tmp_path_factory.mktemp("zoo")
    config = TrainConfig(model="mlp", dataset="digits", epochs=1, batch_size=64, lr=0.05, threshold_init=4.0,
                         device="cpu", out=str(root / "run"), log="none")  # fmt: skip
    train_run(config)
    assert export_pretrained(root / "run", "snnconv train --model mlp --dataset digits --epochs 1",
                             folder=root) == "mlp/digits"  # fmt: skip
    return root


def test_create_pretrained_gives_the_shipped_weights(zoo, monkeypatch) -> None:
    monkeypatch.setenv("SNNCONV_WEIGHTS_DIR", str(zoo))
    assert available_pretrained() == ["mlp/digits"]
    model = create("mlp", pretrained="digits")
    saved = load_checkpoint(zoo / "run" / "last.pt")["model"]
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert load_pretrained("mlp")[1].dataset == "digits"  # the only shipped mlp


def test_pretrained_refusals(zoo, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SNNCONV_WEIGHTS_DIR", str(zoo))
    with pytest.raises(RegistryError, match=r"no pretrained network 'vgg16/digits'; shipped: mlp/digits"):
        create("vgg16", pretrained="digits")
    with pytest.raises(SnnconvError, match="drop width"):
        create("mlp", pretrained="digits", width=0.5)
    damaged = tmp_path / "zoo"
    shutil.copytree(zoo, damaged)
    data = bytearray((damaged / "mlp-digits.pt").read_bytes())
    data[-10] ^= 1
    (damaged / "mlp-digits.pt").write_bytes(bytes(data))
    monkeypatch.setenv("SNNCONV_WEIGHTS_DIR", str(damaged))
    with pytest.raises(CheckpointError, match="the file is damaged: reinstall snnconv"):
        create("mlp", pretrained="digits")


def test_evaluate_zoo_network(zoo, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("SNNCONV_WEIGHTS_DIR", str(zoo))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "zoo:mlp/digits", "--T", "1,4"]) == 0
    report = json.loads((tmp_path / "zoo-mlp-digits" / "eval_if.json").read_text())
    assert report["model"] == "mlp" and report["samples"] == 360 and set(report["snn_accuracy"]) == {"1", "4"}
    assert main(["evaluate", "zoo:nothing", "--T", "1"]) == 2
    assert "no pretrained network 'nothing'" in capsys.readouterr().err
