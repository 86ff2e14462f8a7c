"""MNIST and CIFAR-10/100 in torchvision's on-disk layouts, held in memory as uint8 tensors.

MNIST is read by ``torchvision.datasets.MNIST`` (``root/MNIST/raw/*-ubyte``). CIFAR is downloaded
and checksum-verified by ``torchvision.datasets.CIFAR10/100`` when ``download=True``; the pickles are
then read by our strict reader (:mod:`snnconv.data.cifar`), which checks structure rather than MD5s.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

from snnconv.data.cifar import CIFAR_LAYOUTS, read_cifar_split
from snnconv.data.errors import DatasetFormatError, DatasetNotFoundError
from snnconv.data.info import DatasetInfo
from snnconv.data.memory import InMemoryDataset
from snnconv.data.paths import ENV_VAR, default_root
from snnconv.data.transforms import Pipeline

__all__ = ["MNIST_FILES", "load_cifar", "load_mnist"]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


_DOWNLOAD_HINT = (
    "Pass download=True (CLI: --download) to fetch it with torchvision, or point root=... "
    f"(CLI: --data-root; default ${ENV_VAR} or ./data) at the directory holding it."
)


def load_mnist(
    info: DatasetInfo, *, root: str | os.PathLike | None, train: bool, pipeline: Pipeline, download: bool
) -> InMemoryDataset:
    """MNIST via ``torchvision.datasets.MNIST(root, train, download)``; root holds ``MNIST/raw``."""
    r = _root(root)
    raw = r / "MNIST" / "raw"
    if not download:
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"MNIST not found under {r}: missing {', '.join(str(raw / f) for f in missing)} "
                f"(torchvision expects the four un-gzipped IDX files {', '.join(MNIST_FILES)} in "
                f"<root>/MNIST/raw/). " + _DOWNLOAD_HINT
            )
    try:
        ds = torchvision.datasets.MNIST(str(r), train=train, download=download)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise DatasetFormatError(f"MNIST under {raw}: torchvision could not read it: {e}") from e
    images = ds.data
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DatasetFormatError(f"{raw}: expected uint8 N x 28 x 28 images, got {tuple(images.shape)}")
    if ds.targets.shape != (images.shape[0],):
        raise DatasetFormatError(f"{raw}: {ds.targets.shape[0]} labels for {images.shape[0]} images")
    return InMemoryDataset(images.unsqueeze(1), ds.targets, pipeline, name=info.name, classes=ds.classes)


def load_cifar(
    info: DatasetInfo, *, root: str | os.PathLike | None, train: bool, pipeline: Pipeline, download: bool
) -> InMemoryDataset:
    """CIFAR-10/100 from ``root/cifar-10-batches-py`` or ``root/cifar-100-python`` (python pickles)."""
    layout = CIFAR_LAYOUTS[info.name]
    r = _root(root)
    if r.name == layout.folder and not (r / layout.folder).is_dir():
        r = r.parent  # accept the batches folder itself as root
    base = r / layout.folder
    if download:
        cls = torchvision.datasets.CIFAR10 if info.name == "cifar10" else torchvision.datasets.CIFAR100
        cls(str(r), train=train, download=True)  # downloads, extracts and verifies MD5s
    missing = [f for f in layout.all_files if not (base / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{info.name.upper()} not found: missing {', '.join(str(base / f) for f in missing)} "
            f"(expected the python version, i.e. {layout.folder}/ with {', '.join(layout.all_files)}, "
            f"under root {r}). " + _DOWNLOAD_HINT
        )
    images, labels, classes = read_cifar_split(base, layout, train, info.num_classes)
    return InMemoryDataset(images, labels, pipeline, name=info.name, classes=classes)
