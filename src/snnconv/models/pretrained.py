"""Reference networks shipped with the package (issues 22 and 28): ``create(name, pretrained="fashion-mnist")``.

Each entry of ``weights/manifest.json`` names a weights-only checkpoint in ``weights/`` (the ``snnconv-model`` format
of ``snnconv.checkpoint``, loaded with ``weights_only=True``), its sha256, the ``TrainConfig`` that built and trained
it, the command that made it and the accuracies measured on it. ``load_pretrained`` checks the hash before loading;
``snnconv evaluate zoo:NAME`` (or ``zoo:NAME/DATASET``) evaluates one without training.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from snnconv.errors import CheckpointError, RegistryError

__all__ = [
    "ZOO_PREFIX",
    "available_pretrained",
    "export_pretrained",
    "load_pretrained",
    "manifest",
    "pretrained_entry",
    "weights_dir",
]

ZOO_PREFIX = "zoo:"


def weights_dir() -> Path:
    """The folder of the shipped weights (``$SNNCONV_WEIGHTS_DIR`` overrides it, e.g. for your own zoo)."""
    return Path(os.environ.get("SNNCONV_WEIGHTS_DIR") or Path(__file__).parent / "weights")


def manifest() -> dict[str, dict[str, Any]]:
    """``{"<model>/<dataset>": entry}`` of every shipped network ({} when none is shipped)."""
    path = weights_dir() / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def available_pretrained() -> list[str]:
    """Names ``<model>/<dataset>`` of the shipped networks."""
    return sorted(manifest())


def pretrained_entry(name: str, dataset: str | None = None) -> tuple[str, dict[str, Any]]:
    """The manifest entry of ``name`` (``model`` or ``model/dataset``; the dataset may be given separately)."""
    key = name if "/" in name or dataset is None else f"{name}/{dataset}"
    entries = manifest()
    if "/" not in key:
        matches = [k for k in entries if k.split("/")[0] == key]
        if len(matches) == 1:
            key = matches[0]
    if key not in entries:
        have = ", ".join(sorted(entries)) or "none"
        raise RegistryError(f"no pretrained network {key!r}; shipped: {have}")
    return key, entries[key]


def load_pretrained(name: str, dataset: str | None = None) -> tuple[nn.Module, Any]:
    """The shipped network ``name`` (eval mode, CPU) and its ``TrainConfig``, after checking the file's sha256."""
    from snnconv.checkpoint import KIND_MODEL, load_checkpoint, load_model_state
    from snnconv.runs import build_model
    from snnconv.train import TrainConfig

    key, entry = pretrained_entry(name, dataset)
    path = weights_dir() / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"pretrained {key}: {path} is missing from the installation; reinstall snnconv")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(f"pretrained {key}: {path.name} has sha256 {digest[:16]}…, the manifest says "
                              f"{entry['sha256'][:16]}…; the file is damaged: reinstall snnconv")  # fmt: skip
    config = TrainConfig.from_dict(entry["config"])
    model = build_model(config)
    ckpt = load_checkpoint(path, kind=KIND_MODEL)
    load_model_state(model, ckpt["model"], source=f"pretrained {key}", saved_model=config.model,
                     model_name=config.model)  # fmt: skip
    return model.eval(), config


def export_pretrained(run_dir: str | os.PathLike, command: str, *, folder: str | os.PathLike | None = None,
                      extra: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Ship a run's final weights: write ``<model>-<dataset>.pt`` (weights-only, from ``last.pt``) into ``folder``
    (default ``weights_dir()``) and add its entry (sha256, config, ``command``, ``extra`` facts such as accuracies)
    to the manifest. Returns the entry's name."""
    from snnconv.checkpoint import KIND_MODEL, KIND_TRAIN, atomic_write, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(Path(run_dir) / "last.pt", kind=KIND_TRAIN)
    config = ckpt["config"]
    key = f"{config['model']}/{config['dataset']}"
    out = Path(folder) if folder is not None else weights_dir()
    file = out / f"{config['model']}-{config['dataset']}.pt"
    save_checkpoint(file, {"model": ckpt["model"], "config": config, "epoch": ckpt["epoch"]}, kind=KIND_MODEL)
    entries = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    entries[key] = {
        "file": file.name,
        "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        "config": {**config, "out": ""},
        "epoch": ckpt["epoch"],
        "command": command,
        **(extra or {}),
    }
    text = json.dumps(dict(sorted(entries.items())), indent=1) + "\n"
    atomic_write(out / "manifest.json", lambda f: f.write(text.encode()))
    return key
