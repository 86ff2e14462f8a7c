"""Tiny-ImageNet and ImageNet as ``torchvision.datasets.ImageFolder`` trees.

Layout: ``root/train/<class>/**/*.JPEG`` and ``root/val/<class>/**/*``. The validation split uses
the training split's class indices (so labels agree even if ``val`` lacks some class folders).
Tiny-ImageNet's original validation layout, ``root/val/images/*.JPEG`` plus
``root/val/val_annotations.txt`` (``file<TAB>wnid<TAB>x0 y0 x1 y1``), is read from the annotations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes

from snnconv.data.errors import DatasetFormatError, DatasetNotFoundError
from snnconv.data.info import DatasetInfo
from snnconv.data.paths import ENV_VAR, default_root
from snnconv.data.transforms import Pipeline

__all__ = ["AnnotatedImageList", "load_image_folder", "read_val_annotations"]

DEFAULT_DIRS = {"tiny-imagenet": "tiny-imagenet-200", "imagenet": "imagenet"}


class _ClassListImageFolder(ImageFolder):
    """ImageFolder whose class list is given (the training split's), not read from the folder."""

    def __init__(self, root: str, classes: Sequence[str], **kwargs) -> None:
        self._given = list(classes)
        super().__init__(root, allow_empty=True, **kwargs)

    def find_classes(self, directory):  # noqa: D102 - torchvision hook
        return self._given, {c: i for i, c in enumerate(self._given)}


class AnnotatedImageList(Dataset):
    """``(transform(image), label)`` for an explicit list of ``(path, label)`` samples."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        classes: Sequence[str],
        transform: Callable | None = None,
        loader: Callable[[str], object] = default_loader,
    ) -> None:
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform, self.loader = transform, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = self.loader(path)
        return (self.transform(img) if self.transform is not None else img), target


def read_val_annotations(val_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """Samples from Tiny-ImageNet's ``val/val_annotations.txt`` + ``val/images``; strict about format."""
    ann = val_dir / "val_annotations.txt"
    images = val_dir / "images"
    samples: list[tuple[str, int]] = []
    with open(ann, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise DatasetFormatError(f"{ann}:{lineno}: expected 'file<TAB>wnid[<TAB>box...]', got {line!r}")
            fname, wnid = parts[0].strip(), parts[1].strip()
            if wnid not in class_to_idx:
                raise DatasetFormatError(f"{ann}:{lineno}: class {wnid!r} is not one of the training classes")
            path = images / fname
            if not path.is_file():
                raise DatasetFormatError(f"{ann}:{lineno}: image {path} does not exist")
            samples.append((str(path), class_to_idx[wnid]))
    if not samples:
        raise DatasetFormatError(f"{ann}: no samples listed")
    return samples


def _layout_help(name: str, r: Path) -> str:
    extra = (
        " (or Tiny-ImageNet's original val/images/*.JPEG + val/val_annotations.txt)" if name == "tiny-imagenet" else ""
    )
    return (
        f"expected an ImageFolder tree {r}/train/<class>/*.JPEG and {r}/val/<class>/*.JPEG{extra}. "
        f"Pass root=... (CLI: --data-root) or set ${ENV_VAR} so that ${ENV_VAR}/{DEFAULT_DIRS[name]} is "
        f"that tree; these datasets are not downloaded automatically."
    )


def _classes(name: str, r: Path) -> list[str]:
    train = r / "train"
    if train.is_dir():
        try:
            return find_classes(str(train))[0]
        except FileNotFoundError as e:
            raise DatasetFormatError(f"{name}: {e}; {_layout_help(name, r)}") from e
    wnids = r / "wnids.txt"
    if wnids.is_file():
        classes = sorted({w.strip() for w in wnids.read_text().splitlines() if w.strip()})
        if classes:
            return classes
    raise DatasetNotFoundError(f"{name} not found: no class list ({train} or {wnids}); {_layout_help(name, r)}")


def load_image_folder(
    info: DatasetInfo, *, root: str | os.PathLike | None, train: bool, pipeline: Pipeline, download: bool
) -> Dataset:
    """Registry loader for ``tiny-imagenet`` / ``imagenet`` (``download`` is not supported)."""
    name = info.name
    r = Path(root).expanduser() if root is not None else default_root(DEFAULT_DIRS[name])
    if download:
        raise DatasetNotFoundError(f"{name} cannot be downloaded automatically; {_layout_help(name, r)}")
    split = r / ("train" if train else "val")
    if not split.is_dir():
        raise DatasetNotFoundError(f"{name} not found: {split} is not a directory; {_layout_help(name, r)}")
    classes = _classes(name, r)
    if info.num_classes and len(classes) > info.num_classes:
        raise DatasetFormatError(f"{name}: {len(classes)} classes under {r}, at most {info.num_classes} expected")
    if not train and (split / "val_annotations.txt").is_file() and (split / "images").is_dir():
        samples = read_val_annotations(split, {c: i for i, c in enumerate(classes)})
        return AnnotatedImageList(samples, classes, transform=pipeline)
    if not train:
        extra = sorted(d.name for d in split.iterdir() if d.is_dir() and d.name not in set(classes))
        if extra:
            raise DatasetFormatError(
                f"{name}: {split} has class folders not in the training classes: {', '.join(extra[:5])}"
                + (" ..." if len(extra) > 5 else "")
            )
    try:
        ds = _ClassListImageFolder(str(split), classes, transform=pipeline)
    except (FileNotFoundError, OSError) as e:
        raise DatasetFormatError(f"{name}: {e}; {_layout_help(name, r)}") from e
    if len(ds) == 0:
        raise DatasetFormatError(
            f"{name}: no images ({', '.join(IMG_EXTENSIONS)}) under {split}; {_layout_help(name, r)}"
        )
    return ds
