"""Datasets held as one tensor: :class:`InMemoryDataset`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, Subset

from snnconv.data.batch_augment import random_crop_flip, random_erasing
from snnconv.data.transforms import Pipeline
from snnconv.errors import SnnconvError

__all__ = ["InMemoryDataset", "apply_subset", "subset_indices"]


def subset_indices(n: int, subset: int | None, seed: int = 0) -> torch.Tensor | None:
    """First ``subset`` indices of a fixed-seed permutation of ``range(n)`` (``None`` = keep all)."""
    if subset is None:
        return None
    if not isinstance(subset, int) or isinstance(subset, bool) or subset <= 0:
        raise SnnconvError(f"subset must be a positive int or None, got {subset!r}")
    if subset >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:subset]


class InMemoryDataset(Dataset):
    """A whole split as ``images`` (uint8, ``N x C x H x W``) and ``labels`` (int64, ``N``).

    ``ds[i]`` returns ``(float C x H x W normalized image, int label)`` through ``pipeline``;
    ``ds.get_batch(indices)`` returns ``(N x C x H x W float, int64 N)`` and normalizes the whole
    batch at once (per-sample work only for random augmentation), which is what
    :func:`snnconv.data.make_loader` uses.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        pipeline: Pipeline,
        *,
        name: str = "",
        classes: Sequence[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise SnnconvError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise SnnconvError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.pipeline = pipeline
        self.name = name
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.pipeline(self.images[index]), int(self.labels[index])

    @property
    def targets(self) -> torch.Tensor:
        """Alias of ``labels`` (torchvision naming)."""
        return self.labels

    @property
    def augmented(self) -> bool:
        """True when samples go through random augmentation."""
        return self.pipeline.is_random

    def get_batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels for ``indices`` as batched tensors."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        x = self.images.index_select(0, idx)
        p = self.pipeline
        if p.batch_crop_flip is not None:  # the same augmentation for the whole batch at once (issue 21)
            x = p.normalize_batch(random_crop_flip(x, *p.batch_crop_flip))
            return (x if p.post is None else random_erasing(x)), self.labels.index_select(0, idx)
        if p.pre is not None:
            x = torch.stack([p.pre(img) for img in x]).as_subclass(torch.Tensor)
        x = p.normalize_batch(x)
        if p.post is not None:
            x = torch.stack([p.post(img) for img in x]).as_subclass(torch.Tensor)
        return x, self.labels.index_select(0, idx)

    def select(self, indices: torch.Tensor | None) -> InMemoryDataset:
        """A new dataset with only ``indices`` (shares nothing mutable; ``None`` returns ``self``)."""
        if indices is None:
            return self
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return InMemoryDataset(
            self.images.index_select(0, idx),
            self.labels.index_select(0, idx),
            self.pipeline,
            name=self.name,
            classes=self.classes,
        )

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"InMemoryDataset({self.name!r}, n={len(self)}, {c}x{h}x{w}, augmented={self.augmented})"


def apply_subset(ds: Dataset, subset: int | None) -> Dataset:
    """First ``subset`` samples of ``ds`` after a fixed-seed (0) shuffle (``None``: ``ds`` itself)."""
    idx = subset_indices(len(ds), subset)
    if idx is None:
        return ds
    return ds.select(idx) if isinstance(ds, InMemoryDataset) else Subset(ds, idx.tolist())
