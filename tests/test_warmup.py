"""Linear learning-rate warm-up (issue 28): the rates it gives, bit-exact resume, CLI defaults, legacy runs."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnconv
from snnconv.checkpoint import KIND_TRAIN, load_checkpoint
from snnconv.cli import build_parser, main
from snnconv.errors import SnnconvError
from snnconv.train import TrainConfig, Warmup, fit, make_optimizer, make_scheduler


@functools.cache
def digits() -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    return TensorDataset(x[:640], y[:640]), TensorDataset(x[640:900], y[640:900])


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snnconv.QCFS(4, 4.0), nn.Linear(32, 10))


def test_rates_ramp_linearly_and_the_schedule_is_untouched() -> None:
    net = model()
    config = TrainConfig(model="mlp", dataset="digits", epochs=3, lr=0.1, device="cpu")
    opt, seen = make_optimizer(net, config), []
    sched = make_scheduler(opt, config)
    warm = Warmup(1.5, range(4))  # 4 steps an epoch: 6 warm-up steps
    for epoch in range(3):
        for step in range(4):
            with warm.scaled(opt, epoch, step):
                seen.append(opt.param_groups[0]["lr"])
            assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]  # restored after the step
        sched.step()
    cos = [0.1, 0.075, 0.025]  # cosine over 3 epochs, per epoch
    expected = [cos[k // 4] * min(1.0, (k + 1) / 6) for k in range(12)]
    assert seen == pytest.approx(expected, rel=1e-12)
    with pytest.raises(SnnconvError, match="needs a train loader with len"):
        Warmup(1.0, iter([]))


def test_resume_inside_the_warm_up_is_bit_exact(tmp_path) -> None:
    train, test = digits()
    config = TrainConfig(model="mlp", dataset="digits", epochs=3, batch_size=64, lr=0.1, warmup_epochs=1.5,
                         device="cpu", log="none")  # fmt: skip
    straight = model()
    fit(straight, DataLoader(train, 64, shuffle=True), DataLoader(test, 500), config, tmp_path / "a")
    first = model()
    fit(first, DataLoader(train, 64, shuffle=True), DataLoader(test, 500), config, tmp_path / "b",
        callbacks=[lambda info: info["epoch"] == 1])  # fmt: skip
    again = model()
    fit(again, DataLoader(train, 64, shuffle=True), DataLoader(test, 500), config, tmp_path / "b", resume=True)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    unwarmed = model()
    fit(unwarmed, DataLoader(train, 64, shuffle=True), DataLoader(test, 500),
        TrainConfig(**{**config.to_dict(), "warmup_epochs": 0.0}), tmp_path / "c")  # fmt: skip
    assert not torch.equal(unwarmed[1].weight, straight[1].weight)  # the warm-up did change the training


def test_cli_default_is_one_epoch_for_new_runs_and_the_runs_own_on_resume(tmp_path) -> None:
    run = tmp_path / "run"
    argv = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "2", "--lr", "0.05", "--subset", "256",
            "--threshold-init", "4", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((run / "config.json").read_text())["warmup_epochs"] == 1.0
    assert json.loads((run / "config.json").read_text())["threshold_floor"] == 1e-3  # the CLI's floor, too
    # a run from before the option existed had no warm-up: it resumes with none
    cfg = json.loads((run / "config.json").read_text())
    del cfg["warmup_epochs"], cfg["threshold_floor"]
    cfg["epochs"] = 2
    (run / "config.json").write_text(json.dumps(cfg))
    ckpt = load_checkpoint(run / "last.pt", kind=KIND_TRAIN)
    assert build_parser().parse_args([*argv, "--resume"]).warmup_epochs is None
    from snnconv.cli_args import default_threshold_floor, default_warmup

    assert default_threshold_floor(run, True) == 0.0 and default_threshold_floor(run, False) == 1e-3

    assert default_warmup(run, True, 2) == 0.0 and default_warmup(run, False, 2) == 1.0
    assert default_warmup(run, False, 1) == 1.0 and ckpt["config"]["warmup_epochs"] == 1.0


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "x"])
def test_cli_refuses_a_bad_warm_up(bad: str, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--warmup-epochs", bad])
    assert "--warmup-epochs" in capsys.readouterr().err
    with pytest.raises(SnnconvError, match="warmup_epochs must be in"):
        TrainConfig(model="mlp", dataset="digits", epochs=2, warmup_epochs=3)
