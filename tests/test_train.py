"""Training loop (snnconv.train): learning, checkpoints, bit-exact resume, divergence handling."""

from __future__ import annotations

import copy
import functools
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

import snnconv
from snnconv.checkpoint import KIND_MODEL, KIND_TRAIN, load_checkpoint
from snnconv.errors import CheckpointError, SnnconvError, TrainingDiverged
from snnconv.train import (
    TrainConfig,
    epoch_generator,
    fit,
    make_optimizer,
    make_scheduler,
    restore_training_state,
)

BATCH = 32
STEPS_PER_EPOCH = 44  # ceil(1400 training digits / 32)


@functools.cache
def digits() -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return TensorDataset(x[perm[:1400]], y[perm[:1400]]), TensorDataset(x[perm[1400:]], y[perm[1400:]])


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snnconv.QCFS(4, 4.0), nn.Linear(32, 10))


def make_config(**kw) -> TrainConfig:
    base = {"model": "mlp", "dataset": "digits", "epochs": 4, "batch_size": BATCH, "lr": 0.05, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


def loaders(batch_size: int = BATCH) -> tuple[DataLoader, DataLoader]:
    train, test = digits()
    return DataLoader(train, batch_size, shuffle=True), DataLoader(test, batch_size=500)


def epoch_loader(epoch: int, seed: int = 0) -> DataLoader:
    """The ``make_train_loader(epoch)`` form: same batches as a shuffled DataLoader driven by fit."""
    train = digits()[0]
    return DataLoader(
        train,
        BATCH,
        sampler=RandomSampler(train, generator=epoch_generator(seed, epoch)),
        generator=epoch_generator(seed, epoch, stream=1),
    )


def stop_at(epoch: int):
    return lambda info: info["epoch"] == epoch


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_same_state(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_state(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_state(x, y)
    else:
        assert a == b


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 4-epoch run; captures the optimizer/scheduler/RNG state after epoch 2."""
    seen = {}

    def capture(info):
        if info["epoch"] == 2:
            seen["optimizer"] = copy.deepcopy(info["optimizer"].state_dict())
            seen["scheduler"] = copy.deepcopy(info["scheduler"].state_dict())
            seen["rng"] = torch.get_rng_state()

    model = make_model()
    out = tmp_path_factory.mktemp("straight")
    result = fit(model, *loaders(), make_config(), out, callbacks=[capture])
    return {"result": result, "weights": copy.deepcopy(model.state_dict()), "out": out, **seen}


def test_training_learns_digits_and_writes_run_files(straight):
    result, out = straight["result"], straight["out"]
    assert result["history"][2]["test_acc"] >= 0.8 and result["final_acc"] >= 0.8
    assert result["epochs_completed"] == 4 and not result["stopped_early"]
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4] and lines == result["history"]
    assert lines[0]["lr"] == 0.05 and lines[1]["lr"] < lines[0]["lr"]  # cosine schedule
    assert json.loads((out / "config.json").read_text()) == make_config().to_dict()
    last = load_checkpoint(out / "last.pt", kind=KIND_TRAIN)
    assert last["epoch"] == 4 and last["config"] == make_config().to_dict()
    assert_same_weights(last["model"], straight["weights"])
    best = load_checkpoint(out / "best.pt", kind=KIND_MODEL)
    assert best["epoch"] == result["best_epoch"] and best["best_acc"] == result["best_acc"]
    assert "optimizer" not in best


def test_resume_is_bit_identical(straight, tmp_path):
    first = fit(make_model(), *loaders(), make_config(), tmp_path, callbacks=[stop_at(2)])
    assert first["stopped_early"] and first["epochs_completed"] == 2

    # The resume load restores exactly the optimizer, scheduler and RNG state of the uninterrupted run.
    ckpt = load_checkpoint(tmp_path / "last.pt")
    model = make_model(seed=123)
    optimizer = make_optimizer(model, make_config())
    scheduler = make_scheduler(optimizer, make_config())
    restore_training_state(ckpt, model, optimizer, scheduler)
    assert_same_state(optimizer.state_dict(), straight["optimizer"])
    assert_same_state(scheduler.state_dict(), straight["scheduler"])
    assert torch.equal(torch.get_rng_state(), straight["rng"])

    model = make_model(seed=123)  # different init: everything must come from last.pt
    result = fit(model, *loaders(), make_config(), tmp_path, resume=True)
    assert_same_weights(model.state_dict(), straight["weights"])
    strip = [{k: v for k, v in m.items() if k != "time_s"} for m in result["history"]]
    assert strip == [{k: v for k, v in m.items() if k != "time_s"} for m in straight["result"]["history"]]


_KILLED_RUN = textwrap.dedent(
    """
    import importlib.util, os, signal, sys
    spec = importlib.util.spec_from_file_location("t", sys.argv[1])
    t = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t)

    def make_train_loader(epoch):  # dies by SIGKILL in the middle of the second epoch
        for step, batch in enumerate(t.epoch_loader(epoch)):
            if epoch == 1 and step == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    t.fit(t.make_model(), make_train_loader, t.loaders()[1], t.make_config(), sys.argv[2])
    """
)


def test_resume_after_sigkill_mid_epoch(straight, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, __file__, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    model = make_model(seed=7)
    result = fit(model, *loaders(), make_config(), tmp_path, resume=True)
    assert_same_weights(model.state_dict(), straight["weights"])
    assert [m["epoch"] for m in result["history"]] == [1, 2, 3, 4]


def test_resume_guards(tmp_path):
    with pytest.raises(CheckpointError, match="cannot resume: .*last.pt does not exist"):
        fit(make_model(), *loaders(), make_config(), tmp_path, resume=True)
    fit(make_model(), *loaders(), make_config(epochs=2), tmp_path, callbacks=[stop_at(1)])
    with pytest.raises(CheckpointError, match="already holds a run"):
        fit(make_model(), *loaders(), make_config(epochs=2), tmp_path)
    with pytest.raises(CheckpointError, match=r"config differs \(lr: 0.05 -> 0.1"):
        fit(make_model(), *loaders(), make_config(epochs=2, lr=0.1), tmp_path, resume=True)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), snnconv.QCFS(4, 4.0), nn.Linear(48, 10))
    with pytest.raises(CheckpointError, match=r"model 'mlp'.*shape: 1\.weight: \(32, 64\) in checkpoint"):
        fit(wide, *loaders(), make_config(epochs=2), tmp_path, resume=True)
    # runtime-only settings may change between resumes
    result = fit(make_model(), *loaders(), make_config(epochs=2, num_workers=0, out="x"), tmp_path, resume=True)
    assert result["epochs_completed"] == 2


def test_resume_repairs_best_and_metrics_after_crash_between_writes(tmp_path):
    first = fit(make_model(), *loaders(), make_config(epochs=2), tmp_path)
    assert first["best_epoch"] == 2
    (tmp_path / "best.pt").unlink()  # as if killed right after last.pt was written
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines(keepends=True)[0])
    result = fit(make_model(), *loaders(), make_config(epochs=2), tmp_path, resume=True)
    assert load_checkpoint(tmp_path / "best.pt", kind=KIND_MODEL)["epoch"] == 2
    assert [json.loads(s)["epoch"] for s in metrics.read_text().splitlines()] == [1, 2]
    assert result["history"] == first["history"]


class NaNAt(nn.Module):
    """Wraps a model; its output becomes NaN at the given (1-based) training forward call."""

    def __init__(self, inner: nn.Module, call: int) -> None:
        super().__init__()
        self.inner, self.call, self.calls = inner, call, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.call:
                out = out * float("nan")
        return out


def _finite_checkpoint(path: Path, epoch: int) -> None:
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == epoch
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["model"].values())


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    model = NaNAt(make_model(), call=STEPS_PER_EPOCH + 3)  # epoch 2, step 3
    with pytest.raises(
        TrainingDiverged, match=r"epoch 2/4, step 3: loss is nan; last good checkpoint: .*last\.pt \(epoch 1\)"
    ):
        fit(model, *loaders(), make_config(), tmp_path)
    _finite_checkpoint(tmp_path / "last.pt", 1)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_huge_lr_diverges_without_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"epoch 1/4, step \d+: loss is (nan|inf).*no checkpoint was written"):
        fit(make_model(), *loaders(), make_config(lr=1e30), tmp_path)
    assert not (tmp_path / "last.pt").exists()


def test_nonfinite_weights_are_never_saved(tmp_path):
    calls = []

    def nan_grad_on_last_step(model, logits, y):  # finite value (0), NaN gradient: sqrt'(0) * 0
        calls.append(1)
        if len(calls) == 2 * STEPS_PER_EPOCH:
            return torch.sqrt(0.0 * model[1].weight.sum())
        return logits.new_zeros(())

    with pytest.raises(TrainingDiverged, match=r"epoch 2/4, end of epoch: non-finite weights in \['1\.weight'"):
        fit(make_model(), *loaders(), make_config(), tmp_path, extra_loss=nan_grad_on_last_step)
    _finite_checkpoint(tmp_path / "last.pt", 1)


def test_epoch_generator_and_shuffling():
    draw = lambda g: torch.randperm(50, generator=g)  # noqa: E731
    assert torch.equal(draw(epoch_generator(0, 3)), draw(epoch_generator(0, 3)))
    assert not torch.equal(draw(epoch_generator(0, 3)), draw(epoch_generator(0, 4)))
    assert not torch.equal(draw(epoch_generator(0, 3)), draw(epoch_generator(1, 3)))
    assert not torch.equal(draw(epoch_generator(0, 3)), draw(epoch_generator(0, 3, stream=1)))


def test_loader_and_callable_forms_agree(tmp_path):
    a, b = make_model(), make_model()
    fit(a, loaders()[0], loaders()[1], make_config(epochs=2), tmp_path / "a")
    fit(b, epoch_loader, loaders()[1], make_config(epochs=2), tmp_path / "b")
    assert_same_weights(a.state_dict(), b.state_dict())


def test_amp_flag_is_ignored_on_cpu(tmp_path):
    a, b = make_model(), make_model()
    fit(a, *loaders(), make_config(epochs=1), tmp_path / "a")
    fit(b, *loaders(), make_config(epochs=1, amp=True), tmp_path / "b")
    assert_same_weights(a.state_dict(), b.state_dict())


def test_config_validation():
    with pytest.raises(SnnconvError, match="act must be one of"):
        make_config(act="gelu")
    with pytest.raises(SnnconvError, match="optimizer must be one of"):
        make_config(optimizer="lion")
    with pytest.raises(SnnconvError, match="epochs must be a positive integer"):
        make_config(epochs=0)
    with pytest.raises(SnnconvError, match=r"unknown keys \['lrr'\]"):
        TrainConfig.from_dict({**make_config().to_dict(), "lrr": 1})
    assert TrainConfig.from_dict(make_config().to_dict()) == make_config()


def test_adam_and_extra_loss_run(tmp_path):
    calls = []

    def l2(model, logits, y):
        calls.append(1)
        return 1e-4 * sum(p.square().sum() for p in model.parameters())

    result = fit(make_model(), *loaders(), make_config(epochs=2, optimizer="adam", lr=1e-2), tmp_path, extra_loss=l2)
    assert len(calls) == 2 * STEPS_PER_EPOCH and result["best_acc"] > 0.5


def test_seed_options_validated_and_old_configs_keep_their_behaviour():
    """Issue 19: new options name the argument and the allowed values; a config without them means what it meant."""
    for key, bad, allowed in (("qcfs_reg_form", "exact", "seed, clipped, raw"), ("extra_steps", "zero", "refine, pad"),
                              ("cos_shift", "big", "reference, theta")):  # fmt: skip
        with pytest.raises(SnnconvError, match=f"{key} must be one of {allowed}, got '{bad}'"):
            make_config(**{key: bad})
    with pytest.raises(SnnconvError, match="max_spikes_per_step must be a positive integer"):
        make_config(max_spikes_per_step=0)
    keys = ("qcfs_reg_form", "extra_steps", "cos_shift", "max_spikes_per_step")
    new = make_config()
    assert [getattr(new, k) for k in keys] == ["raw", "refine", "reference", 1]
    loaded = TrainConfig.from_dict({k: v for k, v in new.to_dict().items() if k not in keys})
    assert [getattr(loaded, k) for k in keys] == ["raw", "pad", "theta", None]


def test_run_saved_before_the_seed_options_resumes_and_keeps_them(tmp_path):
    keys = ("qcfs_reg_form", "extra_steps", "cos_shift", "max_spikes_per_step")
    stopped = fit(make_model(), *loaders(), make_config(epochs=2), tmp_path, callbacks=[lambda info: True])
    assert stopped["stopped_early"]
    from snnconv.checkpoint import save_checkpoint

    ckpt = load_checkpoint(tmp_path / "last.pt")
    ckpt.pop("kind")
    ckpt["config"] = {k: v for k, v in ckpt["config"].items() if k not in keys}  # as an older snnconv wrote it
    save_checkpoint(tmp_path / "last.pt", ckpt, kind=KIND_TRAIN)
    with pytest.raises(CheckpointError, match="qcfs_reg_form: 'raw' -> 'seed'"):
        fit(make_model(), *loaders(), make_config(epochs=2, qcfs_reg_form="seed"), tmp_path, resume=True)
    fit(make_model(), *loaders(), make_config(epochs=2), tmp_path, resume=True)
    saved = load_checkpoint(tmp_path / "last.pt")["config"]
    assert saved["epochs"] == 2 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert (saved["extra_steps"], saved["cos_shift"], saved["max_spikes_per_step"]) == ("pad", "theta", None)
    assert json.loads((tmp_path / "config.json").read_text())["extra_steps"] == "pad"
