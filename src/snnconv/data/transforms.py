"""Per-dataset input pipelines built from ``torchvision.transforms.v2``.

A pipeline has three stages so in-memory datasets can batch the middle one:

* ``pre``  - per-sample random ops on uint8 images (crop, flip, AutoAugment; for image folders
  also ``ToImage`` and resizing). ``None`` when there is nothing to do.
* ``normalize`` - uint8 -> float32 in [0, 1] -> ``(x - mean) / std`` (``ToDtype`` + ``Normalize``).
* ``post`` - per-sample ops on the normalized float image (Cutout as ``RandomErasing``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from snnconv.data.info import DatasetInfo

__all__ = ["Pipeline", "build_pipeline"]


@dataclass
class Pipeline:
    """Callable per-sample transform ``pre -> normalize -> post`` (see module docstring)."""

    pre: v2.Transform | None
    normalize: v2.Transform
    post: v2.Transform | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: batched form of ``pre``/``post`` (``snnconv.data.batch_augment``) for in-memory batches: crop padding and
    #: flip (None when ``pre`` holds more than random crop/flip, e.g. AutoAugment), Cutout after normalising
    batch_crop_flip: tuple[int, bool] | None = None

    def __call__(self, img):
        if self.pre is not None:
            img = self.pre(img)
        img = self.normalize(img)
        if self.post is not None:
            img = self.post(img)
        return img.as_subclass(torch.Tensor) if isinstance(img, torch.Tensor) else img

    @property
    def is_random(self) -> bool:
        """True when the pipeline draws random numbers (augmentation is on)."""
        return (self.pre is not None and _has_random(self.pre)) or self.post is not None

    def normalize_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Batched ``normalize`` for an ``N x C x H x W`` uint8 (or [0, 1] float) tensor."""
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)


_RANDOM = (v2.RandomCrop, v2.RandomHorizontalFlip, v2.RandomResizedCrop, v2.AutoAugment, v2.RandomErasing)


def _has_random(t: v2.Transform) -> bool:
    if isinstance(t, v2.Compose):
        return any(_has_random(c) for c in t.transforms)
    return isinstance(t, _RANDOM)


def build_pipeline(
    info: DatasetInfo,
    *,
    augment: bool,
    autoaugment: bool = False,
    cutout: bool = False,
    from_pil: bool | None = None,
) -> Pipeline:
    """Build the standard pipeline for ``info``.

    ``augment`` turns on the dataset's crop/flip recipe; ``autoaugment`` and ``cutout`` add
    AutoAugment (policy ``info.autoaugment_policy``) and ``RandomErasing(p=0.5, value=0)`` and
    only apply when ``augment`` is true. ``from_pil`` (default ``not info.in_memory``) prepends
    ``ToImage`` so PIL images from image folders are accepted.
    """
    from_pil = (not info.in_memory) if from_pil is None else from_pil
    h, w = info.input_size
    ops: list[v2.Transform] = [v2.ToImage()] if from_pil else []
    if info.recipe == "imagenet":
        if augment:
            ops.append(v2.RandomResizedCrop((h, w), antialias=True))
        else:
            ops += [v2.Resize(int(round(h * 256 / 224)), antialias=True), v2.CenterCrop((h, w))]
    elif from_pil:  # image folders of a fixed nominal size (Tiny-ImageNet): enforce it
        ops += [v2.Resize((h, w), antialias=True)]
    if augment:
        if info.recipe == "small" and info.crop_padding > 0:
            ops.append(v2.RandomCrop((h, w), padding=info.crop_padding))
        if info.hflip:
            ops.append(v2.RandomHorizontalFlip())
        if autoaugment:
            ops.append(v2.AutoAugment(v2.AutoAugmentPolicy[info.autoaugment_policy.upper()]))
    pre = None if not ops else ops[0] if len(ops) == 1 else v2.Compose(ops)
    crop_flip_only = all(isinstance(op, (v2.RandomCrop, v2.RandomHorizontalFlip)) for op in ops)
    batched = (info.crop_padding if info.recipe == "small" else 0, info.hflip) if augment and crop_flip_only else None
    normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)])
    post = v2.RandomErasing(p=0.5, value=0) if (augment and cutout) else None
    return Pipeline(pre=pre, normalize=normalize, post=post, mean=info.mean, std=info.std, batch_crop_flip=batched)
