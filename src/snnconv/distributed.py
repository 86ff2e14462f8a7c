"""Data-parallel training under ``torchrun``: process group, rank helpers, per-rank data sharding, metric reduction.

``torchrun --nproc_per_node N -m snnconv train ...`` (or ``python -m torch.distributed.run ...``, several nodes
with ``--nnodes``/``--rdzv-endpoint``) starts N processes with ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in their
environment. :func:`init` joins them into one process group (NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``;
Gloo on CPU); without ``WORLD_SIZE > 1`` every helper here is a no-op and training is single-process.

Batch semantics: ``TrainConfig.batch_size`` is the *global* batch. Each of the W ranks takes ``batch_size / W``
samples; rank r reads positions r, r+W, r+2W, ... of the epoch's permutation, which is seeded from
(seed, epoch) alone and is therefore the same on every rank. The union of the ranks' j-th batches is the
single-process j-th batch (when W divides the epoch), and DDP averages the ranks' mean gradients, so the
gradient equals the single-process one up to float rounding (BatchNorm statistics stay per rank).
Multi-node runs need a run directory on a shared filesystem: rank 0 writes it, every rank reads it to resume.
"""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

__all__ = [
    "ShardedSampler",
    "all_reduce_sum",
    "any_true",
    "barrier",
    "broadcast_buffers",
    "gather_objects",
    "init",
    "is_main",
    "is_sharded",
    "local_rank",
    "rank",
    "rank_seed",
    "shard_indices",
    "shard_kwargs",
    "requested",
    "teardown",
    "world_size",
]


def requested() -> bool:
    """True when the environment asks for several processes (``WORLD_SIZE > 1``, set by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the group (1 when not distributed)."""
    return dist.get_world_size() if _initialized() else 1


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if _initialized() else 0


def local_rank() -> int:
    """Rank of this process on its node (``LOCAL_RANK``; 0 when not distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if requested() else 0


def is_main() -> bool:
    """True on the process that writes files (rank 0; always True when not distributed)."""
    return rank() == 0


def init(device: torch.device | str = "cpu") -> torch.device:
    """Join the torchrun process group if ``WORLD_SIZE > 1`` (idempotent); return this rank's device.

    A CUDA ``device`` becomes ``cuda:LOCAL_RANK`` (one GPU per process) and selects NCCL; any other device Gloo.
    The group is destroyed at interpreter exit (or by :func:`teardown`).
    """
    device = torch.device(device)
    if not requested():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not _initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(teardown)
    return device


def teardown() -> None:
    """Leave and destroy the process group (no-op when none is initialized)."""
    if _initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op when not distributed)."""
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: Sequence[float] | Tensor) -> list[float]:
    """Σ over ranks of each value (float64; returned unchanged when not distributed)."""
    if world_size() == 1:
        return [float(v) for v in values]
    t = torch.as_tensor(values if isinstance(values, Tensor) else list(values), dtype=torch.float64)
    t = t.to(_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank (e.g. a callback asking to stop)."""
    return bool(flag) if world_size() == 1 else all_reduce_sum([float(bool(flag))])[0] > 0


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so all ranks hold identical models."""
    if world_size() == 1:
        return
    for b in model.buffers():
        dist.broadcast(b.data, src=0)


def gather_objects(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (picklable objects; ``[obj]`` when not distributed)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, rank_: int, *extra: int) -> int:
    """A 63-bit seed derived from (seed, rank, *extra): independent global-RNG streams for ranks > 0."""
    import numpy as np

    state = np.random.SeedSequence([seed, rank_, *extra]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def shard_indices(order: Tensor, rank_: int, world: int, pad: bool) -> Tensor:
    """Positions rank, rank+W, ... of ``order``; ``pad`` first repeats its head so every rank gets ceil(n/W)."""
    n = len(order)
    if pad and n % world:
        total = math.ceil(n / world) * world
        order = torch.cat([order] * math.ceil(total / n))[:total] if n else order
    return order[rank_::world]


class ShardedSampler(Sampler):
    """Rank ``rank``'s share of a permutation of ``range(n)`` (or of ``range(n)`` itself when not shuffling).

    The permutation of epoch e is drawn from ``snnconv.train.epoch_generator(seed, e)`` after ``set_epoch(e)``
    (``fit`` calls it before every epoch), so it is identical on every rank and in resumed runs. ``pad=True``
    (training) wraps around so that every rank gets ``ceil(n / W)`` samples -- DDP needs the same number of steps
    everywhere; ``pad=False`` (evaluation) splits the samples exactly. With ``batch_size`` it yields lists of
    indices (a batch sampler, for loaders that fetch whole batches), else single indices.
    """

    def __init__(
        self,
        n: int,
        *,
        rank: int,
        world_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pad: bool = True,
        batch_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardedSampler: rank must be in [0, {world_size}), got {rank}")
        self.n, self.rank, self.world_size, self.shuffle, self.seed = n, rank, world_size, shuffle, seed
        self.pad, self.batch_size, self.drop_last, self.epoch = pad, batch_size, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation from now on."""
        self.epoch = epoch

    def _count(self) -> int:
        return math.ceil(self.n / self.world_size) if self.pad else len(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        if self.batch_size is None:
            return self._count()
        return self._count() // self.batch_size if self.drop_last else math.ceil(self._count() / self.batch_size)

    def __iter__(self) -> Iterator:
        if self.shuffle:
            from snnconv.train import epoch_generator  # lazy: train imports this module

            order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(self.n)
        mine = shard_indices(order, self.rank, self.world_size, self.pad).tolist()
        if self.batch_size is None:
            yield from mine
            return
        for b in range(len(self)):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size]


def is_sharded(loader: object) -> bool:
    """True if ``loader`` yields only this rank's share of the data (a sharded make_loader/DistributedSampler)."""
    if getattr(loader, "world_size", 1) > 1:
        return True
    sampler = getattr(loader, "sampler", None)
    return getattr(sampler, "world_size", getattr(sampler, "num_replicas", 1)) > 1


def shard_kwargs(batch_size: int) -> dict:
    """``make_loader`` keywords of this rank: ``batch_size`` (the global batch) / W per rank, ``rank``, ``world_size``.

    ``{"batch_size": batch_size, "rank": 0, "world_size": 1}`` when not distributed.
    """
    world = world_size()
    if batch_size % world:
        from snnconv.errors import SnnconvError

        raise SnnconvError(
            f"batch size {batch_size} is the global batch and must be divisible by the {world} processes; "
            f"use a multiple of {world}"
        )
    return {"batch_size": batch_size // world, "rank": rank(), "world_size": world}
