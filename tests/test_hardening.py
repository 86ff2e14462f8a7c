"""Issue #10: bad input raises a clear SnnconvError (API and CLI), and a killed training run resumes bit-exactly.

The bad-input table here is the README's ("Bad input, faults and determinism"); every row must raise a subclass
of ``SnnconvError`` (never a deep torch traceback or a silently wrong number), and the CLI must turn it into exit
status 2 and one line ``snnconv <command>: error: ...``.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconv.data.fashion_mnist as fm
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
from snnconv.train import epoch_generator


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
