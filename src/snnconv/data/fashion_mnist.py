"""Fashion-MNIST from the original IDX files (Debian package ``dataset-fashion-mnist``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from snnconv.data.errors import DatasetFormatError, DatasetNotFoundError
from snnconv.data.idx import read_idx
from snnconv.data.info import DatasetInfo
from snnconv.data.memory import InMemoryDataset
from snnconv.data.paths import ENV_VAR, data_home
from snnconv.data.transforms import Pipeline

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "SYSTEM_DIR", "find_fashion_mnist", "load_fashion_mnist"]

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_ALL_FILES = FASHION_MNIST_FILES[True] + FASHION_MNIST_FILES[False]


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    if root is not None:  # an explicit root is used or refused, never replaced by another copy (issue 20)
        r = Path(root).expanduser()
        return [r, r / "fashion-mnist"]
    dirs: list[Path] = []
    home = data_home()
    if home is not None:
        dirs.append(home / "fashion-mnist")
    dirs.append(SYSTEM_DIR)
    return dirs


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The first directory holding all four Fashion-MNIST IDX files (``.gz`` or not).

    Search order: ``root`` and ``root/fashion-mnist`` when ``root`` is given (only those: a mistyped root is an
    error, not a reason to use another copy); else ``$SNNCONV_DATA/fashion-mnist``, then
    ``/usr/share/datasets/fashion-mnist``. Raises :class:`DatasetNotFoundError` with install hints.
    """
    if root is not None and not str(root).strip():
        raise DatasetNotFoundError("Fashion-MNIST: root is an empty path; pass the directory holding the files")
    searched = _candidates(root)
    for d in searched:
        missing = [stem for stem in _ALL_FILES if _find_file(d, stem) is None]
        if not missing:
            return d
        if len(missing) < len(_ALL_FILES):  # a partial copy: say so rather than silently using another one
            raise DatasetNotFoundError(
                f"Fashion-MNIST in {d} is incomplete: {', '.join(m + '.gz' for m in missing)} missing "
                f"(gzip or not); copy the missing file(s) there, or remove the folder to use another copy"
            )
    files = ", ".join(f + ".gz" for f in _ALL_FILES)
    if root is not None:
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found in the given root: looked for {files} (gzip or not) in {searched[0]} and "
            f"{searched[1]}{'' if searched[0].is_dir() else f' ({searched[0]} does not exist)'}; fix the path, or "
            f"drop root=/--data-root to use ${ENV_VAR}/fashion-mnist or {SYSTEM_DIR} "
            "(sudo apt-get install dataset-fashion-mnist)"
        )
    where = "\n".join(f"  - {d}" for d in searched)
    raise DatasetNotFoundError(
        "Fashion-MNIST not found. Looked for its four IDX files in:\n"
        f"{where}\n"
        "Fix: install the Debian package with `sudo apt-get install dataset-fashion-mnist` "
        f"(it puts them in {SYSTEM_DIR}), or put {files} (gzip or not) in a directory and pass it "
        f"as root=... / --data-root, or set ${ENV_VAR} so that ${ENV_VAR}/fashion-mnist holds them."
    )


def read_fashion_mnist(root: str | os.PathLike | None, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw split as (uint8 ``N x 1 x 28 x 28`` images, int64 labels), validated for consistency."""
    d = find_fashion_mnist(root)
    img_path, lbl_path = (_find_file(d, s) for s in FASHION_MNIST_FILES[train])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DatasetFormatError(
            f"{img_path}: expected uint8 images of shape N x 28 x 28, got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dtype != torch.uint8 or labels.ndim != 1:
        raise DatasetFormatError(f"{lbl_path}: expected a 1-D uint8 label vector, got {tuple(labels.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetFormatError(
            f"{lbl_path}: {labels.shape[0]} labels but {img_path.name} has {images.shape[0]} images"
        )
    if labels.numel() and int(labels.max()) > 9:
        raise DatasetFormatError(f"{lbl_path}: label {int(labels.max())} out of range 0..9")
    return images.unsqueeze(1), labels.to(torch.int64)


def load_fashion_mnist(
    info: DatasetInfo, *, root: str | os.PathLike | None, train: bool, pipeline: Pipeline, download: bool
) -> InMemoryDataset:
    """Registry loader; ``download`` is ignored (the files come from the OS package or the user)."""
    images, labels = read_fashion_mnist(root, train)
    return InMemoryDataset(images, labels, pipeline, name=info.name, classes=FASHION_MNIST_CLASSES)
