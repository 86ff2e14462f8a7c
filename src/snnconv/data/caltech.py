"""Caltech-101 (seed 003's fourth dataset, Table 1): the standard folder layout, optional DoG preprocessing.

Layout: ``root/caltech101/101_ObjectCategories/<class>/*.jpg`` (what ``torchvision.datasets.Caltech101``
downloads and reads), or ``root/101_ObjectCategories/<class>/*.jpg``, or ``root`` itself being that folder.
``BACKGROUND_Google`` is not a class (as in torchvision): 101 classes. ``download=True`` fetches the files with
``torchvision.datasets.Caltech101`` (never done otherwise).

The dataset has no official split; seed 003 uses 6162 training and 1695 test images (Table 1). Here every class
is split alike: its images sorted by name, shuffled with a fixed seed (0), and the first
``round(n·1695/7857)`` (21.6 %) of each class are the test split, so the split never depends on the machine.

Images are RGB (grey-scale files converted) and resized to 128 × 128 (seed 003: "resized from the original
300 × 200"). Preprocessing variants, registered as datasets of their own (the channel count differs):

* ``caltech101`` -- plain RGB.
* ``caltech101-dog`` -- **the seed's**: "a Difference-of-Gaussian (DoG) filter is applied to each of the red,
  green, and blue channels, before the pixels are encoded into spike trains" (Table 1 note).
* ``caltech101-grey-dog`` -- grey-scale, then the DoG filter: one channel (issue 19's reading).

The seed gives no DoG parameters; ``dog_filter`` uses σ₁ = 1, σ₂ = 2 pixels (7 × 7 kernels, reflected borders)
on [0, 1] pixels and the response d (a black-to-white step edge peaks at |d| = 0.14) is mapped to 8-bit pixels,
x' = round(255·clip(1/2 + 2d, 0, 1)) (a zero response is mid-grey), so that pixel codings (ISI, rate) apply as
for any image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, pil_loader

from snnconv.data.errors import DatasetFormatError, DatasetNotFoundError
from snnconv.data.folders import AnnotatedImageList
from snnconv.data.info import DatasetInfo
from snnconv.data.paths import ENV_VAR, default_root
from snnconv.data.transforms import Pipeline

__all__ = ["CALTECH_SIZE", "PREPROCESSING", "caltech_split", "dog_filter", "find_categories", "load_caltech101"]

CALTECH_SIZE = (128, 128)  # seed 003 Table 1
TEST_FRACTION = 1695 / (6162 + 1695)  # seed 003 Table 1's proportion
BACKGROUND = "BACKGROUND_Google"
DOG_GAIN = 2.0  # DoG response → pixels: 1/2 + 2d
#: dataset name -> (grey-scale first, DoG filter)
PREPROCESSING: dict[str, tuple[bool, bool]] = {
    "caltech101": (False, False),
    "caltech101-dog": (False, True),
    "caltech101-grey-dog": (True, True),
}


def _gaussian(sigma: float, size: int) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def dog_filter(x: Tensor, sigma1: float = 1.0, sigma2: float = 2.0, size: int = 7) -> Tensor:
    """Difference of Gaussians per channel of a [C, H, W] image: G_σ₁ * x − G_σ₂ * x (separable, reflected borders).

    Both kernels sum to one, so a constant image gives 0 everywhere.
    """
    if not 0 < sigma1 < sigma2 or size < 3 or size % 2 == 0:
        raise ValueError(f"dog_filter: need 0 < sigma1 < sigma2 and an odd size >= 3, got {sigma1}, {sigma2}, {size}")
    c, pad = x.shape[0], size // 2
    if min(x.shape[1:]) <= pad:
        raise ValueError(f"dog_filter: image {tuple(x.shape[1:])} is too small for {size}x{size} kernels")
    img = F.pad(x.to(torch.float64).unsqueeze(0), (pad, pad, pad, pad), mode="reflect")
    out = []
    for sigma in (sigma1, sigma2):
        g = _gaussian(sigma, size)
        rows = F.conv2d(img, g.view(1, 1, 1, -1).expand(c, 1, 1, size), groups=c)
        out.append(F.conv2d(rows, g.view(1, 1, -1, 1).expand(c, 1, size, 1), groups=c))
    return (out[0] - out[1]).squeeze(0).to(x.dtype)


def _dog_pixels(img: Image.Image) -> Image.Image:
    """The DoG response of an 8-bit image as 8-bit pixels, round(255·clip(1/2 + 2d, 0, 1)) (module doc)."""
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], -1)
    d = dog_filter(x.permute(2, 0, 1).to(torch.float64) / 255)
    y = torch.round(255 * (0.5 + DOG_GAIN * d).clamp(0, 1)).to(torch.uint8).permute(1, 2, 0)
    return Image.fromarray(y.squeeze(-1).numpy() if y.shape[-1] == 1 else y.numpy())


def image_loader(grey: bool, dog: bool, size: tuple[int, int] = CALTECH_SIZE) -> Callable[[str], Image.Image]:
    """path -> PIL image: RGB (or grey), resized to ``size`` (H, W), optionally DoG-filtered (module doc)."""

    def load(path: str) -> Image.Image:
        img = pil_loader(path).convert("L" if grey else "RGB").resize((size[1], size[0]), Image.BILINEAR)
        return _dog_pixels(img) if dog else img

    return load


def _layout_help(r: Path) -> str:
    return (
        f"expected Caltech-101's folder layout {r}/caltech101/101_ObjectCategories/<class>/*.jpg (torchvision's) or "
        f"{r}/101_ObjectCategories/<class>/*.jpg. Pass root=... (CLI: --data-root) or set ${ENV_VAR} so that "
        f"${ENV_VAR}/caltech101 holds it, or download=True to fetch it with torchvision"
    )


def find_categories(root: str | os.PathLike) -> Path:
    """The ``101_ObjectCategories`` folder under ``root`` (either layout, or ``root`` itself)."""
    r = Path(root).expanduser()
    for cand in (r / "caltech101" / "101_ObjectCategories", r / "101_ObjectCategories"):
        if cand.is_dir():
            return cand
    if r.name == "101_ObjectCategories" and r.is_dir():
        return r
    raise DatasetNotFoundError(f"Caltech-101 not found under {r}; {_layout_help(r)}")


def caltech_split(categories: Path, train: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """(samples, classes) of one split: per class, a fixed-seed shuffle of its sorted images; the first
    round(n·1695/7857) are the test split (module doc)."""
    classes = sorted(d.name for d in categories.iterdir() if d.is_dir() and d.name != BACKGROUND)
    if not classes:
        raise DatasetFormatError(f"Caltech-101: no class folders in {categories}; {_layout_help(categories.parent)}")
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (categories / name).iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise DatasetFormatError(f"Caltech-101: class folder {categories / name} holds no images")
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0)).tolist()
        n_test = math.floor(len(files) * TEST_FRACTION + 0.5)
        keep = order[:n_test] if not train else order[n_test:]
        samples += [(str(files[i]), label) for i in sorted(keep)]
    return samples, classes


def load_caltech101(
    info: DatasetInfo, *, root: str | os.PathLike | None, train: bool, pipeline: Pipeline, download: bool
) -> Dataset:
    """Registry loader of ``caltech101`` / ``caltech101-dog`` / ``caltech101-grey-dog`` (module doc)."""
    r = Path(root).expanduser() if root is not None else default_root("caltech101")
    if download:
        import torchvision

        try:
            torchvision.datasets.Caltech101(str(r), download=True)
        except Exception as e:  # network or archive errors: say what to do instead
            raise DatasetNotFoundError(f"Caltech-101 download into {r} failed ({e}); {_layout_help(r)}") from e
    grey, dog = PREPROCESSING[info.name]
    samples, classes = caltech_split(find_categories(r), train)
    if len(classes) > info.num_classes:
        raise DatasetFormatError(f"{info.name}: {len(classes)} classes under {r}, at most {info.num_classes} expected")
    return AnnotatedImageList(samples, classes, transform=pipeline, loader=image_loader(grey, dog, info.input_size))
