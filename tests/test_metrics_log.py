"""Per-epoch scalar logs (snnconv.metrics_log): RUN/metrics.csv with QCFS thresholds, optional TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
import json
import warnings

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnconv
import snnconv.metrics_log
from snnconv.errors import SnnconvError
from snnconv.metrics_log import RunLog, threshold_means
from snnconv.train import TrainConfig, fit

METRICS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "best_acc", "time_s"]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), snnconv.QCFS(4, 4.0), nn.Linear(32, 16),
        snnconv.QCFS(4, 2.0, per_channel=True, channels=16, positive="softplus"), nn.Linear(16, 10),
    )  # fmt: skip


def loaders() -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x[:600] / 16.0, dtype=torch.float32), torch.tensor(y[:600])
    return DataLoader(TensorDataset(x[:500], y[:500]), 50, shuffle=True), DataLoader(TensorDataset(x[500:], y[500:]))


def config(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "mlp", "dataset": "digits", "epochs": 3, "batch_size": 50, "lr": 0.05,
                          "device": "cpu", **kw})  # fmt: skip


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_threshold_means_are_the_effective_thresholds():
    model = make_model()
    lam = threshold_means(model)
    assert list(lam) == ["lambda/2", "lambda/4"]
    assert lam["lambda/2"] == pytest.approx(4.0) and lam["lambda/4"] == pytest.approx(2.0, rel=1e-5)  # softplus
    assert threshold_means(nn.Linear(2, 2)) == {}


def test_csv_has_one_row_per_epoch_with_thresholds(tmp_path, one_thread):
    model = make_model()
    result = fit(model, *loaders(), config(), tmp_path)
    rows = read_csv(tmp_path / "metrics.csv")
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == [*METRICS, "lambda/2", "lambda/4"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, m in zip(rows, result["history"], strict=True):
        assert float(row["test_acc"]) == m["test_acc"] and float(row["lr"]) == m["lr"]
    last = threshold_means(model)
    assert float(rows[-1]["lambda/2"]) == pytest.approx(last["lambda/2"])
    assert float(rows[0]["lambda/2"]) != float(rows[-1]["lambda/2"])  # λ is trained
    assert json.loads((tmp_path / "config.json").read_text())["log"] == "csv"


def test_resume_rebuilds_the_csv(tmp_path, one_thread):
    straight = tmp_path / "straight"
    fit(make_model(), *loaders(), config(), straight)
    run = tmp_path / "run"
    fit(make_model(), *loaders(), config(), run, callbacks=[lambda info: info["epoch"] == 2])
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")  # crash between last.pt and the csv row
    fit(make_model(), *loaders(), config(), run, resume=True)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert drop(read_csv(run / "metrics.csv")) == drop(read_csv(straight / "metrics.csv"))


def test_log_none_and_runtime_key(tmp_path, one_thread):
    fit(make_model(), *loaders(), config(epochs=2, log="none"), tmp_path, callbacks=[lambda info: True])
    assert not (tmp_path / "metrics.csv").exists() and (tmp_path / "metrics.jsonl").exists()
    model = make_model()
    fit(model, *loaders(), config(epochs=2, log="csv"), tmp_path, resume=True)  # log may change between resumes
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(r["lambda/4"] for r in rows)
    with pytest.raises(SnnconvError, match="log must be one of"):
        config(log="wandb")


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_missing_warns_once_and_keeps_csv(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(snnconv.metrics_log, "_TB_NOTED", False)
    with pytest.warns(RuntimeWarning, match="TensorBoard logging skipped"):
        fit(make_model(), *loaders(), config(epochs=1, log="tensorboard"), tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(make_model(), *loaders(), config(epochs=1, log="tensorboard"), tmp_path / "b")
    assert len(read_csv(tmp_path / "b" / "metrics.csv")) == 1 and not (tmp_path / "b" / "tb").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_writes_events(tmp_path, one_thread):
    fit(make_model(), *loaders(), config(epochs=1, log="tensorboard"), tmp_path)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_runlog_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="log must be one of"):
        RunLog(tmp_path, "wandb")
