"""Atomic, weights_only-safe checkpoints (snnconv.checkpoint)."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from snnconv.checkpoint import (
    FORMAT_VERSION,
    KIND_MODEL,
    KIND_TRAIN,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from snnconv.errors import CheckpointError, SnnconvError


@dataclasses.dataclass
class _Cfg:
    model: str = "mlp"
    lr: float = 0.1
    subset: int | None = None


def _leftovers(directory: Path, target: str) -> list[Path]:
    return [p for p in directory.iterdir() if p.name != target]


def test_round_trip(tmp_path):
    payload = {
        "model": nn.Linear(3, 2).state_dict(),
        "nested": {"a": [1, 2.5, "x", None, True], "t": torch.arange(5)},
        "config": dataclasses.asdict(_Cfg()),
        "epoch": 3,
    }
    path = save_checkpoint(tmp_path / "sub" / "c.pt", payload)
    got = load_checkpoint(path, kind=KIND_TRAIN)
    assert got["format_version"] == FORMAT_VERSION and got["kind"] == KIND_TRAIN
    assert got["config"] == {"model": "mlp", "lr": 0.1, "subset": None} and got["epoch"] == 3
    for k, v in payload["model"].items():
        assert torch.equal(got["model"][k], v)
    assert torch.equal(got["nested"]["t"], torch.arange(5)) and got["nested"]["a"] == [1, 2.5, "x", None, True]
    assert _leftovers(path.parent, "c.pt") == []  # temp file renamed away
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like open(), not the temp file's 0600


def test_kind_is_checked(tmp_path):
    save_checkpoint(tmp_path / "m.pt", {"model": {}}, kind=KIND_MODEL)
    with pytest.raises(CheckpointError, match="of kind 'snnconv-model', expected 'snnconv-train'"):
        load_checkpoint(tmp_path / "m.pt", kind=KIND_TRAIN)
    assert load_checkpoint(tmp_path / "m.pt", kind=(KIND_TRAIN, KIND_MODEL))["kind"] == KIND_MODEL


def test_foreign_and_future_files(tmp_path):
    torch.save({"weight": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an snnconv checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format_version": FORMAT_VERSION + 1, "kind": KIND_TRAIN}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="upgrade snnconv"):
        load_checkpoint(tmp_path / "new.pt")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_corrupted_file(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(1000), "config": {"a": 1}})
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = random.Random(0).randbytes(4096)
    elif damage == "empty":
        data = b""
    else:  # corrupt the pickle stream inside an intact zip container
        i = data.index(b"data.pkl") + 200
        data = data[:i] + bytes(b ^ 0xFF for b in data[i : i + 64]) + data[i + 64 :]
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"c\.pt is corrupted or truncated .*delete it or resume from an"):
        load_checkpoint(path)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # loading would create the marker file


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "kind": KIND_TRAIN, "x": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt contains arbitrary Python objects and was refused"):
        load_checkpoint(path)
    assert not marker.exists()
    # The file really is malicious: unsafe loading runs its code.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_unsafe_payload_is_not_written(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"v": 1})
    with pytest.raises(CheckpointError, match=r"payload\['cfg'\] is a _Cfg.*dataclasses.asdict"):
        save_checkpoint(path, {"cfg": _Cfg()})
    assert load_checkpoint(path)["v"] == 1 and _leftovers(tmp_path, "c.pt") == []


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"v": 1})

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1 and _leftovers(tmp_path, "c.pt") == []


_WRITER = textwrap.dedent(
    """
    import sys, torch
    from snnconv.checkpoint import save_checkpoint
    path, n = sys.argv[1], int(sys.argv[2])
    i = 1
    while True:
        i += 1
        save_checkpoint(path, {"version": i, "w": torch.full((n,), float(i))})
        print(i, flush=True)
    """
)


def test_sigkill_mid_write_leaves_a_complete_checkpoint(tmp_path):
    n = 4_000_000  # 16 MB per write
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"version": 1, "w": torch.full((n,), 1.0)})
    rng = random.Random(0)
    for _attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
        try:
            done = [int(proc.stdout.readline()) for _ in range(2)]  # two complete rewrites
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        got = load_checkpoint(path)
        v = got["version"]
        assert v >= done[-1] and torch.equal(got["w"], torch.full((n,), float(v)))
        temps = _leftovers(tmp_path, "c.pt")
        assert all(p.name.startswith(".c.pt.") and p.name.endswith(".tmp") for p in temps)
        if temps:  # killed mid-write: the half-written temp file never became the target
            break


def test_wrong_model_state_dict():
    saved = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).state_dict()
    other = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(CheckpointError, match=r"saved from model 'mlp'.*'mlp-narrow'.*shape: 0\.weight: \(32, 64\)"):
        load_model_state(other, saved, saved_model="mlp", model_name="mlp-narrow")
    renamed = nn.Sequential()
    renamed.add_module("fc", nn.Linear(64, 32))
    with pytest.raises(SnnconvError) as e:
        load_model_state(renamed, saved, source="run/last.pt", saved_model="mlp")
    msg = str(e.value)
    assert "run/last.pt" in msg and "missing keys: fc.weight, fc.bias" in msg
    assert "unexpected keys: 0.weight, 0.bias, 2.weight" in msg and "Sequential" in msg


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "r.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])
