"""Model- and data-agnostic training loop with atomic checkpoints and bit-exact resume.

Reproducible data order: epoch ``e`` (0-based) shuffles with ``epoch_generator(config.seed, e)``. ``fit``
accepts either a ``DataLoader`` (before each epoch its ``RandomSampler`` gets that generator -- or a
``DistributedSampler`` gets ``set_epoch(e)`` -- and ``loader.generator`` gets a second stream, which seeds
the worker processes) or a callable ``make_train_loader(epoch) -> iterable`` that builds the epoch's batches
itself (use ``epoch_generator`` there). All other randomness (dropout, augmentation in the main process)
comes from the global RNGs, whose states are stored in every checkpoint and restored on resume.

Data-parallel training: under ``torchrun`` (``WORLD_SIZE > 1``) ``fit`` joins the process group, wraps the model in
``DistributedDataParallel``, averages the training metrics over ranks and lets rank 0 alone write the run
directory (the other ranks wait at a barrier); see :mod:`snnconv.distributed` for the data sharding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv import distributed, jsonio
from snnconv._deps import tqdm
from snnconv.checkpoint import (
    KIND_MODEL,
    KIND_TRAIN,
    atomic_write,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from snnconv.device import resolve_device
from snnconv.errors import CheckpointError, SnnconvError, TrainingDiverged
from snnconv.functional.bitserial import EXTRA_STEPS
from snnconv.functional.calif import check_max_spikes
from snnconv.functional.regularizer import FORMS
from snnconv.layers.act import ACT_KINDS
from snnconv.layers.calibrated import COS_SHIFTS
from snnconv.limits import check_train_bounds
from snnconv.metrics_log import LOG_KINDS, RunLog
from snnconv.resume import check_best, load_last, restore_history
from snnconv.rundir import CONVERSION_KEYS, claim_run_dir
from snnconv.threshold_events import ThresholdMonitor

ACTS = ACT_KINDS
OPTIMIZERS = ("sgd", "adam")
#: what a config written before a key existed means by its absence: the behaviour of that time
LEGACY_DEFAULTS: dict[str, Any] = {"extra_steps": "pad", "cos_shift": "theta", "max_spikes_per_step": None}


@dataclass
class TrainConfig:
    model: str
    dataset: str
    act: str = "qcfs"
    levels: int = 4
    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    nesterov: bool = False
    label_smoothing: float = 0.0
    seed: int = 0
    threshold_init: float = 8.0
    width: float = 1.0
    warmup_epochs: float = 0.0  # linear lr warm-up (not in seed 004; `snnconv train` defaults to 1, docs/depth.md)
    threshold_floor: float = 0.0  # λ ← max(λ, floor) after each step (not in seed 004; the CLI's default is 1e-3)
    dropout: float | None = None  # classifier dropout of models that have one; None: the model's default
    subset: int | None = None
    amp: bool = False  # bf16 autocast, only when running on CUDA
    channels_last: bool = False  # NHWC weights and batches (oneDNN's faster layout on many CPUs; other rounding)
    device: str = "auto"
    num_workers: int = 0
    augment: bool = True
    autoaugment: bool = False
    cutout: bool = False
    qcfs_reg: float = 0.0  # w_q of the seed 000 QCFS regularizer (0 = off)
    qcfs_reg_form: str = "raw"  # its reading (SPEC §2): "seed" (the paper's formula), "clipped" or "raw"
    sparsity: float = 0.0  # coefficient of the seed 001 bit-level l1 regularizer (0 = off)
    init_from: str | None = None  # run directory of a ReLU network to start from (seed 001 A.9)
    init_percentile: float = 99.9  # activation percentile that initialises λ when starting from ReLU
    log: str = "csv"  # per-epoch scalars: "csv" (RUN/metrics.csv), "tensorboard" (+ RUN/tb), "none"
    out: str = "runs/snnconv"
    # conversion defaults of this run (seed behaviour; runs saved without them keep LEGACY_DEFAULTS)
    extra_steps: str = "refine"  # bit-serial steps beyond the exact bits: "refine" (seed 001) or "pad"
    cos_shift: str = "reference"  # COS shift when a neuron fired at every pre-run step: "reference" or "theta"
    max_spikes_per_step: int | None = 1  # Ca-LIF spikes per step: 1 (seed 003) or None (burst)

    def __post_init__(self) -> None:
        if self.act not in ACTS:
            raise SnnconvError(f"TrainConfig: act must be one of {ACTS}, got {self.act!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SnnconvError(f"TrainConfig: optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise SnnconvError(f"TrainConfig: {name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):  # `not >` also catches NaN
            raise SnnconvError(f"TrainConfig: lr must be > 0 and finite, got {self.lr!r}")
        if self.log not in LOG_KINDS:
            raise SnnconvError(f"TrainConfig: log must be one of {LOG_KINDS}, got {self.log!r}")
        check_train_bounds(self)
        if self.dropout is not None and not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise SnnconvError(f"TrainConfig: dropout must be in [0, 1) or None, got {self.dropout!r}")
        if not (isinstance(self.threshold_floor, (int, float)) and 0 <= self.threshold_floor < self.threshold_init):
            raise SnnconvError(f"TrainConfig: threshold_floor must be >= 0 and below threshold_init "
                               f"({self.threshold_init}), got {self.threshold_floor!r}")  # fmt: skip
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs <= self.epochs):
            raise SnnconvError(
                f"TrainConfig: warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs!r}"
            )
        for name, allowed in (("qcfs_reg_form", FORMS), ("extra_steps", EXTRA_STEPS), ("cos_shift", COS_SHIFTS)):
            if getattr(self, name) not in allowed:
                raise SnnconvError(f"TrainConfig: {name} must be one of {', '.join(allowed)}, "
                                   f"got {getattr(self, name)!r}")  # fmt: skip
        check_max_spikes(self.max_spikes_per_step, "TrainConfig")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A saved config; keys it lacks get ``LEGACY_DEFAULTS`` (what they meant then), else today's default."""
        if not isinstance(d, dict):
            raise SnnconvError(f"TrainConfig: expected a dict of settings, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SnnconvError(f"TrainConfig: unknown keys {unknown}; known keys: {sorted(known)}")
        d = _legacy(d)
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in d
                         and f.default is dataclasses.MISSING)  # fmt: skip
        if missing:
            raise SnnconvError(f"TrainConfig: missing keys {missing}")
        return cls(**d)


def _saved_config(d: dict) -> dict:
    """A saved config with the keys added since it was written filled in: ``LEGACY_DEFAULTS``, else the default."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return {**defaults, **_legacy(d)}


_OLD_VGG_DROPOUT = 0.5  # VGG-11/16's classifier dropout of runs saved before the key was recorded


def _legacy(d: dict) -> dict:
    """``d`` with the keys it lacks set to what they meant when it was written (``LEGACY_DEFAULTS``; VGG-11/16's
    classifier dropout was 0.5 before issue 28)."""
    old = dict(LEGACY_DEFAULTS)
    if d.get("model") in ("vgg11", "vgg16"):
        old["dropout"] = _OLD_VGG_DROPOUT
    return {**old, **d}


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch, stream) only: epoch ``e`` shuffles alike in every run."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or Adam; weight decay on all parameters, as in the QCFS reference."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing over ``config.epochs``, stepped once per epoch."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


class Warmup:
    """Linear learning-rate warm-up: step k (counted from 0 over the run) of the first ``epochs · len(loader)`` steps
    runs at ``(k + 1) / warm-up steps`` times the scheduled rate (Goyal et al. 2017).

    Not part of seed 004's recipe. Without it, SGD at lr 0.1 on a freshly initialised deep QCFS network spikes its
    loss within the first ~30 steps, and the spike drives QCFS thresholds of early layers below zero, which kills
    those layers (docs/depth.md). The scaled rate is set around ``optimizer.step()`` only, so the epoch scheduler
    and the checkpointed optimizer state keep the scheduled rate and resuming stays bit-exact.
    """

    def __init__(self, epochs: float, loader: Any) -> None:
        self.epochs, self.steps, self.per_epoch = epochs, 0, None
        if epochs > 0 and not callable(loader):  # a callable loader gives its batches epoch by epoch: see ``bind``
            self._size(loader)

    def _size(self, batches: Any) -> None:
        try:
            per_epoch = len(batches)
        except TypeError:
            raise SnnconvError("warmup_epochs > 0 needs a train loader with len(); pass warmup_epochs=0 or a "
                               "sized loader") from None  # fmt: skip
        self.steps, self.per_epoch = math.ceil(self.epochs * per_epoch), per_epoch

    def bind(self, batches: Any) -> None:
        """Take the number of steps per epoch from an epoch's batches, if the loader did not give it up front."""
        if self.epochs > 0 and self.per_epoch is None:
            self._size(batches)

    @contextlib.contextmanager
    def scaled(self, optimizer: torch.optim.Optimizer, epoch: int, step: int):
        k = epoch * self.per_epoch + step if self.steps else 0
        if k >= self.steps:
            yield
            return
        scheduled = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] *= (k + 1) / self.steps
        try:
            yield
        finally:
            for g, lr in zip(optimizer.param_groups, scheduled, strict=True):
                g["lr"] = lr


def restore_training_state(ckpt: dict, model: nn.Module, optimizer, scheduler, *, source: str = "checkpoint"):
    """Load model, optimizer, scheduler and RNG states from a ``snnconv-train`` checkpoint."""
    saved = ckpt.get("config", {}).get("model")
    load_model_state(model, ckpt["model"], source=source, saved_model=saved)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])


def _epoch_loader(train_loader: Any, seed: int, epoch: int, rank: int = 0) -> Iterable:
    if callable(train_loader) and not hasattr(train_loader, "__iter__"):
        return train_loader(epoch)
    sampler = getattr(train_loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif hasattr(sampler, "generator"):
        sampler.generator = epoch_generator(seed, epoch)
    if hasattr(train_loader, "generator"):
        # a DataLoader's generator only seeds its workers: a stream per rank; others (TensorBatchLoader) shuffle
        # with it, which must be the same permutation on every rank
        stream = 1 + rank if isinstance(train_loader, torch.utils.data.DataLoader) else 1
        train_loader.generator = epoch_generator(seed, epoch, stream=stream)
    return train_loader


def _autocast(enabled: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def to_device(x: Tensor, device: torch.device | str, channels_last: bool = False) -> Tensor:
    """``x`` on ``device``; a 4-D batch in NHWC order when ``channels_last``."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: Iterable, device: torch.device | str = "cpu", *, amp: bool = False, reduce: bool = False,
    channels_last: bool = False,
) -> dict:  # fmt: skip
    """Mean cross-entropy and top-1 accuracy (fraction) of ``model`` on ``loader``.

    ``reduce=True`` (data-parallel, each rank holding a shard of the test set): sums over all ranks first.
    ``channels_last``: feed 4-D batches in NHWC order (as ``fit`` does for a ``channels_last`` run).
    """
    was_training = model.training
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(amp):
            out = model(x).float()
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
    model.train(was_training)
    if reduce:
        loss, correct, seen = distributed.all_reduce_sum([loss, correct, seen])
    return {"loss": loss / max(seen, 1), "acc": int(correct) / max(seen, 1)}


def _nonfinite(model: nn.Module) -> list[str]:
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [n for n, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def fit(
    model: nn.Module,
    train_loader: Iterable | Callable[[int], Iterable],
    test_loader: Iterable,
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    extra_loss: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
    callbacks: Sequence[Callable[[dict], bool | None]] = (),
    overwrite: bool = False,
) -> dict:
    """Train ``model`` for ``config.epochs`` epochs; write last.pt, best.pt, metrics.jsonl, metrics.csv to ``out_dir``.

    ``extra_loss(model, logits, targets)`` is added to the cross entropy. Each callback gets
    ``{"epoch", "metrics", "model", "optimizer", "scheduler", "rank"}`` after the epoch's checkpoint; returning
    True stops training. Returns ``{"best_acc", "best_epoch", "final_acc", "epochs_completed", "history",
    "out_dir", "stopped_early"}``. Seed and build the model before calling; a fresh run reseeds with
    ``config.seed`` for the training randomness, ``resume=True`` restores everything from ``last.pt``.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank calls ``fit`` with its shard of the training data
    (``make_loader(..., rank=, world_size=)`` or a ``DistributedSampler``; a callable must shard itself and yield
    the same number of batches on every rank); the model is wrapped in ``DistributedDataParallel``, metrics are
    summed over ranks, callbacks run on every rank (a stop on any rank stops all) and only rank 0 writes files.

    The run directory is held exclusively while ``fit`` runs and a fresh run refuses one holding other files unless
    ``overwrite=True``, which moves them aside first (:func:`snnconv.rundir.open_run_dir`).
    """
    device = distributed.init(resolve_device(config.device))  # joins the torchrun process group, if any
    out = out_dir if out_dir is not None else config.out
    with claim_run_dir(out, config.to_dict(), resume=resume, overwrite=overwrite):
        return _fit(model, train_loader, test_loader, config, Path(out), device, resume, extra_loss, callbacks)


def _fit(
    model: nn.Module,
    train_loader: Any,
    test_loader: Iterable,
    config: TrainConfig,
    out: Path,
    device: torch.device,
    resume: bool,
    extra_loss: Callable[[nn.Module, Tensor, Tensor], Tensor] | None,
    callbacks: Sequence[Callable[[dict], bool | None]],
) -> dict:
    last, best, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    use_amp = config.amp and device.type == "cuda"
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer, cfg = make_optimizer(model, config), config.to_dict()
    scheduler = make_scheduler(optimizer, config)
    start, best_acc, best_epoch, history = 0, -1.0, 0, []
    monitor = ThresholdMonitor(model, floor=config.threshold_floor)
    warmup = Warmup(config.warmup_epochs, train_loader)
    runlog = RunLog(out, config.log) if main else None
    run_id = uuid.uuid4().hex  # os.urandom: the seeded generators are not touched
    if resume:
        ckpt = load_last(out, cfg, saved_config=_saved_config)
        check_best(out, ckpt)
        restore_training_state(ckpt, model, optimizer, scheduler, source=str(last))
        saved = _saved_config(ckpt["config"])
        cfg.update({k: saved[k] for k in CONVERSION_KEYS})  # the run keeps the conversion defaults it started with
        start, best_acc, best_epoch = ckpt["epoch"], ckpt["best_acc"], ckpt["best_epoch"]
        monitor = ThresholdMonitor(model, ckpt.get("threshold_events"), floor=config.threshold_floor)
        run_id = ckpt.get("run_id") or run_id
        if rank > 0:  # each rank continues its own RNG streams (a fresh one if the world size changed)
            ranks = ckpt.get("rng_ranks") or []
            if len(ranks) == world:
                set_rng_state(ranks[rank])
            else:
                seed_everything(distributed.rank_seed(config.seed, rank, start))
        history = restore_history(out, ckpt)
        if main:
            _write_metrics(metrics_path, history)
            if best_epoch == start and best_epoch > 0 and _saved_epoch(best) != best_epoch:
                save_checkpoint(best, _model_payload(ckpt), kind=KIND_MODEL)  # crash between last.pt and best.pt
    else:
        seed_everything(config.seed if rank == 0 else distributed.rank_seed(config.seed, rank))
        if main:
            metrics_path.unlink(missing_ok=True)
    if main:
        _write_text(out / "config.json", jsonio.dumps(cfg, clean=False, indent=2) + "\n")
        runlog.start(history, model, resume=resume)
    net = model
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if world > 1:
        if not callable(train_loader) and not distributed.is_sharded(train_loader):
            warnings.warn(
                "fit: the train loader is not sharded per rank, so every rank iterates all of it; build it with "
                "make_loader(..., rank=distributed.rank(), world_size=distributed.world_size())",
                RuntimeWarning,
                stacklevel=3,
            )
        distributed.barrier()  # no rank trains (or rank 0 writes last.pt) before every rank has checked the dir
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    reduce_eval = world > 1 and distributed.is_sharded(test_loader)
    saved_epoch = start if resume else None
    stopped = False
    try:
        for epoch in range(start, config.epochs):
            t0, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            net.train()
            loss_sum, correct, seen = 0.0, torch.zeros((), dtype=torch.long, device=device), 0
            batches = _epoch_loader(train_loader, config.seed, epoch, rank)
            warmup.bind(batches)
            bar = tqdm(
                batches,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=None if main else True,
                leave=False,
                dynamic_ncols=True,
            )
            for step, (x, y) in enumerate(bar):
                if len(y) == 1 and has_bn:  # a last batch of one: BatchNorm cannot normalise it; skipped (every rank)
                    continue
                x, y = to_device(x, device, config.channels_last), y.to(device, non_blocking=True)
                with _autocast(use_amp):
                    logits = net(x).float()
                    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                    if extra_loss is not None:
                        loss = loss + extra_loss(model, logits, y)
                value = loss.item()
                # every rank must see a non-finite loss on any rank, or the others would wait for it forever
                if not math.isfinite(distributed.all_reduce_sum([value])[0] if world > 1 else value):
                    where = f"step {step + 1}: loss is {value}" + (f" (on some rank of {world})" if world > 1 else "")
                    raise _diverged(config, epoch, where, last, saved_epoch, lr)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                with warmup.scaled(optimizer, epoch, step):
                    optimizer.step()
                monitor.check(epoch + 1, step + 1)
                loss_sum += value * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if step % 20 == 0 and not bar.disable:
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * int(correct) / seen:.2f}%")
            scheduler.step()
            distributed.broadcast_buffers(model)  # BatchNorm statistics of rank 0: identical models everywhere
            bad = _nonfinite(model)
            if bad:
                raise _diverged(config, epoch, f"end of epoch: non-finite weights in {bad[:5]}", last, saved_epoch, lr)
            if world > 1:
                loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, int(correct), seen])
            ev = evaluate(model, test_loader, device, amp=use_amp, reduce=reduce_eval,
                          channels_last=config.channels_last)  # fmt: skip
            improved = ev["acc"] > best_acc
            if improved:
                best_acc, best_epoch = ev["acc"], epoch + 1
            metrics = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": int(correct) / max(seen, 1),
                "test_loss": ev["loss"],
                "test_acc": ev["acc"],
                "best_acc": best_acc,
                "time_s": round(time.perf_counter() - t0, 3),
            }
            rngs = distributed.gather_objects(rng_state()) if world > 1 else None
            if main:
                payload = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "best_acc": best_acc,
                    "best_epoch": best_epoch,
                    "rng": rng_state(),
                    "config": cfg,
                    "metrics": metrics,
                    "threshold_events": monitor.events,
                    "history": [*history, metrics],  # metrics.jsonl is rebuilt from it on resume
                    "run_id": run_id,
                }
                if rngs is not None:
                    payload["rng_ranks"] = rngs
                save_checkpoint(last, payload, kind=KIND_TRAIN)  # last.pt first: resume heals a missing best.pt
                if improved:
                    save_checkpoint(best, _model_payload(payload), kind=KIND_MODEL)
                monitor.write(out)
                _write_metrics(metrics_path, [*history, metrics])  # atomically: no torn line
                runlog.log(metrics, model)
            distributed.barrier()  # the other ranks wait until rank 0 has written the epoch
            saved_epoch = epoch + 1
            history.append(metrics)
            info = {
                "epoch": epoch + 1,
                "metrics": metrics,
                "model": model,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "rank": rank,
            }
            if distributed.any_true(any([bool(cb(info)) for cb in callbacks])):
                stopped = True
                break
    finally:
        if runlog is not None:
            runlog.close()
    return {
        "best_acc": best_acc,
        "best_epoch": best_epoch,
        "final_acc": history[-1]["test_acc"] if history else None,
        "epochs_completed": history[-1]["epoch"] if history else start,
        "history": history,
        "out_dir": str(out),
        "stopped_early": stopped,
    }


def _model_payload(p: dict) -> dict:
    return {k: p[k] for k in ("model", "config", "epoch", "best_acc", "metrics", "run_id") if k in p}


def _write_metrics(path: Path, history: list[dict]) -> None:
    _write_text(path, "".join(jsonio.dumps(m) + "\n" for m in history))


def _saved_epoch(path: Path) -> int | None:
    try:
        return load_checkpoint(path).get("epoch")
    except CheckpointError:
        return None


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _diverged(config: TrainConfig, epoch: int, what: str, last: Path, saved: int | None, lr: float):
    good = f"last good checkpoint: {last} (epoch {saved})" if saved else "no checkpoint was written yet"
    return TrainingDiverged(
        f"training diverged at epoch {epoch + 1}/{config.epochs}, {what}; {good}. "
        f"Lower the learning rate (lr was {lr:.4g}) or check the data/model for NaNs"
    )
