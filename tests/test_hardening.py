"""Issue #10: bad input raises a clear SnnconvError (API and CLI), and a killed training run resumes bit-exactly.

The bad-input table here is the README's ("Bad input, faults and determinism"); every row must raise a subclass
of ``SnnconvError`` (never a deep torch traceback or a silently wrong number), and the CLI must turn it into exit
status 2 and one line ``snnconv <command>: error: ...``.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconv
import snnconv.data.fashion_mnist as fm
import snnconv.runs
from hardening_cases import (
    QUICK,
    bomb,
    hold_lock,
    poison,
    sequential_ann,
    tiny_fit,
    torchvision_resnet,
)
from snnconv import QCFS, IFNeuron, convert, simulate
from snnconv.checkpoint import KIND_TRAIN, load_checkpoint, load_model_state, save_checkpoint
from snnconv.cli import main
from snnconv.data import DatasetFormatError, DatasetNotFoundError, get_dataset, make_loader
from snnconv.errors import (
    CheckpointError,
    ConversionError,
    RegistryError,
    SimulationError,
    SnnconvError,
)
from snnconv.layers.act import make_act
from snnconv.models import create
from snnconv.rundir import LOCK_NAME
from snnconv.runs import load_run, train_run
from snnconv.train import TrainConfig, epoch_generator


def tiny(levels: int = 4, threshold: float = 1.0) -> nn.Module:
    """Flatten → Linear(4, 3) → QCFS → Linear(3, 2): converts in milliseconds."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), QCFS(levels, threshold), nn.Linear(3, 2)).eval()


def tiny_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(4, 1.0), nn.Flatten(), nn.Linear(8, 2)).eval()


def with_threshold(value: float) -> nn.Module:
    model = tiny()
    with torch.no_grad():
        model[2].threshold.fill_(value)
    return model


def edited_snn(value: float):
    """An SNN whose IF thresholds were edited after conversion (e.g. a hand-made or corrupted network)."""
    snn = convert(tiny())
    for neuron in snn.neurons().values():
        neuron.threshold.fill_(value)
    return snn


class _FunctionalMaxPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(1, 2, 3), QCFS(4, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.act(self.conv(x)), 2)


def write_idx(path: Path, arr: np.ndarray) -> None:
    raw = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw))


def fashion_folder(d: Path, n: int = 6) -> Path:
    """A complete, tiny Fashion-MNIST folder (all four gzip IDX files)."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for train in (True, False):
        img, lbl = fm.FASHION_MNIST_FILES[train]
        write_idx(d / f"{img}.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(d / f"{lbl}.gz", (np.arange(n) % 10).astype(np.uint8))
    return d


def _fashion_missing_file(tmp: Path) -> None:
    d = fashion_folder(tmp / "fm")
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    get_dataset("fashion-mnist", root=d, train=False)  # must not fall back to another copy silently


def _fashion_malformed_file(tmp: Path) -> None:
    d = fashion_folder(tmp / "fm")
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x12\x34\x08\x03 not an idx file"))
    get_dataset("fashion-mnist", root=d, train=False)


def _fashion_labels_out_of_range(tmp: Path) -> None:
    d = fashion_folder(tmp / "fm")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(6, 12, np.uint8))
    get_dataset("fashion-mnist", root=d, train=False)


def _imagenet_missing(tmp: Path) -> None:
    get_dataset("imagenet", root=tmp / "nowhere", train=True)


def _checkpoint_from_another_model(tmp: Path) -> None:
    mlp = create("mlp", num_classes=10, in_channels=1, input_size=8)
    cnn = create("small_cnn", num_classes=10, in_channels=1, input_size=8)
    load_model_state(cnn, mlp.state_dict(), source="run/best.pt", saved_model="mlp", model_name="small_cnn")


def _truncated_checkpoint(tmp: Path) -> None:
    path = save_checkpoint(tmp / "last.pt", {"model": tiny().state_dict(), "epoch": 3})
    path.write_bytes(path.read_bytes()[:-300])
    load_checkpoint(path)


def _text_file_as_checkpoint(tmp: Path) -> None:
    (tmp / "best.pt").write_text("this is not a checkpoint\n")
    load_checkpoint(tmp / "best.pt")


# (id, call taking a tmp dir, expected error class, regex the message must match)
BAD_INPUT: list[tuple[str, Callable[[Path], object], type[SnnconvError], str]] = [
    # unknown names: the message lists the valid ones
    ("unknown model", lambda t: create("vgg99"), RegistryError, r"unknown model 'vgg99'; registered models: .*mlp"),
    ("unknown dataset", lambda t: get_dataset("mnist-xl", train=True), RegistryError, r"valid names: .*digits"),
    ("unknown method", lambda t: convert(tiny(), method="magic"), RegistryError, r"valid methods: .*bitserial.*if"),
    ("unknown activation", lambda t: make_act("gelu"), RegistryError, r"'gelu'; choose one of relu, qcfs"),
    ("unknown option", lambda t: convert(tiny(), rho2=3), ConversionError, r"unknown option rho2; valid .*rho"),
    ("missing option", lambda t: convert(tiny(), method="ratenorm"), ConversionError, r"needs calibration=\.\.\."),
    ("not a model", lambda t: convert("vgg16"), ConversionError, r"must be a torch.nn.Module.*got str"),
    ("width 0", lambda t: create("vgg11", width=0.0), SnnconvError, r"width must be a finite multiplier > 0"),
    ("width nan", lambda t: create("mlp", width=float("nan")), SnnconvError, r"width must be a finite"),
    ("input size 0", lambda t: create("mlp", input_size=0), SnnconvError, r"input_size must be a positive integer"),
    ("levels 0", lambda t: QCFS(0), SnnconvError, r"levels must be a positive integer, got 0"),
    ("QCFS threshold < 0", lambda t: QCFS(4, -1.0), SnnconvError, r"threshold must be finite and > 0, got -1"),
    # bit-serial: T bits must represent L levels exactly, and the SNN is simulated with its own step count
    (
        "bitserial T too small",
        lambda t: convert(tiny(levels=8), method="bitserial", T=2),
        ConversionError,
        r"L=8 .*T=2 bits cannot represent exactly .*valid: T >= 4",
    ),
    (
        "bitserial steps > T",
        lambda t: convert(tiny(), method="bitserial", T=3, steps=5),
        ConversionError,
        r"steps must be an integer in 1\.\.T=3",
    ),
    (
        "bitserial simulated at another T",
        lambda t: simulate(convert(tiny(), method="bitserial"), torch.randn(2, 4), 5),
        SimulationError,
        r"fires 3 steps per layer but was simulated with T=5; simulate with T=3 or convert again with steps=5",
    ),
    (
        "bitserial step schedule",
        lambda t: simulate(convert(tiny(), method="bitserial"), torch.randn(2, 4), 3, schedule="step"),
        SimulationError,
        r"accumulate-then-fire.*schedule='layer'",
    ),
    # simulate: the message names the argument and what was expected
    (
        "x NaN",
        lambda t: simulate(convert(tiny()), torch.full((2, 4), float("nan")), 4),
        SimulationError,
        r"x contains 8 non-finite values",
    ),
    (
        "x Inf",
        lambda t: simulate(convert(tiny()), torch.tensor([[1.0, float("inf"), 0, 0]]), 4),
        SimulationError,
        r"x contains 1 non-finite",
    ),
    (
        "x features",
        lambda t: simulate(convert(tiny()), torch.randn(2, 5), 4),
        SimulationError,
        r"layer '1' failed: .*expects inputs with 4 features",
    ),
    (
        "x channels",
        lambda t: simulate(convert(tiny_conv()), torch.randn(2, 3, 4, 4), 4),
        SimulationError,
        r"layer '0' failed: .*expects \[B, 1, H, W\] inputs with 1 channels",
    ),
    (
        "x no batch",
        lambda t: simulate(convert(tiny()), torch.randn(4), 4),
        SimulationError,
        r"x must be a non-empty batch \[B, \.\.\.\], got shape \(4,\)",
    ),
    ("x list", lambda t: simulate(convert(tiny()), [[0.0] * 4], 4), SimulationError, r"x must be a tensor, got list"),
    (
        "x float64",
        lambda t: simulate(convert(tiny()), torch.randn(2, 4).double(), 4),
        SimulationError,
        r"x is torch.float64 .* network is torch.float32",
    ),
    ("T 0", lambda t: simulate(convert(tiny()), torch.randn(2, 4), 0), SimulationError, r"T must be a positive int"),
    ("T 2.5", lambda t: simulate(convert(tiny()), torch.randn(2, 4), 2.5), SimulationError, r"T must be a positive"),
    (
        "ANN to simulate",
        lambda t: simulate(tiny(), torch.randn(2, 4), 4),
        SimulationError,
        r"snn must be a SpikingNetwork, got Sequential; convert the ANN first",
    ),
    # layers that have no exact spiking equivalent: the message names the layer and the fix
    (
        "MaxPool2d",
        lambda t: convert(nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(4), nn.MaxPool2d(2)).eval()),
        ConversionError,
        r"layer '2' \(MaxPool2d\) cannot be converted: train with average pooling \(nn.AvgPool2d\)",
    ),
    (
        "F.max_pool2d",
        lambda t: convert(_FunctionalMaxPool().eval()),
        ConversionError,
        r"operation 'max_pool2d' .*average pooling",
    ),
    (
        "MaxPool2d bitserial",
        lambda t: convert(nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(3), nn.MaxPool2d(2)).eval(), method="bitserial"),
        ConversionError,
        r"layer '2' \(MaxPool2d\).*average pooling",
    ),
    (
        "LayerNorm",
        lambda t: convert(nn.Sequential(nn.Linear(4, 4), QCFS(4), nn.LayerNorm(4)).eval()),
        ConversionError,
        r"layer '2' \(LayerNorm\) is not supported .*supported layers are conv/linear",
    ),
    (
        "GELU",
        lambda t: convert(nn.Sequential(nn.Linear(4, 4), nn.GELU()).eval()),
        ConversionError,
        r"layer '1' \(GELU\) is not a QCFS activation: train with QCFS",
    ),
    # thresholds: an IF neuron with θ <= 0 would fire every step
    (
        "QCFS threshold -1 in the ANN",
        lambda t: convert(with_threshold(-1.0)),
        ConversionError,
        r"layer '2' \(QCFS\) has 1 of 1 thresholds that are not finite and > 0 \(min -1\).*qcfs-softplus",
    ),
    (
        "QCFS threshold 0 in the ANN",
        lambda t: convert(with_threshold(0.0)),
        ConversionError,
        r"layer '2' \(QCFS\).*\(min 0\)",
    ),
    (
        "QCFS threshold NaN",
        lambda t: convert(with_threshold(float("nan")), method="bitserial"),
        ConversionError,
        r"layer '2' \(QCFS\).*\(min nan\)",
    ),
    ("IFNeuron threshold 0", lambda t: IFNeuron(0.0), SnnconvError, r"thresholds must be finite and > 0 \(min 0\)"),
    (
        "edited SNN threshold -1",
        lambda t: simulate(edited_snn(-1.0), torch.randn(2, 4), 4),
        SimulationError,
        r"spiking layer '2' \(IFNeuron\) has 1 threshold value\(s\) that are not finite and > 0",
    ),
    (
        "edited SNN threshold 0",
        lambda t: simulate(edited_snn(0.0), torch.randn(2, 4), 4),
        SimulationError,
        r"spiking layer '2'.*\(min 0\)",
    ),
    # checkpoints
    (
        "checkpoint of another model",
        _checkpoint_from_another_model,
        CheckpointError,
        r"run/best.pt was saved from model 'mlp', which does not match 'small_cnn'; missing keys: ",
    ),
    ("truncated checkpoint", _truncated_checkpoint, CheckpointError, r"last.pt is corrupted or truncated"),
    ("text file as checkpoint", _text_file_as_checkpoint, CheckpointError, r"best.pt is corrupted or truncated"),
    ("missing checkpoint", lambda t: load_checkpoint(t / "none.pt"), CheckpointError, r"none.pt does not exist"),
    # dataset folders
    (
        "dataset file missing",
        _fashion_missing_file,
        DatasetNotFoundError,
        r"Fashion-MNIST in .*fm is incomplete: t10k-labels-idx1-ubyte.gz missing",
    ),
    (
        "dataset file malformed",
        _fashion_malformed_file,
        DatasetFormatError,
        r"t10k-images-idx3-ubyte.gz: bad IDX magic number",
    ),
    ("dataset labels out of range", _fashion_labels_out_of_range, DatasetFormatError, r"label 12 out of range 0\.\.9"),
    ("image folder missing", _imagenet_missing, DatasetNotFoundError, r"imagenet not found: .*train/<class>"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_raises_a_clear_snnconv_error(tmp_path, call, error, pattern, one_thread):
    with pytest.raises(SnnconvError) as exc:
        call(tmp_path)
    assert isinstance(exc.value, error), f"{type(exc.value).__name__}: {exc.value}"
    message = str(exc.value)
    assert message and "Traceback" not in message
    assert re.search(pattern, message), message


def test_valid_input_still_works(tmp_path, one_thread):
    """The guards above must not reject good input (a positive threshold, a matching bit-serial T, ...)."""
    x = torch.randn(3, 4)
    assert simulate(convert(tiny()), x, 4).logits.shape == (4, 3, 2)
    snn = convert(tiny(), method="bitserial")
    assert simulate(snn, x, snn.meta["steps"]).logits.shape == (3, 3, 2)
    assert simulate(convert(tiny_conv()), torch.randn(2, 1, 4, 4), 2).logits.shape == (2, 2, 2)
    assert len(get_dataset("fashion-mnist", root=fashion_folder(tmp_path / "fm"), train=False)) == 6


# --- the command line: exit status 2 and one line "snnconv <cmd>: error: ..." ----------------------------------

TRAIN = ["--model", "mlp", "--dataset", "digits", "--epochs", "1", "--lr", "0.05", "--threshold-init", "4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 1-epoch mlp run on digits."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TRAIN, "--out", str(out)]) == 0
    return out


def _copy_run(run: Path, tmp: Path) -> Path:
    dst = tmp / "copy"
    shutil.copytree(run, dst)
    return dst


def _truncate_last(run: Path, tmp: Path) -> list[str]:
    dst = _copy_run(run, tmp)
    data = (dst / "last.pt").read_bytes()
    (dst / "last.pt").write_bytes(data[: len(data) // 3])
    return ["evaluate", str(dst), "--T", "2"]


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling would create the marker file


def _malicious_last(run: Path, tmp: Path) -> list[str]:
    dst = _copy_run(run, tmp)
    record = load_checkpoint(dst / "last.pt")
    record["extra"] = _Evil(str(tmp / "pwned"))
    torch.save(record, dst / "last.pt")
    return ["evaluate", str(dst), "--T", "2"]


def _partial_fashion(run: Path, tmp: Path) -> list[str]:
    d = fashion_folder(tmp / "fm")
    (d / "train-images-idx3-ubyte.gz").unlink()
    return ["train", *TRAIN, "--dataset", "fashion-mnist", "--data-root", str(d), "--out", str(tmp / "r")]


CLI_BAD_INPUT: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("width 0", lambda r, t: ["train", *TRAIN, "--width", "0", "--out", str(t / "r")], "width must be a finite"),
    ("width nan", lambda r, t: ["train", *TRAIN, "--width", "nan", "--out", str(t / "r")], "width must be a finite"),
    (
        "threshold -1",
        lambda r, t: ["train", *TRAIN, "--threshold-init", "-1", "--out", str(t / "r")],
        "threshold must be finite and > 0",
    ),
    ("lr nan", lambda r, t: ["train", *TRAIN, "--lr", "nan", "--out", str(t / "r")], "lr must be > 0"),
    (
        "diverging lr",
        lambda r, t: ["train", *TRAIN, "--lr", "1e30", "--out", str(t / "r")],
        r"training diverged at epoch 1/1, step \d+: loss is (nan|inf); no checkpoint was written",
    ),
    (
        "resume nothing",
        lambda r, t: ["train", *TRAIN, "--resume", "--out", str(t / "r")],
        "cannot resume: .*last.pt does not exist",
    ),
    (
        "resume another model",
        lambda r, t: ["train", *TRAIN, "--model", "small_cnn", "--resume", "--out", str(r)],
        "config differs .*model: 'mlp' -> 'small_cnn'",
    ),
    ("missing run", lambda r, t: ["evaluate", str(t / "nowhere")], r"last.pt not found .*snnconv train"),
    ("truncated checkpoint", _truncate_last, "last.pt is corrupted or truncated"),
    ("malicious checkpoint", _malicious_last, "last.pt contains arbitrary Python objects and was refused"),
    ("dataset file missing", _partial_fashion, "is incomplete: train-images-idx3-ubyte.gz missing"),
    ("analyze missing run", lambda r, t: ["analyze", str(t / "nowhere")], r"last.pt not found"),
    ("inspect missing run", lambda r, t: ["inspect", str(t / "nowhere")], r"last.pt not found"),
    ("report missing dir", lambda r, t: ["report", str(t / "nowhere")], r"is not a directory"),
]


@pytest.mark.filterwarnings("ignore:QCFS. a threshold became non-positive:RuntimeWarning")
@pytest.mark.parametrize(("make_argv", "pattern"), [c[1:] for c in CLI_BAD_INPUT], ids=[c[0] for c in CLI_BAD_INPUT])
def test_cli_bad_input_is_one_line_and_exit_status_2(run_dir, tmp_path, capsys, make_argv, pattern, one_thread):
    argv = make_argv(run_dir, tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"snnconv {argv[0]}: error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "pwned").exists()  # the malicious checkpoint's code never ran


# --- crash recovery through the real command line ------------------------------------------------------------

CRASH_TRAIN = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "3", "--batch-size", "6", "--lr", "0.02",
               "--threshold-init", "4", "--seed", "3"]  # fmt: skip


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt", kind=KIND_TRAIN)["model"]


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main([*CRASH_TRAIN, "--out", str(out)]) == 0
    return out


def test_two_identical_cpu_runs_give_identical_weights(straight_run, tmp_path, capsys, one_thread):
    assert main([*CRASH_TRAIN, "--out", str(tmp_path / "again")]) == 0
    _assert_identical(_weights(straight_run), _weights(tmp_path / "again"))
    assert (straight_run / "metrics.jsonl").read_text().count("\n") == 3


def test_augmented_loader_shuffles_with_the_epoch_generator_fit_sets():
    """fit reseeds ``loader.sampler.generator`` every epoch; the augmented in-memory loader used to ignore it (its
    BatchSampler hid the RandomSampler), so a run resumed at epoch e replayed epoch 1's order."""

    def loader():
        return make_loader("digits", 16, shuffle=True, seed=0, train=True, augment=True)

    def first_labels(epoch: int) -> torch.Tensor:
        it = loader()
        it.sampler.generator = epoch_generator(0, epoch)
        return next(iter(it))[1]

    assert not torch.equal(first_labels(0), first_labels(1))
    continued = loader()  # epoch 1 after a full epoch 0, as in an uninterrupted run
    continued.sampler.generator = epoch_generator(0, 0)
    assert sum(len(y) for _, y in continued) == 1437
    continued.sampler.generator = epoch_generator(0, 1)
    assert torch.equal(next(iter(continued))[1], first_labels(1))


def test_sigkill_mid_epoch_then_resume_is_bit_identical(straight_run, tmp_path, capsys, one_thread):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "snnconv", *CRASH_TRAIN, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():  # the first checkpoint: epoch 1 is done, epoch 2 starts
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.002)
        time.sleep(0.05)  # into epoch 2 (240 steps of batch 6)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(out / "last.pt")["epoch"] == 1, "killed too late: epoch 2 was already checkpointed"
    assert main([*CRASH_TRAIN, "--resume", "--out", str(out)]) == 0
    _assert_identical(_weights(straight_run), _weights(out))
    metrics = [line for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    assert len(metrics) == 3  # no epoch lost or duplicated


def test_last_batch_of_one_is_skipped_not_a_batchnorm_crash(tmp_path, capsys, one_thread):
    """1437 digits training images in batches of 4 leave a batch of one, which BatchNorm cannot train on."""
    argv = ["train", "--model", "small_cnn", "--dataset", "digits", "--batch-size", "4", "--epochs", "1",
            "--width", "0.25", "--lr", "0.01", "--no-augment", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 0
    assert "best test accuracy" in capsys.readouterr().out


# --- issue 20: no silent overwrite, no silent mix, no plausible wrong answer ----------------------------------


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity tokens (what a strict JSON reader does)."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """main(argv)'s exit status, stdout and stderr."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str, command: str = "train") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"snnconv {command}: error: ") and "Traceback" not in err, err
    return lines[0]


def test_train_refuses_a_non_empty_directory_that_holds_no_run_of_its_config(tmp_path, capsys, one_thread):
    """Item 1: config.json, best.pt and the metrics of whatever was there used to be replaced or deleted."""
    out = tmp_path / "r"
    out.mkdir()
    files = {"config.json": '{"mine": 1}\n', "best.pt": "precious", "metrics.jsonl": "x\n", "notes.txt": "keep"}
    for name, text in files.items():
        (out / name).write_text(text)
    code, _, err = _run([*QUICK, "--out", str(out)], capsys)
    assert code == 2
    assert re.search(r"is not empty \(best.pt, config.json, metrics.jsonl, notes.txt\).*--overwrite", _one_line(err))
    assert {p.name: p.read_text() for p in out.iterdir()} == files  # nothing touched


def test_train_refuses_an_empty_out(tmp_path, capsys, monkeypatch, one_thread):
    """Item 1: --out "" trained into the current directory."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _run([*QUICK, "--out", ""], capsys)
    assert code == 2 and "--out: an empty path is refused" in _one_line(err)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SnnconvError, match="run directory is empty"):
        train_run(TrainConfig(model="mlp", dataset="digits", out=""))
    assert list(tmp_path.iterdir()) == []


def test_a_better_best_pt_is_never_replaced_by_a_fresh_start(tmp_path, capsys, one_thread):
    """Item 1: "delete the damaged last.pt" then "run without --resume" replaced an 8-epoch best.pt by an epoch-1
    one. Now the fresh start is refused, resuming says what to do, and --overwrite moves the old files aside."""
    out = tmp_path / "r"
    tiny_fit(out, epochs=2)
    (out / "last.pt").unlink()  # "delete it"
    best = (out / "best.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"not empty \(best.pt, config.json, metrics.csv, metrics.jsonl\)"):
        tiny_fit(out, epochs=2)
    with pytest.raises(CheckpointError, match=r"last.pt does not exist, but .* holds best.pt.*--overwrite"):
        tiny_fit(out, epochs=2, resume=True)
    assert (out / "best.pt").read_bytes() == best
    code, stdout, _ = _run([*QUICK, "--out", str(out), "--overwrite"], capsys)
    assert code == 0
    (aside,) = out.glob("replaced-*")
    assert f"moved best.pt, config.json, metrics.csv, metrics.jsonl from {out} to {aside}" in stdout
    assert (aside / "best.pt").read_bytes() == best  # the old best weights are kept, not deleted


def test_a_corrupted_last_pt_gets_safe_advice(tmp_path, one_thread):
    out = tmp_path / "r"
    tiny_fit(out, epochs=2, stop_after=1)
    (out / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as exc:
        tiny_fit(out, epochs=2, resume=True)
    message = str(exc.value)
    assert "last.pt is corrupted or truncated" in message and "keep it" in message and "--overwrite" in message
    assert "delete" not in message


def test_resume_refuses_a_best_pt_of_another_run(tmp_path, one_thread):
    """Item 1: resuming next to another run's best.pt could replace it with a worse one."""
    tiny_fit(tmp_path / "a", epochs=2)
    tiny_fit(tmp_path / "b", epochs=2, stop_after=1)
    shutil.copy(tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt")
    with pytest.raises(CheckpointError, match=r"best.pt \(epoch \d, test accuracy .*%\) belongs to another run"):
        tiny_fit(tmp_path / "b", epochs=2, resume=True)
    assert (tmp_path / "b" / "best.pt").read_bytes() == (tmp_path / "a" / "best.pt").read_bytes()


def test_a_second_writer_is_refused_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path, capsys, one_thread):
    """Item 2: two train processes on one --out interleaved their checkpoints and metrics."""
    out = tmp_path / "r"
    holder = hold_lock(out)
    try:
        code, _, err = _run([*QUICK, "--out", str(out)], capsys)
        assert code == 2
        assert f"is being written by another snnconv process (pid {holder.pid})" in _one_line(err)
        assert not (out / "config.json").exists()
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind, naming a process that is gone
        holder.wait()
    assert (out / LOCK_NAME).read_text().strip() == str(holder.pid)
    code, _, err = _run([*QUICK, "--out", str(out)], capsys)
    assert code == 0 and (out / "last.pt").is_file()
    assert f"took over the lock of {out} left by pid {holder.pid}, which is no longer running" in err
    assert not (out / LOCK_NAME).exists()  # released on exit


def test_stale_temporary_files_of_killed_writes_are_removed_on_start(tmp_path, one_thread):
    out = tmp_path / "r"
    tiny_fit(out, epochs=2, stop_after=1)
    stale = [out / ".last.pt.k1l2d.tmp", out / ".best.pt.x9.tmp", out / ".metrics.jsonl.abc.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    tiny_fit(out, epochs=2, resume=True)
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").exists()


def _tear(out: Path) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "lr": 0.0')
    with open(out / "metrics.csv", "a") as f:
        f.write("3,0.0")


@pytest.mark.parametrize("history_in_checkpoint", [True, False], ids=["checkpoint history", "older checkpoint"])
def test_torn_metrics_lines_are_dropped_and_rewritten_on_resume(tmp_path, history_in_checkpoint, one_thread):
    """A kill in the middle of an append left a torn last line, and --resume died on it (JSONDecodeError)."""
    out = tmp_path / "r"
    tiny_fit(out, epochs=3, stop_after=2)
    good = (out / "metrics.jsonl").read_text()
    _tear(out)
    if history_in_checkpoint:
        result = tiny_fit(out, epochs=3, resume=True)
    else:  # written before checkpoints carried the history: metrics.jsonl is read, its torn line dropped
        record = load_checkpoint(out / "last.pt")
        save_checkpoint(out / "last.pt", {k: v for k, v in record.items() if k != "history"})
        with pytest.warns(RuntimeWarning, match=r"metrics.jsonl: dropped 1 unreadable line\(s\) \(line 3"):
            result = tiny_fit(out, epochs=3, resume=True)
    assert [m["epoch"] for m in result["history"]] == [1, 2, 3]
    lines = [_strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3] and (out / "metrics.jsonl").read_text().startswith(good)
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and all(v not in (None, "") for r in rows for v in r.values())
    assert load_checkpoint(out / "last.pt")["history"] == lines  # the checkpoint carries the whole history


def test_convert_refuses_non_finite_weights_naming_the_tensor():
    """Item 3: one NaN in the first conv gave "ANN 11.2 %, SNN 42.0 % (+30.8 vs ANN)": NaN membranes never fire."""
    for name, value in (("0.weight", math.nan), ("3.bias", math.inf)):
        model = tiny_conv()
        with torch.no_grad():
            model.get_parameter(name).view(-1)[0] = value
        with pytest.raises(ConversionError, match=rf"tensor '{re.escape(name)}' has 1 non-finite value"):
            convert(model)
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), QCFS(4, 1.0)).eval()
    bn[1].running_var.fill_(math.inf)
    with pytest.raises(ConversionError, match=r"tensor '1.running_var' has 2 non-finite"):
        convert(bn)


def test_load_run_and_evaluate_refuse_non_finite_checkpoints(run_dir, tmp_path, capsys, one_thread):
    dst = _copy_run(run_dir, tmp_path)
    key = poison(dst / "last.pt")  # the checkpoint load_run and evaluate read by default
    with pytest.raises(CheckpointError, match=rf"last.pt: tensor '{re.escape(key)}' has 1 non-finite value"):
        load_run(dst)
    code, _, err = _run(["evaluate", str(dst), "--T", "2"], capsys)
    assert code == 2 and "non-finite" in _one_line(err, "evaluate")


@pytest.mark.parametrize(("make", "shape"), [(sequential_ann, (1, 8, 8)), (torchvision_resnet, (3, 32, 32))],
                         ids=["nn.Sequential", "torchvision resnet18"])  # fmt: skip
def test_nir_round_trip_of_top_level_layers(tmp_path, make, shape, one_thread):
    """Item 4: layers at the top level raised AttributeError: 'Module' object has no attribute 'add_submodule'."""
    pytest.importorskip("nir")
    from snnconv.nir_io import export_nir, import_nir

    snn = convert(make())
    export_nir(snn, tmp_path / "net.nir", shape)
    back = import_nir(tmp_path / "net.nir")
    assert list(back.neurons()) == list(snn.neurons())
    x = torch.rand(2, *shape)
    a, b = simulate(snn, x, 4), simulate(back, x, 4)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)


def test_nir_import_uses_the_graphs_thresholds_or_refuses_the_file(tmp_path):
    """Item 4: an edited IF.v_threshold was ignored in favour of snnconv's own metadata."""
    nir = pytest.importorskip("nir")
    from snnconv.nir_io import from_nir, import_nir, to_nir

    snn = convert(sequential_ann())
    graph = to_nir(snn, (1, 8, 8))
    node = graph.nodes["2"]
    node.v_threshold = node.v_threshold * 2  # edited by another tool, spike value left as it was
    with pytest.raises(ConversionError, match=r"IF node '2': its v_threshold and the scale .* differ"):
        from_nir(graph)
    graph.nodes["2.spike_value"].scale = graph.nodes["2.spike_value"].scale * 2
    back = from_nir(graph)
    assert torch.equal(back.neurons()["2"].threshold, 2 * snn.neurons()["2"].threshold)
    edited = convert(sequential_ann())
    edited.neurons()["2"].threshold.mul_(2)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(simulate(back, x, 4).logits, simulate(edited, x, 4).logits)
    node.v_threshold = node.v_threshold.copy()
    node.v_threshold[0, 0, 0] += 1  # one neuron of a channel: no per-channel threshold expresses that
    graph.nodes["2.spike_value"].scale = node.v_threshold.copy()
    with pytest.raises(ConversionError, match="varies within a channel"):
        from_nir(graph)
    (tmp_path / "garbage.nir").write_bytes(b"not a NIR file" * 20)
    with pytest.raises(ConversionError, match=r"garbage.nir is not a readable NIR file"):
        import_nir(tmp_path / "garbage.nir")
    only_input = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])})}, edges=[],
                              type_check=False)  # fmt: skip
    with pytest.raises(ConversionError, match="needs one Input and one Output node, it has 1 Input and 0 Output"):
        from_nir(only_input)
    nir.write(str(tmp_path / "foreign.nir"), only_input)
    with pytest.raises(ConversionError, match=r"import_nir: .*foreign.nir is not a readable NIR file"):
        import_nir(tmp_path / "foreign.nir")


def test_config_json_is_strict_json_and_non_finite_settings_are_refused(tmp_path, one_thread):
    """Item 5: NaN was written to config.json as an invalid token, so the run could never resume."""
    for field in ("qcfs_reg", "sparsity", "weight_decay", "threshold_init", "width", "init_percentile", "lr"):
        with pytest.raises(SnnconvError, match=rf"TrainConfig: {field} must be"):
            TrainConfig(model="mlp", dataset="digits", **{field: math.nan})
    out = tmp_path / "r"
    tiny_fit(out, epochs=1)
    assert _strict_json((out / "config.json").read_text())["qcfs_reg"] == 0.0


def test_an_explicit_data_root_is_used_or_refused(tmp_path, monkeypatch, capsys):
    """Item 6: a mistyped --data-root silently fell back to another copy of Fashion-MNIST."""
    monkeypatch.setenv("SNNCONV_DATA", str(tmp_path / "env"))
    fashion_folder(tmp_path / "env" / "fashion-mnist")  # a complete copy it must not fall back to
    typo = tmp_path / "fasion-mnist"
    with pytest.raises(DatasetNotFoundError, match=rf"not found in the given root: looked for .* in {typo} and"):
        get_dataset("fashion-mnist", root=typo, train=False)
    assert len(get_dataset("fashion-mnist", train=False)) == 6  # without a root: the environment's copy
    code, _, err = _run([*QUICK, "--dataset", "fashion-mnist", "--data-root", str(typo), "--out", str(tmp_path / "r")],
                     capsys)  # fmt: skip
    assert code == 2 and "looked for train-images-idx3-ubyte.gz" in _one_line(err)
    with pytest.raises(SnnconvError, match="digits ships with scikit-learn .* drop root="):
        get_dataset("digits", root=typo, train=False)


def _checkpoint_with(tmp: Path, run: Path, **changes) -> Path:
    dst = _copy_run(run, tmp)
    record = load_checkpoint(dst / "last.pt")  # what load_run reads by default
    for key, value in changes.items():
        if key in record["config"]:
            record["config"][key] = value
        elif value is None:
            record.pop(key)
    save_checkpoint(dst / "last.pt", {k: v for k, v in record.items() if k != "format_version"}, kind=record["kind"])
    return dst


def test_a_checkpoints_config_is_bounded_before_any_model_is_built(run_dir, tmp_path, monkeypatch):
    """A checkpoint's "width: 3000" allocated 165 GB before any check; a missing entry was a raw KeyError."""
    devices = []  # where each model was built: only on the meta device (shapes, no memory) until the shapes match
    monkeypatch.setattr(snnconv.runs, "create", lambda *a, **k: devices.append(torch.empty(0).device.type) or
                        create(*a, **k))  # fmt: skip
    with pytest.raises(CheckpointError, match=r"its config is invalid \(TrainConfig: width must be .*<= 16, got 3000"):
        load_run(_checkpoint_with(tmp_path / "w", run_dir, width=3000.0))
    with pytest.raises(CheckpointError, match=r"levels must be an integer in 1\.\.65536, got 10000000"):
        load_run(_checkpoint_with(tmp_path / "l", run_dir, levels=10**7))
    with pytest.raises(CheckpointError, match=r"last.pt has no 'config' entry"):
        load_run(_checkpoint_with(tmp_path / "c", run_dir, config=None))
    assert devices == []
    with pytest.raises(CheckpointError, match=r"another 'mlp' variant .*shape: "):
        load_run(_checkpoint_with(tmp_path / "s", run_dir, width=2.0))
    assert devices == ["meta"]  # the shapes were compared before any real tensor was allocated
    load_run(run_dir)
    assert devices == ["meta", "meta", "cpu"]


def test_T_and_levels_have_sanity_bounds_and_memory_is_estimated_first(monkeypatch, capsys):
    """T = 10**12 ended in a raw error, chunk=None with a huge T allocated tens of GB."""
    import snnconv.sim_checks as checks

    snn, x = convert(tiny_conv()), torch.randn(4, 1, 4, 4)
    with pytest.raises(SimulationError, match=r"T=1000000000000 is beyond the sanity bound of 65536"):
        simulate(snn, x, 10**12)
    monkeypatch.setattr(checks, "available_bytes", lambda device: 2**20)  # 1 MB free
    refused = r"T=5000 with chunk=None and a batch of 4 needs about 2 MB .*more than the 1 MB free on cpu; fold fewer"
    with pytest.raises(SimulationError, match=refused + r" steps at once: chunk='auto'"):
        simulate(snn, x, 5000, chunk=None)
    with pytest.raises(SimulationError, match=r"T=60000 with chunk='auto' .* needs about \d+ MB"):
        simulate(snn, x, 60000)
    assert simulate(snn, x, 8, chunk=None).logits.shape == (8, 4, 2)  # small runs are not refused
    for bad in (0, 10**6, 2.5):
        with pytest.raises(SnnconvError, match="levels must be"):
            QCFS(bad)
    with pytest.raises(SystemExit):
        main(["evaluate", "nowhere", "--T", "99999999999999999999999"])
    assert "--T values must be at most 65536 time steps" in capsys.readouterr().err


def test_gzip_bombs_stop_at_the_size_the_idx_header_declares(tmp_path):
    """The IDX reader inflated a gzip bomb to 5 GB before it failed."""
    import tracemalloc

    from snnconv.data import read_idx

    path = bomb(tmp_path / "t10k-images-idx3-ubyte.gz")
    tracemalloc.start()
    try:
        with pytest.raises(DatasetFormatError, match=r"trailing bytes: the gzip stream holds more than the 4720"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MB inflated for a 4.7 kB file"


def test_the_unsafe_pickle_refusal_names_the_global_and_how_to_re_save(run_dir, tmp_path):
    _malicious_last(run_dir, tmp_path)  # a copy of the run in tmp/copy whose last.pt would create tmp/pwned
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path / "copy" / "last.pt")
    message = str(exc.value)
    assert re.search(r"would call the Python global (builtins|io)\.open, which could run any code", message), message
    assert "weights_only=False" in message and "save_checkpoint" in message and message.endswith("save_checkpoint")
    assert not (tmp_path / "pwned").exists()


def test_convert_warns_about_a_model_in_training_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), QCFS(4, 1.0), nn.Flatten(), nn.Linear(8, 2))
    with pytest.warns(UserWarning, match=r"training mode .*'1'.*call ann.eval\(\) before converting"):
        convert(model.train())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(model.eval())


@pytest.mark.parametrize("threshold", [0.0, -1.0, math.nan, torch.tensor(0.0), torch.tensor([1.0, -2.0])])
def test_functional_qcfs_refuses_a_non_positive_threshold(threshold):
    """snnconv.qcfs(z, threshold=0 or -1) silently returned zeros; QCFS(...) refuses such a threshold."""
    with pytest.raises(SnnconvError, match=r"qcfs: thresholds? must be finite and > 0"):
        snnconv.qcfs(torch.randn(3, 2), threshold, 4)


# no raw traceback: each of these ended in one (or was silently accepted); now one line and exit status 2
def _out_is_a_file(r: Path, t: Path) -> list[str]:
    (t / "afile").write_text("x")
    return [*QUICK, "--out", str(t / "afile")]


def _out_below_a_file(r: Path, t: Path) -> list[str]:
    (t / "afile").write_text("x")
    return [*QUICK, "--out", str(t / "afile" / "run")]


CLI_ISSUE_20: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("qcfs-reg nan", lambda r, t: [*QUICK, "--qcfs-reg", "nan", "--out", str(t / "r")], r"--qcfs-reg: w_q must be fin"),
    ("qcfs-reg -1", lambda r, t: [*QUICK, "--qcfs-reg", "-1", "--out", str(t / "r")], r"w_q must be finite and >= 0"),
    ("sparsity -1", lambda r, t: [*QUICK, "--sparsity", "-1", "--out", str(t / "r")], r"--sparsity: .* >= 0"),
    ("lr inf", lambda r, t: [*QUICK, "--lr", "inf", "--out", str(t / "r")], r"--lr: lr must be > 0 and finite"),
    ("weight-decay -10", lambda r, t: [*QUICK, "--weight-decay", "-10", "--out", str(t / "r")], r"weight decay must"),
    ("num-workers -1", lambda r, t: [*QUICK, "--num-workers", "-1", "--out", str(t / "r")], r"--num-workers: .*0\.\."),
    ("init-percentile 200", lambda r, t: [*QUICK, "--init-percentile", "200", "--out", str(t / "r")], r"\(0, 100\]"),
    ("width 1e30", lambda r, t: [*QUICK, "--width", "1e30", "--out", str(t / "r")], r"<= 16, got 1e\+30"),
    ("seed 2**70", lambda r, t: [*QUICK, "--seed", str(2**70), "--out", str(t / "r")], r"--seed: the seed must be"),
    ("device bogus", lambda r, t: [*QUICK, "--device", "bogus", "--out", str(t / "r")], r"unknown device 'bogus'"),
    ("device cuda:99", lambda r, t: [*QUICK, "--device", "cuda:99", "--out", str(t / "r")], r"--device cuda:99: "),
    ("out is a file", _out_is_a_file, r"afile is a file; choose a directory"),
    ("out below a file", _out_below_a_file, r"cannot create the run directory .*afile/run"),
    ("bits 9", lambda r, t: [*QUICK, "--method", "qat", "--bits", "9", "--out", str(t / "r")], r"--bits: bits must"),
    ("empty json", lambda r, t: ["evaluate", str(r), "--json", ""], r"--json: an empty path is refused"),
]


@pytest.mark.parametrize(("make_argv", "pattern"), [c[1:] for c in CLI_ISSUE_20], ids=[c[0] for c in CLI_ISSUE_20])
def test_cli_issue_20_cases_are_one_line_and_exit_status_2(run_dir, tmp_path, capsys, make_argv, pattern):
    argv = make_argv(run_dir, tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    assert re.search(pattern, _one_line(err, argv[0])), err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_cli_device_cuda_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = _run([*QUICK, "--device", "cuda", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "no CUDA GPU is available on this machine; use --device cpu" in _one_line(err)


def test_report_skips_a_bad_eval_json_with_a_warning(tmp_path, capsys, one_thread):
    root = tmp_path / "runs"
    for name, report in (("good", {"method": "if", "snn_accuracy": {"1": 50.0, "2": 60.0}, "ann_accuracy": 70.0}),
                         ("bad", {"method": "if", "snn_accuracy": {"1": "x"}})):  # fmt: skip
        (root / name).mkdir(parents=True)
        (root / name / "eval_if.json").write_text(json.dumps(report))
    (root / "torn").mkdir()
    (root / "torn" / "eval_if.json").write_text('{"method": "if", "snn_acc')
    with pytest.warns(RuntimeWarning) as caught:
        assert main(["report", str(root)]) == 0
    skipped = sorted(str(w.message).split(" (")[0] for w in caught if "report: skipped" in str(w.message))
    assert skipped == [f"report: skipped {root / name / 'eval_if.json'}" for name in ("bad", "torn")]
    assert "good" in (root / "report.html").read_text()


def test_simulate_without_a_batch_dimension_and_prepare_of_a_string():
    with pytest.raises(SimulationError, match=r"layer '0' reads x as \[B, C, H, W\], got shape \(1, 4, 4\) \(no batch"):
        simulate(convert(tiny_conv()), torch.randn(1, 4, 4), 2)
    with pytest.raises(ConversionError, match=r"prepare: model must be a torch.nn.Module .*got str; build it first, "
                                              r"e.g. torchvision.models.resnet18\(num_classes=10\)"):  # fmt: skip
        snnconv.prepare("resnet18")
