"""scikit-learn's bundled ``digits`` (8x8, values 0..16), split deterministically and stratified."""

from __future__ import annotations

import os
from functools import lru_cache

import torch

from snnconv._deps import require
from snnconv.data.info import DatasetInfo
from snnconv.data.memory import InMemoryDataset
from snnconv.data.transforms import Pipeline
from snnconv.errors import SnnconvError

__all__ = ["DIGITS_SEED", "DIGITS_TEST_SIZE", "load_digits_split"]

DIGITS_TEST_SIZE = 360
DIGITS_SEED = 0


@lru_cache(maxsize=1)
def _split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    import numpy as np

    require("sklearn", "the digits dataset")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # 0..16 -> 0..255 exactly (x * 255 / 16 rounded), stored like every other in-memory dataset.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=DIGITS_TEST_SIZE, stratify=bunch.target, random_state=DIGITS_SEED
    )
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te))


def load_digits_split(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 ``N x 1 x 8 x 8`` images scaled from 0..16 to 0..255, int64 labels) for one split."""
    x_tr, y_tr, x_te, y_te = _split()
    return (x_tr, y_tr.to(torch.int64)) if train else (x_te, y_te.to(torch.int64))


def load_digits(
    info: DatasetInfo, *, root: str | os.PathLike | None, train: bool, pipeline: Pipeline, download: bool
) -> InMemoryDataset:
    """Registry loader (no files: the data ships with scikit-learn, so a ``root`` is refused, not ignored)."""
    if root is not None:
        raise SnnconvError(f"digits ships with scikit-learn and reads no files, but a data root was given "
                           f"({str(root)!r}); drop root=/--data-root for this dataset")  # fmt: skip
    images, labels = load_digits_split(train)
    return InMemoryDataset(images, labels, pipeline, name=info.name, classes=[str(i) for i in range(10)])
