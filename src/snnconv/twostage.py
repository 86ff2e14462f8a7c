"""Two-stage training of CS-QCFS (seed 002, Algorithm 1; SPEC §4).

Stage 1 trains layer-wise QCFS thresholds λ^l (``runs.train_run``) into ``<out>/stage1``. Stage 2 replaces every
QCFS by a channel-wise softplus QCFS whose λ_c = softplus⁻¹(θ^l) for every channel (``to_channelwise``: the
network computes exactly the stage-1 function at that moment), and fine-tunes everything at lr/10 for
``finetune_epochs`` into ``<out>/stage2``.

Ablations (seed 002 Tables 3-4) by arguments: ``channelwise=False`` (w/o channel: layer-wise softplus),
``softplus=False`` (w/o softplus: per-channel plain λ_c = θ^l), both False (Table 4 "layer-wise": the same
fine-tuning of layer-wise QCFS), ``finetune_epochs=0`` (Table 4 "origin": stage 1 only).

Stage 2's ``config.json`` names act ``"csqcfs"`` for the full method (``runs.load_run`` rebuilds it) and ``"qcfs"``
for the layer-wise plain variant. The two other ablations have no activation kind of their own: their config says
``"csqcfs"``/``"qcfs"`` by shape only, and ``twostage.json`` records the variant; load them with
``load_two_stage``, which rebuilds every variant correctly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from functools import partial
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv import distributed, jsonio
from snnconv.checkpoint import KIND_MODEL, KIND_TRAIN, load_checkpoint, load_model_state
from snnconv.convert.trace import trace
from snnconv.data import dataset_info, make_loader
from snnconv.errors import CheckpointError, SnnconvError
from snnconv.functional.regularizer import QCFSRegularizer
from snnconv.layers.qcfs import QCFS, inverse_softplus
from snnconv.rundir import claim_run_dir
from snnconv.runs import build_model, checked_contents, load_run, refuse_nonfinite, test_loader, train_run
from snnconv.train import TrainConfig, fit, resolve_device, seed_everything

__all__ = ["exact_inverse_softplus", "load_two_stage", "qcfs_channels", "to_channelwise", "two_stage"]

MARKER = "twostage.json"


def exact_inverse_softplus(theta: Tensor) -> Tensor:
    """λ with softplus(λ) == θ bit-exactly in θ's dtype where such a λ exists (else the nearest), elementwise.

    Starts from ``inverse_softplus`` and tries the neighbouring floats, so that switching a layer to the softplus
    parameterization leaves its forward pass bit-identical.
    """
    theta = theta.detach()
    lam = inverse_softplus(theta.double()).to(theta.dtype)
    best, err = lam.clone(), (F.softplus(lam) - theta).abs()
    up, down = lam.clone(), lam.clone()
    for _ in range(8):
        up = torch.nextafter(up, torch.full_like(up, math.inf))
        down = torch.nextafter(down, torch.full_like(down, -math.inf))
        for cand in (up, down):
            e = (F.softplus(cand) - theta).abs()
            better = e < err
            best, err = torch.where(better, cand, best), torch.where(better, e, err)
    return best


def _channels_from_graph(model: nn.Module) -> dict[str, int]:
    """QCFS name -> channels, from the nearest conv/linear/BN before it in the traced graph."""
    gm: fx.GraphModule = trace(model)
    found: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), QCFS):
            continue
        prev = node.args[0] if node.args else None
        while isinstance(prev, fx.Node):
            mod = gm.get_submodule(prev.target) if prev.op == "call_module" else None
            size = (getattr(mod, "out_channels", None) or getattr(mod, "out_features", None)
                    or getattr(mod, "num_features", None)) if mod is not None else None  # fmt: skip
            if size:
                found[node.target] = int(size)
                break
            prev = prev.args[0] if prev.args and isinstance(prev.args[0], fx.Node) else None
    return found


@torch.no_grad()
def qcfs_channels(model: nn.Module, example: Tensor | None = None) -> dict[str, int]:
    """Number of channels (size of axis 1 of its input) of every QCFS module of ``model``, by qualified name.

    With ``example`` (any input batch, e.g. zeros of the dataset's shape): measured by forward hooks in eval mode
    (BN statistics are not touched). Without: read from the preceding conv/linear/BN of the traced graph.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, QCFS)]
    if example is None:
        found = _channels_from_graph(model)
    else:
        found = {}

        def hook(module: nn.Module, args: tuple, output: Tensor, name: str) -> None:
            found.setdefault(name, int(args[0].shape[1]))

        handles = [model.get_submodule(n).register_forward_hook(partial(hook, name=n)) for n in names]
        training = model.training
        try:
            model.eval()
            model(example)
        finally:
            model.train(training)
            for h in handles:
                h.remove()
    missing = [n for n in names if n not in found]
    if missing:
        raise SnnconvError(
            f"to_channelwise: could not determine the channel count of {', '.join(missing)}; pass example=<input>"
        )
    return found


def to_channelwise(
    model: nn.Module, example: Tensor | None = None, *, channelwise: bool = True, softplus: bool = True
) -> nn.Module:
    """Replace every layer-wise QCFS of ``model`` (in place; returned) by a QCFS with per-channel (or layer-wise)
    softplus (or plain) thresholds that start at the layer's θ: λ_c = softplus⁻¹(θ^l) or θ^l (Algorithm 1, l. 9).

    Right after the call the model computes exactly the same function (bit-identical forward pass). All other
    weights are kept. Already per-channel QCFS modules are left as they are. ``example`` is an input batch used to
    measure channel counts (see ``qcfs_channels``).
    """
    layerwise = [n for n, m in model.named_modules() if isinstance(m, QCFS) and not m.per_channel]
    channels = qcfs_channels(model, example) if channelwise and layerwise else {}
    for name in layerwise:
        old: QCFS = model.get_submodule(name)
        theta = old.theta().detach()
        if softplus and float(theta) <= 0:
            warnings.warn(
                f"to_channelwise: layer '{name}' has a non-positive threshold {float(theta):.4g}, which softplus "
                "cannot represent; starting its channels from 1e-3 instead",
                RuntimeWarning,
                stacklevel=2,
            )
            theta = torch.full_like(theta, 1e-3)
        lam = exact_inverse_softplus(theta) if softplus else theta.clone()
        new = QCFS(old.levels, 1.0, old.shift, per_channel=channelwise, channels=channels.get(name),
                   positive="softplus" if softplus else "none")  # fmt: skip
        with torch.no_grad():
            new.threshold.copy_(lam.expand_as(new.threshold))
        new.to(device=old.threshold.device, dtype=old.threshold.dtype).train(old.training)
        _replace(model, name, new)
    return model


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def _example(config: TrainConfig) -> Tensor:
    info = dataset_info(config.dataset)
    return torch.zeros(2, info.in_channels, *info.input_size)


def _stage2_act(channelwise: bool, softplus: bool) -> str:
    """The activation kind of the stage-2 model, so that ``runs.load_run`` rebuilds every ablation variant."""
    return {(True, True): "csqcfs", (True, False): "csqcfs-plain", (False, True): "qcfs-softplus"}.get(
        (channelwise, softplus), "qcfs"
    )


def two_stage(
    config: TrainConfig,
    finetune_epochs: int,
    *,
    root: str | os.PathLike | None = None,
    channelwise: bool = True,
    softplus: bool = True,
    overwrite: bool = False,
) -> dict:
    """Algorithm 1: train layer-wise QCFS into ``<config.out>/stage1``, then (``finetune_epochs`` > 0) switch to
    channel-wise softplus thresholds and fine-tune at ``config.lr / 10`` into ``<config.out>/stage2``.

    Both stages resume when their run directory already holds a checkpoint. Returns ``{"stage1": fit summary,
    "stage2": fit summary or None, "out": final run directory}``.
    """
    if config.act != "qcfs":
        raise SnnconvError(f"two_stage: stage 1 trains layer-wise QCFS; config.act must be 'qcfs', got {config.act!r}")
    if not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise SnnconvError(f"two_stage: finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    out = Path(config.out)
    s1 = dataclasses.replace(config, out=str(out / "stage1"))
    resume1 = (Path(s1.out) / "last.pt").is_file()
    stage1 = train_run(s1, resume=resume1, root=root, overwrite=overwrite and not resume1)
    if finetune_epochs == 0:
        return {"stage1": stage1, "stage2": None, "out": s1.out}

    s2 = dataclasses.replace(config, act=_stage2_act(channelwise, softplus), lr=config.lr / 10,
                             epochs=finetune_epochs, out=str(out / "stage2"))  # fmt: skip
    d2 = Path(s2.out)
    resume = (d2 / "last.pt").is_file()
    with claim_run_dir(d2, s2.to_dict(), resume=resume, overwrite=overwrite and not resume, markers=()):
        stage2 = _stage2(s1, s2, channelwise, softplus, finetune_epochs, root, resume, _example(config))
    return {"stage1": stage1, "stage2": stage2, "out": s2.out}


def _stage2(s1: TrainConfig, s2: TrainConfig, channelwise: bool, softplus: bool, finetune_epochs: int,
            root: str | os.PathLike | None, resume: bool, example: Tensor) -> dict:  # fmt: skip
    """Stage 2 into the claimed directory ``s2.out``: the marker, the channel-wise model, fine-tuning."""
    d2 = Path(s2.out)
    variant = {"channelwise": channelwise, "softplus": softplus, "stage1": s1.out, "finetune_epochs": finetune_epochs}
    if distributed.is_main():
        jsonio.write(d2 / MARKER, variant, clean=False)
    model, _ = load_run(s1.out, which="last")
    model = to_channelwise(model, example, channelwise=channelwise, softplus=softplus).train()
    seed_everything(s2.seed)
    shard = distributed.shard_kwargs(s2.batch_size)  # torchrun: this rank's share, batch_size / W per rank
    train = make_loader(
        s2.dataset, shuffle=True, seed=s2.seed, train=True, subset=s2.subset, root=root,
        augment=s2.augment, autoaugment=s2.autoaugment, cutout=s2.cutout, num_workers=s2.num_workers,
        drop_last=False, **shard,
    )  # fmt: skip
    test = test_loader(s2, root=root, rank=shard["rank"], world_size=shard["world_size"])
    extra_loss = None
    if s2.qcfs_reg > 0:
        reg = QCFSRegularizer(model, form=s2.qcfs_reg_form)
        extra_loss = lambda m, logits, y: s2.qcfs_reg * reg.loss()  # noqa: E731
    return fit(model, train, test, s2, d2, resume=resume, extra_loss=extra_loss)


def load_two_stage(run_dir: str | os.PathLike, which: str = "last") -> tuple[nn.Module, TrainConfig]:
    """The fine-tuned ANN of a ``two_stage`` stage-2 directory (any ablation variant) and its config.

    Directories without ``twostage.json`` are loaded with ``runs.load_run``.
    """
    run = Path(run_dir)
    marker = run / MARKER
    if not marker.is_file():
        return load_run(run, which)
    variant = json.loads(marker.read_text())
    path = run / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; run two_stage first")
    ckpt = load_checkpoint(path, kind=(KIND_MODEL, KIND_TRAIN))
    config, state = checked_contents(ckpt, path)
    model = build_model(dataclasses.replace(config, act="qcfs"))
    model = to_channelwise(model, _example(config), channelwise=variant["channelwise"], softplus=variant["softplus"])
    load_model_state(model, state, source=str(path), saved_model=config.model, model_name=config.model)
    refuse_nonfinite(model, path)
    return model.to(resolve_device("cpu")).eval(), config
