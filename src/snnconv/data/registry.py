"""The dataset registry: :func:`list_datasets`, :func:`dataset_info`, :func:`get_dataset`."""

from __future__ import annotations

import os
from collections.abc import Callable

from torch.utils.data import Dataset

from snnconv.data.caltech import CALTECH_SIZE, load_caltech101
from snnconv.data.digits import load_digits
from snnconv.data.fashion_mnist import load_fashion_mnist
from snnconv.data.folders import load_image_folder
from snnconv.data.info import DatasetInfo
from snnconv.data.memory import apply_subset
from snnconv.data.torchvision_sets import load_cifar, load_mnist
from snnconv.data.transforms import Pipeline, build_pipeline
from snnconv.errors import RegistryError

__all__ = ["DEFAULT_DATASET", "Loader", "dataset_info", "get_dataset", "list_datasets", "register_dataset"]

#: ``loader(info, *, root, train, pipeline, download) -> Dataset``
Loader = Callable[..., Dataset]

DEFAULT_DATASET = "fashion-mnist"

_REGISTRY: dict[str, tuple[DatasetInfo, Loader]] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(info: DatasetInfo, loader: Loader) -> None:
    """Add a dataset; raises :class:`RegistryError` if ``info.name`` is taken."""
    key = _key(info.name)
    if key in _REGISTRY:
        raise RegistryError(f"dataset {info.name!r} is already registered")
    _REGISTRY[key] = (info, loader)


def list_datasets() -> list[str]:
    """Registered dataset names, in registration order (the default, ``fashion-mnist``, first)."""
    return [info.name for info, _ in _REGISTRY.values()]


def _lookup(name: str) -> tuple[DatasetInfo, Loader]:
    if not isinstance(name, str) or _key(name) not in _REGISTRY:
        raise RegistryError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    return _REGISTRY[_key(name)]


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (``_`` and case are tolerated: ``Fashion_MNIST`` works)."""
    return _lookup(name)[0]


def get_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    train: bool,
    augment: bool | None = None,
    autoaugment: bool = False,
    cutout: bool = False,
    download: bool = False,
    subset: int | None = None,
) -> Dataset:
    """Load one split of a registered dataset; items are ``(float C x H x W normalized image, int label)``.

    ``augment`` defaults to ``train`` (standard crop/flip recipe); ``autoaugment``/``cutout`` add
    AutoAugment / RandomErasing when augmenting. ``download=True`` lets torchvision fetch
    ``mnist``/``cifar*`` (never done otherwise). ``subset=N`` keeps the first N samples of a
    fixed-seed (0) shuffle. In-memory datasets come back as :class:`InMemoryDataset`, image folders
    as ``ImageFolder``-like datasets (wrapped in ``Subset`` when ``subset`` is given).
    Raises :class:`RegistryError` (unknown name), :class:`DatasetNotFoundError` (files missing, with
    the fix in the message) or :class:`DatasetFormatError` (files malformed).
    """
    info, loader = _lookup(name)
    if augment is None:
        augment = train
    pipeline: Pipeline = build_pipeline(info, augment=augment, autoaugment=autoaugment, cutout=cutout)
    ds = loader(info, root=root, train=train, pipeline=pipeline, download=download)
    return apply_subset(ds, subset)


_C10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_C100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_IMNET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_TINY = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))

for _info, _loader in (
    (
        DatasetInfo(
            "fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,), 60_000, 10_000,
            crop_padding=2, hflip=True, description="Zalando Fashion-MNIST (Debian dataset-fashion-mnist)",
        ),
        load_fashion_mnist,
    ),
    (
        DatasetInfo(
            "digits", 10, 1, (8, 8), (0.3054,), (0.3760,), 1_437, 360,
            crop_padding=1, description="scikit-learn digits, stratified 1437/360 split (seed 0)",
        ),
        load_digits,
    ),
    (
        DatasetInfo(
            "mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), 60_000, 10_000,
            crop_padding=2, description="MNIST via torchvision (root/MNIST/raw)",
        ),
        load_mnist,
    ),
    (
        DatasetInfo(
            "cifar10", 10, 3, (32, 32), *_C10, 50_000, 10_000,
            crop_padding=4, hflip=True, description="CIFAR-10 python version (root/cifar-10-batches-py)",
        ),
        load_cifar,
    ),
    (
        DatasetInfo(
            "cifar100", 100, 3, (32, 32), *_C100, 50_000, 10_000,
            crop_padding=4, hflip=True, description="CIFAR-100 python version (root/cifar-100-python)",
        ),
        load_cifar,
    ),
    (
        DatasetInfo(
            "tiny-imagenet", 200, 3, (64, 64), *_TINY, 100_000, 10_000, in_memory=False,
            crop_padding=8, hflip=True, autoaugment_policy="IMAGENET",
            description="Tiny-ImageNet-200 ImageFolder tree (val as folders or val_annotations.txt)",
        ),
        load_image_folder,
    ),
    (
        DatasetInfo(
            "imagenet", 1000, 3, (224, 224), *_IMNET, 1_281_167, 50_000, in_memory=False, hflip=True,
            recipe="imagenet", autoaugment_policy="IMAGENET", description="ImageNet ImageFolder tree",
        ),
        load_image_folder,
    ),
    (
        DatasetInfo(
            "caltech101", 101, 3, CALTECH_SIZE, *_IMNET, None, None, in_memory=False, crop_padding=16, hflip=True,
            description="Caltech-101 folders (root/caltech101/101_ObjectCategories), RGB 128x128, seed 003",
        ),
        load_caltech101,
    ),
    (
        DatasetInfo(
            "caltech101-dog", 101, 3, CALTECH_SIZE, (0.5,) * 3, (0.1,) * 3, None, None, in_memory=False,
            crop_padding=16, hflip=True, description="Caltech-101, DoG on each RGB channel (seed 003 Table 1)",
        ),
        load_caltech101,
    ),
    (
        DatasetInfo(
            "caltech101-grey-dog", 101, 1, CALTECH_SIZE, (0.5,), (0.1,), None, None, in_memory=False,
            crop_padding=16, hflip=True, description="Caltech-101, grey-scale then DoG (one channel)",
        ),
        load_caltech101,
    ),
):  # fmt: skip
    register_dataset(_info, _loader)
