"""QAT run directories (seed 003 / SPEC §5): train a fake-quantized ReLU network, load it back, evaluate Ca-LIF.

``train_qat_run`` builds the config's model with ReLU activations, prepares it with ``snnconv.qat.prepare_qat``
(torch.ao FX graph mode, symmetric activation quantizers with zero point 0, conv-BN(-ReLU) fused so BN is
folded into the quantized weights) and trains it with ``snnconv.train.fit``: the run directory gets the usual
``config.json``, ``last.pt`` (resumable), ``best.pt`` and ``metrics.jsonl``, plus ``qat.json``
(``{"method": "qat", "bits": ...}`` and the quantizer settings needed to rebuild the graph). The checkpoints hold
the prepared GraphModule's ``state_dict``: weights, BN statistics and every fake quantizer's scale, zero point
and observer state (plain tensors, loaded with ``weights_only=True``).

``inputs="unit"`` (default) trains on the images in [0, 1] (the dataset's normalization undone, 8-bit pixels
k/255), so the input quantizer sees pixels and every input coding (``codes``, ``isi``, ``rate``, ``direct``)
applies; ``"normalized"`` trains on the usual normalized batches (``codes``/``direct`` only).

Observers are frozen while ``fit`` evaluates the test set (so the scales never see test data) and, with
``freeze_bn`` / ``freeze_observer``, from the start of that (0-based) epoch on; the schedule is re-applied on
resume, so a resumed run trains exactly as an uninterrupted one.

``load_qat_run`` rebuilds the prepared model and loads a checkpoint (observers and BN frozen, eval mode);
``qat_test_loader`` gives the test batches it expects; ``evaluate_calif_run`` converts it to Ca-LIF SNNs (one
conversion per T: the leak depends on T) and reports the QAT model's accuracy, the SNN's accuracy per T and their
agreement. Its neuron fires at most ``max_spikes_per_step`` spikes per step; by default the value the run's
config records (1, the seed's neuron, for runs trained since issue 19; None, the burst neuron, for older runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, fx, nn
from torch.ao.quantization import FakeQuantize, disable_observer

from snnconv import distributed, jsonio
from snnconv._deps import tqdm
from snnconv.checkpoint import KIND_MODEL, KIND_TRAIN, load_checkpoint, load_model_state
from snnconv.coding import CODINGS, ORDERS
from snnconv.data import dataset_info, make_loader
from snnconv.errors import CheckpointError, SnnconvError
from snnconv.functional.calif import check_max_spikes
from snnconv.qat import QATSchedule, freeze, prepare_qat
from snnconv.rundir import claim_run_dir
from snnconv.runs import QAT_FILE, build_model, checked_contents, refuse_nonfinite, test_loader
from snnconv.train import TrainConfig, _epoch_loader, fit, seed_everything

__all__ = [
    "QAT_FILE",
    "build_qat_model",
    "evaluate_calif_run",
    "load_qat_run",
    "print_calif_report",
    "qat_settings",
    "qat_test_loader",
    "train_qat_run",
    "write_calif_report",
]

_SETTING_KEYS = ("bits", "signed", "per_channel", "pow2", "freeze_bn", "freeze_observer", "inputs")
INPUTS = ("unit", "normalized")
_QUANTIZER_BUFFERS = ("scale", "zero_point", "min_val", "max_val")


def qat_settings(
    bits: int = 8,
    *,
    signed: bool = True,
    per_channel: bool = False,
    pow2: bool = True,
    freeze_bn: int | None = None,
    freeze_observer: int | None = None,
    inputs: str = "unit",
) -> dict:
    """The ``qat.json`` record of a QAT run (validated)."""
    if inputs not in INPUTS:
        raise SnnconvError(f"QAT: inputs must be one of {INPUTS}, got {inputs!r}")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise SnnconvError(f"QAT: bits must be an integer in 2..8, got {bits!r}")
    for name, v in (("freeze_bn", freeze_bn), ("freeze_observer", freeze_observer)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise SnnconvError(f"QAT: {name} must be a non-negative epoch number or None, got {v!r}")
    return {"method": "qat", "bits": bits, "signed": bool(signed), "per_channel": bool(per_channel), "pow2": bool(pow2),
            "freeze_bn": freeze_bn, "freeze_observer": freeze_observer, "inputs": inputs}  # fmt: skip


def example_input(config: TrainConfig, batch: int = 2) -> Tensor:
    """Zeros of the dataset's input shape: the example input of ``prepare_qat`` (graph tracing only)."""
    info = dataset_info(config.dataset)
    return torch.zeros(batch, info.in_channels, *info.input_size)


def build_qat_model(config: TrainConfig, settings: dict) -> fx.GraphModule:
    """The config's ReLU model prepared for QAT as ``settings`` (a ``qat_settings`` record) says (train mode)."""
    if config.act != "relu":
        raise SnnconvError(f"QAT trains the ReLU network; the config has act={config.act!r} (use act='relu')")
    return prepare_qat(build_model(config), example_input(config), settings["bits"], signed=settings["signed"],
                       per_channel=settings["per_channel"], pow2=settings["pow2"])  # fmt: skip


def _match_quantizer_shapes(model: nn.Module, state: dict) -> None:
    """Resize fresh quantizer buffers (per-channel scales start as shape (1,)) to a saved state's shapes."""
    for name, buf in model.named_buffers():
        if name.rsplit(".", 1)[-1] in _QUANTIZER_BUFFERS and name in state and buf.shape != state[name].shape:
            buf.resize_(state[name].shape)


class _Inputs:
    """Batches of ``loader`` as the QAT model sees them: ``"unit"`` undoes the dataset's normalization.

    ``"unit"`` gives the images in [0, 1], rounded to multiples of 1/255 (8-bit pixels), the range the paper's
    ISI/rate input coding expects; ``"normalized"`` passes the batches through.
    """

    def __init__(self, loader: Iterable, config: TrainConfig, inputs: str) -> None:
        self.loader, self.inputs = loader, inputs
        info = dataset_info(config.dataset)
        self.mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            if self.inputs == "unit":
                x = torch.round((x * self.std.to(x.device) + self.mean.to(x.device)) * 255).clamp_(0, 255) / 255
            yield x, y


class _ObserversOff:
    """A test loader whose iteration runs with every observer disabled (restored afterwards)."""

    def __init__(self, loader: Iterable, model: nn.Module) -> None:
        self.loader, self.model = loader, model

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        quantizers = [m for m in self.model.modules() if isinstance(m, FakeQuantize)]
        saved = [m.observer_enabled.clone() for m in quantizers]
        self.model.apply(disable_observer)
        try:
            yield from self.loader
        finally:
            for m, s in zip(quantizers, saved, strict=True):
                m.observer_enabled.copy_(s)


def _read_settings(run: Path) -> dict | None:
    path = run / QAT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); it should hold the run's QAT settings") from None
    if not isinstance(data, dict) or data.get("method") != "qat" or any(k not in data for k in _SETTING_KEYS):
        raise CheckpointError(f"{path} is not a QAT settings file (expected method 'qat' and keys {_SETTING_KEYS})")
    return data


def train_qat_run(
    config: TrainConfig,
    bits: int = 8,
    *,
    resume: bool = False,
    root: str | os.PathLike | None = None,
    signed: bool = True,
    per_channel: bool = False,
    pow2: bool = True,
    freeze_bn: int | None = None,
    freeze_observer: int | None = None,
    inputs: str = "unit",
    callbacks: Sequence[Callable[[dict], bool | None]] = (),
    overwrite: bool = False,
) -> dict:
    """QAT of the config's model (ReLU, ``bits``-bit fake quantization) into ``config.out`` (resumable).

    ``config.act`` is set to ``"relu"`` (QAT quantizes the ReLU network; the QCFS options do not apply).
    ``freeze_bn`` / ``freeze_observer``: freeze BN statistics / quantization scales from that many completed
    epochs on (``QATSchedule``); ``inputs``: ``"unit"`` ([0, 1] pixels) or ``"normalized"`` (see module doc);
    ``callbacks`` go to ``fit``; ``overwrite``: see ``snnconv.rundir``. Returns ``fit``'s result plus ``method``,
    ``bits`` and ``settings``.
    """
    if config.act != "relu":
        config = dataclasses.replace(config, act="relu")
    if config.qcfs_reg or config.sparsity or config.init_from:
        raise SnnconvError("QAT: qcfs_reg, sparsity and init_from are QCFS options; leave them unset")
    settings = qat_settings(bits, signed=signed, per_channel=per_channel, pow2=pow2, freeze_bn=freeze_bn,
                            freeze_observer=freeze_observer, inputs=inputs)  # fmt: skip
    out = Path(config.out)
    if resume:
        saved = _read_settings(out)
        if saved is None:
            raise CheckpointError(f"cannot resume {out} as a QAT run: {out / QAT_FILE} is missing")
        diff = [f"{k}: {saved[k]!r} -> {settings[k]!r}" for k in _SETTING_KEYS if saved[k] != settings[k]]
        if diff:
            raise CheckpointError(f"cannot resume {out}: the QAT settings differ ({'; '.join(diff)}); "
                                  "resume with the same settings or start a new run directory")  # fmt: skip
    with claim_run_dir(out, config.to_dict(), resume=resume, overwrite=overwrite, markers=()):
        return _train_qat(config, settings, resume, root, callbacks)


def _train_qat(config: TrainConfig, settings: dict, resume: bool, root: str | os.PathLike | None,
               callbacks: Sequence[Callable[[dict], bool | None]]) -> dict:  # fmt: skip
    out, last, bits = Path(config.out), Path(config.out) / "last.pt", settings["bits"]
    per_channel, inputs = settings["per_channel"], settings["inputs"]
    seed_everything(config.seed)
    model = build_qat_model(config, settings)
    if resume and per_channel and last.is_file():
        _match_quantizer_shapes(model, load_checkpoint(last, kind=KIND_TRAIN)["model"])
    train = make_loader(
        config.dataset, config.batch_size, shuffle=True, seed=config.seed, train=True, subset=config.subset,
        root=root, augment=config.augment, autoaugment=config.autoaugment, cutout=config.cutout,
        num_workers=config.num_workers, drop_last=False,
    )  # fmt: skip
    schedule = QATSchedule(settings["freeze_bn"], settings["freeze_observer"])

    def epoch_batches(epoch: int) -> Iterable:  # fit calls this after model.train(), before the epoch's batches
        schedule({"epoch": epoch, "model": model})
        return _Inputs(_epoch_loader(train, config.seed, epoch), config, inputs)

    if not resume and distributed.is_main():
        jsonio.write(out / QAT_FILE, settings, clean=False)
    test = _ObserversOff(_Inputs(test_loader(config, root=root), config, inputs), model)
    result = fit(model, epoch_batches, test, config, out, resume=resume, callbacks=callbacks)
    return {**result, "method": "qat", "bits": bits, "settings": settings}


def load_qat_run(run_dir: str | os.PathLike, which: str = "last") -> tuple[fx.GraphModule, TrainConfig]:
    """The fake-quantized model of a QAT run directory (``best.pt`` / ``last.pt``), frozen, in eval mode."""
    run = Path(run_dir)
    settings = _read_settings(run)
    if settings is None:
        what = "a run directory without" if (run / "config.json").is_file() else "no run directory /"
        raise CheckpointError(
            f"{run} is not a QAT run ({what} {QAT_FILE}); train one with `snnconv train --method qat --bits 8 "
            f"... --out {run}`, or load QCFS/ReLU runs with snnconv.runs.load_run"
        )
    path = run / f"{which}.pt"
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in run.glob("*.pt"))) or "no checkpoints"
        raise CheckpointError(f"{path} not found ({found}); train first: snnconv train --method qat ... --out {run}")
    ckpt = load_checkpoint(path, kind=(KIND_MODEL, KIND_TRAIN))
    config, state = checked_contents(ckpt, path)
    model = build_qat_model(config, settings)
    _match_quantizer_shapes(model, state)
    load_model_state(model, state, source=str(path), saved_model=config.model,
                     model_name=f"{config.model} (QAT, {settings['bits']} bits)")  # fmt: skip
    refuse_nonfinite(model, path)
    return freeze(model), config


def qat_test_loader(run_dir: str | os.PathLike, *, batch_size: int = 256, subset: int | None = None,
                    root: str | os.PathLike | None = None) -> Iterable[tuple[Tensor, Tensor]]:  # fmt: skip
    """The test batches of a QAT run as its model expects them (``[0, 1]`` images for ``inputs="unit"``)."""
    settings = _read_settings(Path(run_dir))
    if settings is None:
        raise CheckpointError(f"{run_dir} is not a QAT run (no {QAT_FILE})")
    config = TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    return _Inputs(test_loader(config, batch_size=batch_size, subset=subset, root=root), config, settings["inputs"])


@torch.no_grad()
def evaluate_calif_run(
    run_dir: str | os.PathLike,
    T_list: Sequence[int],
    *,
    subset: int | None = None,
    input_coding: str = "codes",
    order: str = "even",
    batch_size: int = 128,
    checkpoint: str = "last",
    root: str | os.PathLike | None = None,
    progress: bool = True,
    max_spikes_per_step: int | None | str = "run",
) -> dict:
    """QAT model vs its Ca-LIF SNN at each T on the test set; returns a JSON-ready report.

    ``max_spikes_per_step``: 1 (the seed's neuron), None (burst) or ``"run"`` (what the run's config records;
    None for runs saved before the option existed). Accuracies are in %; ``agreement[T]`` is the fraction of test
    images on which the SNN predicts the QAT model's class (``disagreements[T]`` counts the others);
    ``spike_rate[T]`` is spikes (of either sign, rounding spikes included) per neuron per step,
    ``spikes_per_image[T]`` their total per image.
    """
    from snnconv.convert import convert
    from snnconv.simulate import simulate

    T_list = sorted({int(t) for t in T_list})
    if not T_list or T_list[0] < 1:
        raise SnnconvError(f"evaluate_calif_run: T values must be positive integers, got {T_list}")
    if input_coding not in CODINGS:
        raise SnnconvError(f"evaluate_calif_run: input_coding must be one of {CODINGS}, got {input_coding!r}")
    if order not in ORDERS:
        raise SnnconvError(f"evaluate_calif_run: order must be one of {ORDERS}, got {order!r}")
    qat, config = load_qat_run(run_dir, checkpoint)
    if max_spikes_per_step == "run":
        max_spikes_per_step = config.max_spikes_per_step
    check_max_spikes(max_spikes_per_step, "evaluate_calif_run")
    settings = _read_settings(Path(run_dir))
    if input_coding in ("isi", "rate") and settings["inputs"] != "unit":
        raise SnnconvError(f"{input_coding} coding encodes [0, 1] pixels, but {run_dir} was trained on normalized "
                           "inputs; use input_coding='codes' or 'direct', or train with inputs='unit'")  # fmt: skip
    nets = {t: convert(qat, method="calif", T=t, input_coding=input_coding, order=order,
                       max_spikes_per_step=max_spikes_per_step) for t in T_list}  # fmt: skip
    loader = qat_test_loader(run_dir, batch_size=batch_size, subset=subset, root=root)
    started = time.perf_counter()
    total = qat_ok = 0
    snn_ok, agree, spikes, neurons = (dict.fromkeys(T_list, 0) for _ in range(4))
    bar = tqdm(loader, desc=f"Ca-LIF T={','.join(map(str, T_list))}", disable=not progress, leave=False)
    for x, y in bar:
        qpred = qat(x).argmax(-1)
        qat_ok += int((qpred == y).sum())
        total += len(y)
        for t, snn in nets.items():
            r = simulate(snn, x, t)
            pred = r.logits[-1].argmax(-1)
            snn_ok[t] += int((pred == y).sum())
            agree[t] += int((pred == qpred).sum())
            spikes[t] += float(sum(float(c.sum()) for c in r.spike_counts.values()))
            neurons[t] = sum(r.neurons.values())
        bar.set_postfix(agree=f"{agree[T_list[-1]] / total:.4f}")
    n = max(total, 1)
    pct = lambda k: 100.0 * k / n  # noqa: E731
    qat_acc = pct(qat_ok)
    return {
        "model": config.model,
        "dataset": config.dataset,
        "method": "calif",
        "bits": settings["bits"],
        "input_coding": input_coding,
        "inputs": settings["inputs"],
        "order": order,
        "max_spikes_per_step": max_spikes_per_step,
        "checkpoint": checkpoint,
        "T": T_list,
        "samples": total,
        "qat_accuracy": qat_acc,
        "snn_accuracy": {str(t): pct(snn_ok[t]) for t in T_list},
        "gap": {str(t): qat_acc - pct(snn_ok[t]) for t in T_list},
        "agreement": {str(t): agree[t] / n for t in T_list},
        "disagreements": {str(t): total - agree[t] for t in T_list},
        "spike_rate": {str(t): spikes[t] / max(1, neurons[t] * n * t) for t in T_list},
        "spikes_per_image": {str(t): spikes[t] / n for t in T_list},
        "neurons": neurons[T_list[-1]],
        "max_input_code": nets[T_list[-1]].meta.get("max_input_code"),
        "seconds": round(time.perf_counter() - started, 2),
    }


def print_calif_report(report: dict) -> None:
    """The report as a table: T, SNN accuracy, gap to the QAT model, agreement, spike rate."""
    from snnconv.report import table

    cap = report.get("max_spikes_per_step")
    neuron = "burst" if cap is None else f"≤ {cap} spike{'s' if cap > 1 else ''} per step"
    print(f"{report['model']} on {report['dataset']}, {report['bits']}-bit QAT → Ca-LIF SNN ({neuron}, input "
          f"coding {report['input_coding']}; {report['samples']} test images, {report['seconds']} s)")  # fmt: skip
    print(f"QAT (fake-quantized) ANN accuracy: {report['qat_accuracy']:.2f}%")
    rows = []
    for t in report["T"]:
        k = str(t)
        rows.append([t, report["snn_accuracy"][k], report["snn_accuracy"][k] - report["qat_accuracy"],
                     f"{report['agreement'][k]:.4f}", report["disagreements"][k],
                     f"{report['spike_rate'][k]:.4f}"])  # fmt: skip
    print(table(["T", "SNN acc %", "vs QAT", "agreement", "SNN≠QAT", "spike rate"], rows))


def write_calif_report(report: dict, run_dir: str | os.PathLike, json_path: str | os.PathLike | None = None) -> Path:
    """Write the report to ``json_path`` (default ``RUN/eval_calif.json``) and an accuracy-vs-T plot beside it."""
    from snnconv.analysis.plots import plot_accuracy_vs_T

    out = Path(json_path) if json_path else Path(run_dir) / "eval_calif.json"
    jsonio.write(out, report)
    title = f"{report['model']} / {report['dataset']} / {report['bits']}-bit QAT"
    plot_accuracy_vs_T({"Ca-LIF SNN": {int(t): a for t, a in report["snn_accuracy"].items()}},
                       out.with_suffix(".png"), ann_accuracy=report["qat_accuracy"], title=title)  # fmt: skip
    return out
