"""Helpers of tests/test_hardening.py for issue 20 (run directories, crafted files, a lock held by another process)."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import snnconv
from snnconv import QCFS
from snnconv.checkpoint import load_checkpoint, save_checkpoint
from snnconv.data import make_loader
from snnconv.layers.act import make_act
from snnconv.models import create
from snnconv.train import TrainConfig, fit

#: a 1-epoch mlp run on 64 digits images: a run directory in about a second
QUICK = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--lr", "0.05", "--threshold-init", "4",
         "--subset", "64"]  # fmt: skip


def tiny_fit(out: Path, *, epochs: int = 2, stop_after: int | None = None, resume: bool = False) -> dict:
    """``fit`` of an mlp on 128 digits images into ``out`` (``stop_after``: stop once that epoch is saved)."""
    torch.manual_seed(0)
    model = create("mlp", num_classes=10, in_channels=1, input_size=8, act=make_act("qcfs", levels=4, threshold=4.0))
    train = make_loader("digits", 64, shuffle=True, seed=0, train=True, subset=128, augment=False)
    test = make_loader("digits", 360, shuffle=False, train=False)
    config = TrainConfig(model="mlp", dataset="digits", epochs=epochs, lr=0.05, out=str(out))
    stop = [lambda info: info["epoch"] == stop_after] if stop_after else []
    return fit(model, train, test, config, out, resume=resume, callbacks=stop)


def hold_lock(out: Path) -> subprocess.Popen:
    """Another process holding ``out``'s run-directory lock until killed (it prints 'locked' once it holds it)."""
    code = ("import sys, time\nfrom snnconv.rundir import open_run_dir\n"
            "held = open_run_dir(sys.argv[1], None, resume=True)\nheld.__enter__()\n"
            "print('locked', flush=True)\ntime.sleep(300)\n")  # fmt: skip
    src = str(Path(snnconv.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def poison(path: Path, key: str | None = None) -> str:
    """Put one NaN into a floating-point tensor of the checkpoint at ``path`` (the first weight); its name."""
    record = load_checkpoint(path)
    key = key or next(k for k, v in record["model"].items() if v.is_floating_point() and k.endswith("weight"))
    record["model"][key] = record["model"][key].clone()
    record["model"][key].view(-1)[0] = float("nan")
    save_checkpoint(path, {k: v for k, v in record.items() if k != "format_version"}, kind=record["kind"])
    return key


def bomb(path: Path, extra: int = 64 * 2**20) -> Path:
    """A gzip IDX file whose header declares 6 × 28 × 28 bytes but which inflates to ``extra`` more."""
    raw = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 6, 28, 28) + bytes(6 * 28 * 28) + bytes(extra)
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    return path


def sequential_ann() -> nn.Module:
    """Layers at the top level of an ``nn.Sequential`` (names "0", "1", ...), BatchNorm and pooling included."""
    from helpers import randomize

    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), QCFS(4, 1.0), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(64, 10))  # fmt: skip
    return randomize(ann)


def torchvision_resnet() -> nn.Module:
    """torchvision's ResNet-18 (top-level conv1/bn1/fc, nested layer1.0.conv1) prepared with QCFS."""
    import warnings

    import torchvision

    from helpers import randomize

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max pooling → average pooling: the notice is tested elsewhere
        model = snnconv.prepare(torchvision.models.resnet18(num_classes=10).eval(), levels=4, threshold=2.0)
    return randomize(model, threshold=2.0)
