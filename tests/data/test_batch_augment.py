"""Batched crop/flip/Cutout (snnconv.data.batch_augment): every image is a valid draw, the distributions match
torchvision's per-sample transforms, and in-memory training batches use it reproducibly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import v2

from snnconv.data.batch_augment import random_crop_flip, random_erasing
from snnconv.data.info import DatasetInfo
from snnconv.data.memory import InMemoryDataset
from snnconv.data.transforms import build_pipeline


def which_crop(out: torch.Tensor, img: torch.Tensor, padding: int) -> tuple[int, int, bool] | None:
    """The (row offset, column offset, flipped) of ``img`` that gives ``out``, or None."""
    h, w = img.shape[-2:]
    padded = F.pad(img, (padding,) * 4)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flipped in (False, True):
                if torch.equal(crop.flip(-1) if flipped else crop, out):
                    return dy, dx, flipped
    return None


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9), p=st.integers(0, 3),
       flip=st.booleans(), seed=st.integers(0, 2**31))  # fmt: skip
def test_every_image_is_a_padded_crop_maybe_mirrored(n, c, h, w, p, flip, seed) -> None:
    torch.manual_seed(seed)
    x = torch.randint(1, 256, (n, c, h, w), dtype=torch.uint8)  # no zeros: a padded pixel is recognisable
    out = random_crop_flip(x, p, flip)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(n):
        found = which_crop(out[i], x[i], p)
        assert found is not None
        if not flip and found[2]:  # a symmetric crop can match mirrored too; it must also match unmirrored
            assert which_crop(out[i], x[i].flip(-1), p) is not None


def test_offsets_and_flips_are_uniform() -> None:
    torch.manual_seed(0)
    x = torch.arange(1, 26, dtype=torch.uint8).view(1, 1, 5, 5).repeat(2000, 1, 1, 1)
    out = random_crop_flip(x, 2, True)
    draws = [which_crop(out[i], x[i], 2) for i in range(len(out))]
    offsets = torch.tensor([5 * dy + dx for dy, dx, _ in draws])
    counts = torch.bincount(offsets, minlength=25).float()
    assert counts.min() > 40 and counts.max() < 125  # 80 expected for each of the 25 offsets
    assert 0.45 < sum(f for *_, f in draws) / len(draws) < 0.55


def test_erasing_matches_torchvision_in_distribution() -> None:
    torch.manual_seed(0)
    x = torch.ones(4000, 1, 28, 28)
    ours = (random_erasing(x) == 0).float().mean((1, 2, 3))
    tv = v2.RandomErasing(p=0.5, value=0)
    theirs = torch.stack([(tv(img) == 0).float().mean() for img in x[:4000]])
    for stat in (lambda a: (a > 0).float().mean(), lambda a: a[a > 0].mean(), lambda a: a[a > 0].std()):
        assert abs(float(stat(ours)) - float(stat(theirs))) < 0.02
    erased = random_erasing(torch.ones(200, 3, 12, 20))
    for img in erased:  # one axis-aligned rectangle, the same in every channel
        mask = img[0] == 0
        if mask.any():
            rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
            assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            assert torch.equal(img[1] == 0, mask) and torch.equal(img[2] == 0, mask)


def _fashion_like(n: int = 64) -> InMemoryDataset:
    info = DatasetInfo("fake", 10, 1, (28, 28), (0.5,), (0.25,), n, n, crop_padding=2, hflip=True)
    pipeline = build_pipeline(info, augment=True, cutout=True)
    g = torch.Generator().manual_seed(0)
    return InMemoryDataset(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                           torch.arange(n) % 10, pipeline)  # fmt: skip


def test_in_memory_batches_are_augmented_in_one_go_and_reproducible() -> None:
    ds = _fashion_like()
    assert ds.pipeline.batch_crop_flip == (2, True) and ds.augmented
    torch.manual_seed(3)
    a, ya = ds.get_batch(range(64))
    torch.manual_seed(3)
    b, yb = ds.get_batch(range(64))
    assert torch.equal(a, b) and torch.equal(ya, yb) and a.dtype == torch.float32 and a.shape == (64, 1, 28, 28)
    raw = ds.pipeline.normalize_batch(ds.images)
    assert not torch.equal(a, raw)  # augmented
    info = DatasetInfo("fake", 10, 1, (28, 28), (0.5,), (0.25,), 8, 8, crop_padding=2, hflip=True)
    assert build_pipeline(info, augment=True, autoaugment=True).batch_crop_flip is None  # AutoAugment: per sample
    assert build_pipeline(info, augment=False).batch_crop_flip is None
