"""VGG's classifier dropout: 0.5 by default (torchvision's), 0 (the QCFS reference's) on request; runs written
before it was recorded keep 0.5."""

from __future__ import annotations

import json

import pytest
from torch import nn

import snnconv.runs as runs
from snnconv.checkpoint import KIND_TRAIN, load_checkpoint, save_checkpoint
from snnconv.cli import build_parser
from snnconv.models import create
from snnconv.runs import build_model, load_run
from snnconv.train import TrainConfig


def dropouts(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_default_dropout_is_half_and_zero_removes_the_modules(name: str) -> None:
    assert dropouts(create(name, input_size=28, in_channels=1, width=0.25)) == [0.5, 0.5]
    assert dropouts(create(name, input_size=28, in_channels=1, width=0.25, dropout=0.0)) == []


def test_config_without_dropout_key_means_the_old_default() -> None:
    old = {"model": "vgg16", "dataset": "fashion-mnist"}
    assert TrainConfig.from_dict(old).dropout == 0.5
    assert TrainConfig.from_dict({**old, "model": "resnet20"}).dropout is None
    assert TrainConfig.from_dict({**old, "dropout": None}).dropout is None
    assert dropouts(build_model(TrainConfig.from_dict(old))) == [0.5, 0.5]
    assert dropouts(build_model(TrainConfig(model="vgg16", dataset="fashion-mnist"))) == [0.5, 0.5]
    assert dropouts(build_model(TrainConfig(model="vgg16", dataset="fashion-mnist", dropout=0.0))) == []


@pytest.mark.parametrize("bad", ["-0.1", "1", "nan", "x"])
def test_cli_refuses_a_bad_dropout(bad: str, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--dropout", bad])
    assert "--dropout" in capsys.readouterr().err


def test_an_old_vgg_run_loads_and_resumes(tmp_path, monkeypatch) -> None:
    """A run whose config predates the key (dropout 0.5 then) evaluates and resumes with today's code."""
    run = tmp_path / "run"
    config = TrainConfig(model="vgg11", dataset="digits", width=0.0625, epochs=2, batch_size=128, device="cpu",
                         dropout=0.5, out=str(run), log="none")  # fmt: skip
    fit = runs.fit  # stop after epoch 1, as a killed run would
    monkeypatch.setattr(runs, "fit", lambda *a, **k: fit(*a, **k, callbacks=[lambda info: info["epoch"] == 1]))
    runs.train_run(config)
    monkeypatch.setattr(runs, "fit", fit)
    cfg = json.loads((run / "config.json").read_text())  # make it look like a run from before `dropout` existed
    del cfg["dropout"]
    (run / "config.json").write_text(json.dumps(cfg))
    ckpt = load_checkpoint(run / "last.pt", kind=KIND_TRAIN)
    del ckpt["config"]["dropout"]
    save_checkpoint(run / "last.pt", ckpt, kind=KIND_TRAIN)
    model, loaded = load_run(run, "last")
    assert loaded.dropout == 0.5 and dropouts(model) == [0.5, 0.5]
    result = runs.train_run(TrainConfig(**{**config.to_dict(), "dropout": None}), resume=True)
    assert result["epochs_completed"] == 2
