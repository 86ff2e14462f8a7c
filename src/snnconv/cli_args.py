"""Argument types and value checks of the command line (kept apart from ``snnconv.cli``, which dispatches).

argparse parses the syntax (an int, a float, a comma-separated list); :func:`check_args` then checks every number
against its range before any work starts (issue 20): a NaN, an Inf or an out-of-range value of any flag is refused
in one line, ``snnconv <command>: error: --flag: ...``, instead of being ignored or written into config.json.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snnconv.errors import SnnconvError
from snnconv.limits import MAX_BATCH, MAX_EPOCHS, MAX_LEVELS, MAX_SAMPLES, MAX_SEED, MAX_T, MAX_WIDTH

ABLATIONS = ("left_shift", "bias_shift", "modified_neuron")


def T_list(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--T must be comma-separated integers like 1,2,4,8, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"--T values must be positive integers, got {text!r}")
    if values[-1] > MAX_T:
        raise argparse.ArgumentTypeError(f"--T values must be at most {MAX_T} time steps, got {values[-1]}")
    return values


def levels_list(text: str) -> list[int]:
    values = T_list(text)
    if values[-1] > MAX_LEVELS:
        raise argparse.ArgumentTypeError(f"levels must be at most {MAX_LEVELS}, got {values[-1]}")
    return values


def _parsed(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)`` where ``ok`` holds, else "expected <what>, got '<text>'"."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _parsed(int, lambda v: v >= 1, "a positive integer")
fraction = _parsed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
warmup_epochs = _parsed(float, lambda v: 0 <= v < math.inf, "a number of epochs >= 0")
threshold_floor = _parsed(float, lambda v: 0 <= v < math.inf, "a threshold floor >= 0")


def chunk(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def ablations(text: str) -> list[str]:
    names = list(ABLATIONS) if text == "all" else [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in ABLATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown ablation {bad[0]!r}; choose from {', '.join(ABLATIONS)} or 'all'")
    return names


def run_default(out: Path, resume: bool, key: str, fresh: float, legacy: float) -> float:
    """A flag's default: ``fresh`` for a new run; a resumed run keeps its own value (``legacy`` if its config.json
    predates the setting)."""
    saved = out / "config.json"
    if resume and saved.is_file():
        try:
            return json.loads(saved.read_text()).get(key, legacy)
        except (OSError, ValueError, AttributeError):
            return legacy  # a damaged config.json: the resume itself reports it
    return fresh


def default_warmup(out: Path, resume: bool, epochs: int) -> float:
    """1 epoch of warm-up for a new run; a resumed run keeps its own (runs from before issue 28 had none)."""
    return run_default(out, resume, "warmup_epochs", min(1.0, epochs), 0.0)


#: ``snnconv train``'s threshold floor for a new run (``TrainConfig.threshold_floor``, docs/depth.md)
THRESHOLD_FLOOR = 1e-3


def default_threshold_floor(out: Path, resume: bool) -> float:
    """``THRESHOLD_FLOOR`` for a new run; a resumed run keeps its own (runs from before issue 28 had none)."""
    return run_default(out, resume, "threshold_floor", THRESHOLD_FLOOR, 0.0)


def default_channels_last(out: Path, resume: bool, device: str) -> bool:
    """Train channels-last where the engine's own layout rule picks it (``simulate.resolve_layout``: CPUs without
    AVX-512, where it measured 1.3-1.4× faster for VGG training, benchmarks/README.md); a resumed run keeps its own
    layout (runs from before the option: NCHW)."""
    from snnconv.simulate import resolve_layout
    from snnconv.train import resolve_device

    fresh = resolve_layout("auto", resolve_device(device)) == "channels_last"
    return bool(run_default(out, resume, "channels_last", fresh, False))


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        default="last",
        choices=("last", "best"),
        help="last: the final epoch (default); best: the best test-accuracy epoch (selects on the test set)",
    )


def add_extra_steps_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    from snnconv.functional.bitserial import EXTRA_STEPS

    p.add_argument("--extra-steps", default=None, choices=EXTRA_STEPS,
                   help="bit-serial T above the exact T: refine (bits below the LSB, seed 001) or pad (SNN == QANN); "
                        "default: the run's config (pad for runs saved before issue 19)")  # fmt: skip


def add_train_args(p: argparse.ArgumentParser) -> None:
    from snnconv.data import list_datasets
    from snnconv.functional.regularizer import FORMS
    from snnconv.layers.act import ACT_KINDS
    from snnconv.models import list_models

    p.add_argument("--model", default="vgg16", choices=list_models())
    p.add_argument("--dataset", default="fashion-mnist", choices=list_datasets())
    p.add_argument("--act", default="qcfs", choices=ACT_KINDS, help="activation (relu for baselines)")
    p.add_argument("--levels", type=positive_int, default=4, help="QCFS quantization levels L")
    p.add_argument("--epochs", type=positive_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument(
        "--warmup-epochs",
        type=warmup_epochs,
        default=None,
        help="linear learning-rate warm-up over this many epochs (default: 1 for a new run, the run's own with "
        "--resume; 0: none, as seed 004; docs/depth.md)",
    )
    p.add_argument(
        "--threshold-floor",
        type=threshold_floor,
        default=None,
        help=f"keep every plain QCFS threshold >= this after each step (default: {THRESHOLD_FLOOR:g} for a new run, "
        "the run's own with --resume; 0: none, as seed 004; docs/depth.md)",
    )
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument(
        "--dropout",
        type=fraction,
        default=None,
        help="classifier dropout of VGG-style models (default: the model's own; VGG: 0.5; 0 is seed 004's code)",
    )
    p.add_argument("--threshold-init", type=float, default=8.0, help="initial QCFS threshold λ")
    p.add_argument("--qcfs-reg", type=float, default=0.0, help="w_q of the QCFS regularizer (seed 000), e.g. 0.1")
    p.add_argument("--qcfs-reg-form", default="raw", choices=FORMS, help="its reading (SPEC §2): seed = the paper's")
    p.add_argument("--sparsity", type=float, default=0.0, help="bit-level l1 coefficient (seed 001), e.g. 1e-8")
    p.add_argument("--init-from", default=None, help="start from this ReLU run: ReLU → QCFS fine-tuning (seed 001 A.9)")
    p.add_argument("--init-percentile", type=float, default=99.9, help="activation percentile for λ with --init-from")
    p.add_argument("--subset", type=positive_int, default=None, help="train on the first N samples only")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--autoaugment", action="store_true")
    p.add_argument("--cutout", action="store_true")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC weights and batches (default: on for CPUs without AVX-512, where it is faster; the "
                        "run's own with --resume)")  # fmt: skip
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--log",
        default="csv",
        choices=("csv", "tensorboard", "none"),
        help="per-epoch scalars: RUN/metrics.csv; tensorboard adds RUN/tb (needs the tensorboard package)",
    )
    p.add_argument("--data-root", default=None, help="dataset folder (default: standard locations)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a non-empty OUT (its entries are moved to OUT/replaced-<time>/)",
    )
    p.add_argument("--two-stage", action="store_true", help="CS-QCFS Algorithm 1: layer-wise, then channel-wise")
    p.add_argument("--finetune-epochs", type=int, default=0, help="stage-2 epochs at lr/10 (0: stage 1 only)")
    p.add_argument("--no-channel", action="store_true", help="two-stage ablation: layer-wise softplus thresholds")
    p.add_argument("--no-softplus", action="store_true", help="two-stage ablation: per-channel plain thresholds")


def add_calibration_args(p: argparse.ArgumentParser) -> None:
    from snnconv.layers.calibrated import COS_SHIFTS

    calib = p.add_argument_group("calibration (seed 002; --method cos/srp are shorthands)")
    calib.add_argument("--calibration", default="none", choices=("none", "cos", "srp"),
                       help="offset-spike (cos) or residual-potential (srp) calibration of the IF method")  # fmt: skip
    calib.add_argument("--rho", type=positive_int, default=4, help="COS pre-simulation steps")
    calib.add_argument("--tau", type=positive_int, default=4, help="SRP pre-run steps")
    calib.add_argument("--cos-shift", default=None, choices=COS_SHIFTS,
                       help="COS shift of a neuron that fired at every pre-run step: reference (the authors' code) or "
                            "theta; default: the run's config (theta for runs saved before issue 19)")  # fmt: skip
    p.add_argument("--binary-spikes", action="store_true", help="0/1 spikes, θ folded into the next weights")


# --- value checks (run by cli.main before the command) ----------------------------------------------------------


def _finite(v: float) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _int_in(low: int, high: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: low <= v <= high), f"an integer in {low}..{high}"


#: dest -> (test, what the value must be); the message reads "--flag: <name> must be <what>, got <value>"
CHECKS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "lr": ("lr", lambda v: _finite(v) and v > 0, "> 0 and finite"),
    "weight_decay": ("weight decay", lambda v: _finite(v) and v >= 0, "finite and >= 0"),
    "width": ("width", lambda v: _finite(v) and 0 < v <= MAX_WIDTH, f"a finite multiplier > 0 and <= {MAX_WIDTH:g}"),
    "threshold_init": ("the initial threshold", lambda v: _finite(v) and v > 0, "finite and > 0"),
    "qcfs_reg": ("w_q", lambda v: _finite(v) and v >= 0, "finite and >= 0 (0 = off)"),
    "sparsity": ("the sparsity coefficient", lambda v: _finite(v) and v >= 0, "finite and >= 0 (0 = off)"),
    "init_percentile": ("the percentile", lambda v: _finite(v) and 0 < v <= 100, "a finite number in (0, 100]"),
    "qcfs_reg_list": (
        "every w_q",
        lambda v: bool(v) and all(_finite(w) and w >= 0 for w in v),
        "finite and >= 0 (and at least one given)",
    ),  # fmt: skip
    "levels": ("levels", *_int_in(1, MAX_LEVELS)),
    "epochs": ("epochs", *_int_in(1, MAX_EPOCHS)),
    "batch_size": ("the batch size", *_int_in(1, MAX_BATCH)),
    "subset": ("the subset", *_int_in(1, MAX_SAMPLES)),
    "eval_subset": ("the subset", *_int_in(1, MAX_SAMPLES)),
    "batches": ("batches", *_int_in(1, MAX_SAMPLES)),
    "chunk": ("chunk", lambda v: v == "auto" or 1 <= v <= MAX_T, f"'auto' or an integer in 1..{MAX_T}"),
    "seed": ("the seed", *_int_in(0, MAX_SEED)),
    "num_workers": ("num_workers", *_int_in(0, 256)),
    "finetune_epochs": ("finetune_epochs", *_int_in(0, 10**6)),
    "bits": ("bits", *_int_in(2, 8)),
    "freeze_bn": ("the epoch", *_int_in(0, 10**6)),
    "freeze_observer": ("the epoch", *_int_in(0, 10**6)),
    "rho": ("rho", *_int_in(1, MAX_T)),
    "tau": ("tau", *_int_in(1, MAX_T)),
}
#: flags naming a path: an empty one would silently mean the current directory
PATHS = ("out", "json", "data_root", "init_from", "run", "dir")


def check_args(args: argparse.Namespace) -> None:
    """Refuse any out-of-range number, empty path or unusable device of ``args`` (an ``SnnconvError``)."""
    for dest, (name, ok, what) in CHECKS.items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise SnnconvError(f"--{dest.replace('_', '-')}: {name} must be {what}, got {value!r}")
    for dest in PATHS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            flag = dest if dest in ("run", "dir") else "--" + dest.replace("_", "-")
            raise SnnconvError(f"{flag}: an empty path is refused (it would mean the current directory); "
                               "name a directory, e.g. runs/NAME")  # fmt: skip
    if getattr(args, "device", None) is not None:
        from snnconv.device import check_device

        check_device(args.device, flag="--device")
