"""Batch iteration: :func:`make_loader` and the in-memory :class:`TensorBatchLoader`."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from snnconv.data.memory import InMemoryDataset, apply_subset
from snnconv.data.registry import get_dataset
from snnconv.distributed import ShardedSampler, shard_indices
from snnconv.errors import SnnconvError

__all__ = ["TensorBatchLoader", "make_loader"]


class TensorBatchLoader:
    """Iterates ``(x, y)`` batches of an un-augmented :class:`InMemoryDataset` without per-sample work.

    Each pass draws a fresh permutation from a generator seeded once with ``seed`` (so the sequence
    of epochs is reproducible), exactly like ``DataLoader(shuffle=True, generator=...)``. With
    ``world_size > 1`` it iterates only rank ``rank``'s share of each permutation (positions rank, rank+W, ...;
    ``pad`` wraps around so every rank gets the same count), see :mod:`snnconv.distributed`.
    """

    def __init__(
        self,
        dataset: InMemoryDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"TensorBatchLoader: rank must be in [0, {world_size}), got {rank}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.generator = torch.Generator().manual_seed(seed)

    def _count(self) -> int:
        n = len(self.dataset)
        if self.world_size == 1:
            return n
        return math.ceil(n / self.world_size) if self.pad else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            order = shard_indices(order, self.rank, self.world_size, self.pad)
        for b in range(len(self)):
            yield self.dataset.get_batch(order[b * self.batch_size : (b + 1) * self.batch_size])


class _ReseedableBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose ``generator`` is its inner sampler's: ``fit`` reseeds it per epoch (bit-exact resume).

    A plain ``BatchSampler`` hides its ``RandomSampler``, whose generator would then advance across epochs from
    ``make_loader``'s seed: a run resumed at epoch e would replay epoch 1's order instead of epoch e's.
    """

    @property
    def generator(self) -> torch.Generator | None:
        return getattr(self.sampler, "generator", None)

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        if isinstance(self.sampler, RandomSampler):
            self.sampler.generator = value


class _Batches(Dataset):
    """``ds[list_of_indices] -> (x, y)`` so a DataLoader with ``batch_size=None`` fetches whole batches."""

    def __init__(self, ds: InMemoryDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, indices):
        return self.ds.get_batch(indices)


def make_loader(
    dataset_or_name: Dataset | str,
    batch_size: int,
    shuffle: bool | None = None,
    seed: int = 0,
    *,
    train: bool | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    subset: int | None = None,
    root: str | os.PathLike | None = None,
    augment: bool | None = None,
    autoaugment: bool = False,
    cutout: bool = False,
    download: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pad: bool | None = None,
) -> TensorBatchLoader | DataLoader:
    """An iterable of ``(x float N x C x H x W, y int64 N)`` batches.

    ``dataset_or_name``: a dataset (e.g. from :func:`get_dataset`) or a registered name, in which
    case ``train`` is required and ``root``/``augment``/``autoaugment``/``cutout``/``download`` are
    passed to :func:`get_dataset`. ``shuffle`` defaults to ``train`` (or False for a dataset).
    ``subset=N`` keeps the first N samples of a fixed-seed shuffle.

    Un-augmented in-memory datasets (test sets) get a :class:`TensorBatchLoader` (no per-sample
    Python work). Augmented in-memory datasets get a ``DataLoader`` over whole batches (random
    augmentation per sample, normalization batched). Other datasets get a plain ``DataLoader``.
    Shuffling is seeded by ``seed``; with ``num_workers=0`` augmentation draws from torch's global
    RNG (call ``torch.manual_seed`` for bit-reproducible augmentation).

    ``world_size > 1`` (data-parallel training, see :mod:`snnconv.distributed`): the loader yields only rank
    ``rank``'s share, ``batch_size`` samples per batch (the per-rank batch); ``pad`` (default: ``shuffle``)
    repeats a few samples so every rank gets the same number of batches. Shuffling then follows
    ``set_epoch``/``generator`` reseeding by ``fit`` (identical on every rank).
    """
    if batch_size <= 0:
        raise SnnconvError(f"batch_size must be positive, got {batch_size}")
    if isinstance(dataset_or_name, str):
        if train is None:
            raise SnnconvError("make_loader(name, ...) needs train=True or train=False")
        ds = get_dataset(
            dataset_or_name, root=root, train=train, augment=augment, autoaugment=autoaugment,
            cutout=cutout, download=download, subset=subset,
        )  # fmt: skip
    else:
        ds = dataset_or_name
        if subset is not None:
            ds = apply_subset(ds, subset)
    if shuffle is None:
        shuffle = bool(train)
    gen = torch.Generator().manual_seed(seed)
    pad = shuffle if pad is None else pad
    if world_size > 1:
        shard = {"rank": rank, "world_size": world_size, "shuffle": shuffle, "seed": seed, "pad": pad}
        return _sharded_loader(ds, batch_size, shard, drop_last=drop_last, num_workers=num_workers, generator=gen)
    if isinstance(ds, InMemoryDataset):
        if not ds.augmented:
            return TensorBatchLoader(ds, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        base = RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds)
        return DataLoader(
            _Batches(ds),
            batch_size=None,
            sampler=_ReseedableBatchSampler(base, batch_size, drop_last),
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            generator=gen,
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=gen,
    )


def _sharded_loader(
    ds: Dataset, batch_size: int, shard: dict, *, drop_last: bool, num_workers: int, generator: torch.Generator
) -> TensorBatchLoader | DataLoader:
    """make_loader's three loader kinds, restricted to one rank's share (``shard``: ShardedSampler keywords)."""
    workers = {"num_workers": num_workers, "persistent_workers": num_workers > 0, "generator": generator}
    if isinstance(ds, InMemoryDataset):
        if not ds.augmented:
            return TensorBatchLoader(ds, batch_size, drop_last=drop_last, **shard)
        sampler = ShardedSampler(len(ds), **shard, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(_Batches(ds), batch_size=None, sampler=sampler, **workers)
    sampler = ShardedSampler(len(ds), **shard)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **workers)
