"""Run directories: build the model and data a TrainConfig names, train it, and load it back for evaluation.

A run directory holds ``config.json``, ``last.pt`` (resumable training state), ``best.pt`` (best weights),
``metrics.jsonl`` and, after ``snnconv evaluate``, ``eval_<method>.json`` and plots.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from snnconv import distributed
from snnconv.checkpoint import KIND_MODEL, KIND_TRAIN, load_checkpoint, load_model_state
from snnconv.data import dataset_info, make_loader
from snnconv.errors import CheckpointError, SnnconvError, describe_nonfinite, nonfinite_tensors
from snnconv.finetune import init_qcfs_from_relu
from snnconv.functional.regularizer import QCFSRegularizer
from snnconv.functional.sparsity import BitSparsity
from snnconv.layers.act import make_act
from snnconv.models import create
from snnconv.models.pretrained import ZOO_PREFIX, load_pretrained
from snnconv.rundir import claim_run_dir
from snnconv.train import TrainConfig, fit, resolve_device, seed_everything

QAT_FILE = "qat.json"  # marks a QAT run directory (snnconv.qat_runs writes it)


def build_model(config: TrainConfig) -> nn.Module:
    """The model a config describes (architecture, dataset shape, activation, width)."""
    info = dataset_info(config.dataset)
    return create(
        config.model,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        input_size=info.input_size[0],
        act=make_act(config.act, levels=config.levels, threshold=config.threshold_init),
        width=config.width,
        **({} if config.dropout is None else {"dropout": config.dropout}),
    )


def output_dir(run: str | os.PathLike) -> Path:
    """Where commands write a run's reports: the run directory, or ``zoo-NAME`` in the working directory for a
    shipped network (``zoo:NAME``)."""
    text = str(run)
    return Path("zoo-" + text.removeprefix(ZOO_PREFIX).replace("/", "-")) if text.startswith(ZOO_PREFIX) else Path(run)


def test_loader(config: TrainConfig, *, batch_size: int = 256, subset: int | None = None,
                root: str | os.PathLike | None = None, rank: int = 0, world_size: int = 1):  # fmt: skip
    """The test split in a fixed order (``world_size > 1``: this rank's disjoint share of it)."""
    return make_loader(config.dataset, batch_size, shuffle=False, train=False, subset=subset, root=root, rank=rank,
                       world_size=world_size)  # fmt: skip


def train_run(config: TrainConfig, *, resume: bool = False, root: str | os.PathLike | None = None,
              extra_loss=None, overwrite: bool = False) -> dict:  # fmt: skip
    """Train the configured model on the configured dataset into ``config.out`` (resumable).

    ``fit`` re-seeds the train loader's sampler every epoch from (seed, epoch), so resumed runs see the same data.
    Under ``torchrun`` each rank loads its shard of the train and test sets (``config.batch_size`` is the global
    batch; see :mod:`snnconv.distributed`). The run directory is checked and locked before any work
    (``snnconv.rundir``; ``overwrite=True`` moves another run's files aside).
    """
    distributed.init(resolve_device(config.device))
    saved = Path(config.out) / "config.json"
    if resume and config.dropout is None and saved.is_file():  # a run from before `dropout` was recorded
        config = dataclasses.replace(config, dropout=TrainConfig.from_dict(json.loads(saved.read_text())).dropout)
    with claim_run_dir(config.out, config.to_dict(), resume=resume, overwrite=overwrite):
        return _train_run(config, resume, root, extra_loss)


def _train_run(config: TrainConfig, resume: bool, root: str | os.PathLike | None, extra_loss) -> dict:
    shard = distributed.shard_kwargs(config.batch_size)
    seed_everything(config.seed)
    model = build_model(config)
    data = {"shuffle": True, "seed": config.seed, "train": True, "subset": config.subset, "root": root,
            "augment": config.augment, "autoaugment": config.autoaugment, "cutout": config.cutout,
            "num_workers": config.num_workers, "drop_last": False}  # fmt: skip
    train = make_loader(config.dataset, **shard, **data)
    test = test_loader(config, root=root, rank=shard["rank"], world_size=shard["world_size"])
    if config.init_from and not resume:  # seed 001 A.9: weights from a ReLU run, λ from activation percentiles
        relu, _ = load_run(config.init_from)
        whole = train if shard["world_size"] == 1 else make_loader(config.dataset, config.batch_size, **data)
        init_qcfs_from_relu(model, relu, whole, percentile=config.init_percentile)  # same λ on every rank
    losses = [extra_loss] if extra_loss is not None else []
    if config.qcfs_reg > 0:  # seed 000: CE + w_q · mean((x - q)^2) over all QCFS pre-activations (SPEC §2 form)
        reg = QCFSRegularizer(model, form=config.qcfs_reg_form)
        losses.append(lambda m, logits, y: config.qcfs_reg * reg.loss())
    if config.sparsity > 0:  # seed 001 Eq. 10-11: coef · (number of 1-bits of the codes)
        bits = BitSparsity(model)
        losses.append(lambda m, logits, y: config.sparsity * bits.loss())
    if losses:
        extra_loss = lambda m, logits, y: sum(f(m, logits, y) for f in losses)  # noqa: E731
    return fit(model, train, test, config, config.out, resume=resume, extra_loss=extra_loss)


def load_run(run_dir: str | os.PathLike, which: str = "last") -> tuple[nn.Module, TrainConfig]:
    """The trained ANN of a run directory (``last.pt`` or ``best.pt``) and its config, loaded safely.

    ``zoo:NAME`` (or ``zoo:NAME/DATASET``) loads a network shipped with the package (``snnconv.models.pretrained``).
    """
    if str(run_dir).startswith(ZOO_PREFIX):
        return load_pretrained(str(run_dir).removeprefix(ZOO_PREFIX))
    run = Path(run_dir)
    if (run / QAT_FILE).is_file():  # every QCFS/ReLU command loads through here: one refusal for all of them
        raise CheckpointError(f"{run} is a QAT run (torch.ao fake-quantized model): load it with "
                              "snnconv.qat_runs.load_qat_run, evaluate it with --method calif")  # fmt: skip
    path = run / f"{which}.pt"
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in run.glob("*.pt"))) if run.is_dir() else "no such directory"
        raise CheckpointError(f"{path} not found ({found}); train first: snnconv train ... --out {run}")
    ckpt = load_checkpoint(path, kind=(KIND_MODEL, KIND_TRAIN))
    config, state = checked_contents(ckpt, path)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # shapes only: no memory, no RNG draws
        shapes = build_model(config)
    load_model_state(shapes, state, source=str(path), saved_model=config.model, model_name=config.model,
                     check_only=True)  # fmt: skip
    model = build_model(config)  # as large as the checkpoint's own tensors
    load_model_state(model, state, source=str(path), saved_model=config.model, model_name=config.model)
    refuse_nonfinite(model, path)
    return model.to(resolve_device("cpu")).eval(), config


def run_options(config: TrainConfig, method: str, options: dict | None = None) -> dict:
    """``options`` plus the conversion defaults the run's config records, where ``method`` takes them (issue 19):
    COS's ``cos_shift`` and bit-serial's ``extra_steps`` (runs saved before them: "theta" and "pad")."""
    out = dict(options or {})
    if method == "cos" or out.get("calibration") == "cos":
        out.setdefault("cos_shift", config.cos_shift)
    if method == "bitserial":
        out.setdefault("extra_steps", config.extra_steps)
    return out


def refuse_nonfinite(model: nn.Module, path: Path) -> None:
    """A ``CheckpointError`` naming the first tensor of ``model`` (just loaded from ``path``) with NaN/Inf values."""
    bad = nonfinite_tensors(model)
    if bad:
        raise CheckpointError(f"{path}: {describe_nonfinite(bad)}; the file is damaged or was written by a broken "
                              "run: use another checkpoint (--checkpoint best/last) or retrain")  # fmt: skip


def checked_contents(ckpt: dict, path: Path) -> tuple[TrainConfig, dict]:
    """A checkpoint's config (validated, bounded) and state dict, or a ``CheckpointError`` naming what is missing."""
    missing = [k for k in ("config", "model") if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path} has no {' or '.join(repr(k) for k in missing)} entry (a dict); it was not "
                              "written by snnconv train, or is damaged")  # fmt: skip
    try:
        config = TrainConfig.from_dict(ckpt["config"])
    except SnnconvError as e:
        raise CheckpointError(f"{path}: its config is invalid ({e})") from None
    state = ckpt["model"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict (str -> tensor)")
    return config, state


def evaluate_run(
    run: str | Path,
    T: Sequence[int],
    *,
    method: str = "if",
    batch_size: int = 128,
    subset: int | None = None,
    schedule: str = "layer",
    chunk: int | str | None = "auto",
    checkpoint: str = "last",
    root: str | None = None,
    progress: bool = True,
    options: dict | None = None,
) -> dict:
    """Evaluate a run directory: ANN accuracy and SNN accuracy at each T; returns the JSON-ready report."""
    from snnconv.convert import convert
    from snnconv.convert.calibration import calibrated_sweep

    ann, config = load_run(run, checkpoint)
    options = run_options(config, method, options)
    snn = convert(ann, method=method, **options)
    loader = test_loader(config, batch_size=batch_size, subset=subset, root=root)
    started = time.perf_counter()
    # the T result steps of any network (COS/SRP networks pre-run ρ/τ steps first; latency is reported)
    result = calibrated_sweep(snn, loader, T, ann=ann, schedule=schedule, chunk=chunk, progress=progress)
    return {
        "model": config.model,
        "dataset": config.dataset,
        "method": method,
        "options": options,
        "act": config.act,
        "levels": config.levels,
        "checkpoint": checkpoint,
        "schedule": schedule,
        **result.to_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
