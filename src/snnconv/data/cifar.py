"""A strict reader for the CIFAR-10/100 "python version" pickles.

Only numpy arrays, lists, dicts, strings and numbers may be unpickled (a restricted unpickler),
so a tampered file cannot run code. Checksums are verified by torchvision when downloading.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnconv.data.errors import DatasetFormatError

__all__ = ["CIFAR_LAYOUTS", "CifarLayout", "read_cifar_batch", "read_cifar_split", "read_cifar_meta"]


class CifarLayout:
    """File names of one CIFAR variant (mirrors ``torchvision.datasets.CIFAR10/100``)."""

    def __init__(self, folder: str, train: list[str], test: list[str], meta: str, meta_key: str, label_key: str):
        self.folder, self.train, self.test = folder, train, test
        self.meta, self.meta_key, self.label_key = meta, meta_key, label_key

    def files(self, train: bool) -> list[str]:
        return self.train if train else self.test

    @property
    def all_files(self) -> list[str]:
        return [*self.train, *self.test, self.meta]


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "label_names",
        "labels",
    ),
    "cifar100": CifarLayout("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}

_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.")  # files pickled by numpy < 2
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only numpy arrays are allowed)")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DatasetFormatError(f"{path}: not a valid CIFAR python pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 ``N x 3 x 32 x 32``, int64 ``N``); strict about keys, dtype and sizes."""
    d = _unpickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DatasetFormatError(f"{path}: missing key {key!r} (has {sorted(d)})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetFormatError(f"{path}: 'data' must be a uint8 array of shape N x 3072, got {desc}")
    labels = np.asarray(d[label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(
            f"{path}: {label_key!r} has shape {labels.shape}, expected ({data.shape[0]},) to match 'data'"
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path: Path, key: str) -> list[str]:
    """Class names from ``batches.meta`` / ``meta``."""
    d = _unpickle(path)
    if key not in d:
        raise DatasetFormatError(f"{path}: missing key {key!r} (has {sorted(d)})")
    return [str(n) for n in d[key]]


def read_cifar_split(
    base: Path, layout: CifarLayout, train: bool, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(uint8 images ``N x 3 x 32 x 32``, int64 labels, class names) for one split under ``base``."""
    xs, ys = [], []
    for name in layout.files(train):
        x, y = read_cifar_batch(base / name, layout.label_key)
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DatasetFormatError(f"{base / name}: labels must lie in 0..{num_classes - 1}")
        xs.append(x)
        ys.append(y)
    classes = read_cifar_meta(base / layout.meta, layout.meta_key)
    if len(classes) != num_classes:
        raise DatasetFormatError(f"{base / layout.meta}: {len(classes)} class names, expected {num_classes}")
    images = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs)))
    return images, torch.from_numpy(np.concatenate(ys)), classes
