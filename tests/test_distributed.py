"""Data-parallel training (snnconv.distributed): 2 CPU processes with Gloo under torch.distributed.run.

The workers run the real CLI (``snnconv.cli.main(["train", ...])``); a wrapper around ``snnconv.runs.fit`` records
each rank's final weights and every checkpoint each rank saved, so the test can check that all ranks end with
identical models, that only rank 0 writes, that DDP over 2 ranks trains like one process with the same global
batch, and that a stopped DDP run resumes bit-exactly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import snnconv.runs
from snnconv import distributed
from snnconv.checkpoint import KIND_TRAIN, load_checkpoint
from snnconv.data import make_loader
from snnconv.distributed import ShardedSampler, shard_indices
from snnconv.runs import train_run
from snnconv.train import TrainConfig, _epoch_loader

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="needs torch.distributed"
)

ARGS = ["--model", "mlp", "--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
        "--subset", "1024", "--no-augment", "--device", "cpu"]  # fmt: skip

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch
    import snnconv.runs
    import snnconv.train
    from snnconv import cli, distributed

    rank = int(os.environ["RANK"])
    record = Path(os.environ["RECORD"])
    saved = []
    real_save, real_fit = snnconv.train.save_checkpoint, snnconv.runs.fit

    def save_checkpoint(path, payload, **kw):
        saved.append(Path(path).name)
        return real_save(path, payload, **kw)

    def fit(model, *args, callbacks=(), **kw):
        stop = int(os.environ.get("STOP_AT", "0"))
        cbs = [*callbacks, lambda info: info["epoch"] == stop] if stop else list(callbacks)
        result = real_fit(model, *args, callbacks=cbs, **kw)
        torch.save(model.state_dict(), record / f"rank{rank}.pt")
        return result

    snnconv.train.save_checkpoint, snnconv.runs.fit = save_checkpoint, fit
    if os.environ.get("NO_BATCHNORM"):  # per-rank batch statistics would differ from the global batch's
        build = snnconv.runs.build_model
        snnconv.runs.build_model = lambda config: torch.nn.Sequential(*[
            torch.nn.Identity() if isinstance(m, torch.nn.BatchNorm1d) else m for m in build(config).net])
    argv = sys.argv[1:]
    if os.environ.get("STOP_AT"):  # stop after epoch STOP_AT, then resume in the same process group
        assert cli.main(argv) == 0
        del os.environ["STOP_AT"]
        argv = [*argv, "--resume"]
    code = cli.main(argv)
    (record / f"saved{rank}.json").write_text(json.dumps({"saved": saved, "world": distributed.world_size()}))
    sys.exit(code)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp: Path, out: Path, *, stop_at: int = 0, no_batchnorm: bool = False) -> dict:
    """Run the CLI train command on 2 Gloo ranks; return the per-rank records."""
    record = tmp / "record"
    record.mkdir(parents=True)
    worker = tmp / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "RECORD": str(record), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    if stop_at:
        env["STOP_AT"] = str(stop_at)
    if no_batchnorm:
        env["NO_BATCHNORM"] = "1"
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(worker), "train", *ARGS,
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {
        "weights": [torch.load(record / f"rank{r}.pt", weights_only=True) for r in range(2)],
        "saved": [json.loads((record / f"saved{r}.json").read_text()) for r in range(2)],
    }


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_batchnorm(model: nn.Module) -> nn.Sequential:
    """The MLP with Identity in place of BatchNorm1d (as the worker's NO_BATCHNORM does)."""
    return nn.Sequential(*[nn.Identity() if isinstance(m, nn.BatchNorm1d) else m for m in model.net])


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return {"out": tmp / "run", **launch(tmp, tmp / "run")}


def test_ddp_ranks_end_identical_and_only_rank0_writes(ddp_run):
    out, (w0, w1), (s0, s1) = ddp_run["out"], ddp_run["weights"], ddp_run["saved"]
    assert s0["world"] == s1["world"] == 2
    assert_same_weights(w0, w1)
    assert s1["saved"] == [] and s0["saved"].count("last.pt") == 2 and "best.pt" in s0["saved"]
    files = ["best.pt", "config.json", "last.pt", "metrics.csv", "metrics.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == files  # no temp files of other ranks
    last = load_checkpoint(out / "last.pt", kind=KIND_TRAIN)
    assert last["epoch"] == 2 and len(last["rng_ranks"]) == 2
    assert_same_weights(last["model"], w0)
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert lines[-1]["test_acc"] > 0.5


def test_ddp_trains_like_one_process_with_the_global_batch(tmp_path, monkeypatch, one_thread):
    """Rank r's j-th batch holds positions r, r+2, ... of the single-process j-th batch and DDP averages the
    ranks' mean gradients: without BatchNorm (per-rank statistics) 2 ranks train like 1 process, up to rounding."""
    ddp = launch(tmp_path / "ddp", tmp_path / "ddp" / "run", no_batchnorm=True)["weights"][0]
    build = snnconv.runs.build_model
    monkeypatch.setattr(snnconv.runs, "build_model", lambda config: without_batchnorm(build(config)))
    # warm-up 1 epoch: the CLI default the torchrun workers get
    config = TrainConfig(model="mlp", dataset="digits", epochs=2, batch_size=32, lr=0.05, subset=1024, augment=False,
                         device="cpu", out=str(tmp_path / "single"), warmup_epochs=1.0)  # fmt: skip
    train_run(config)
    single = load_checkpoint(tmp_path / "single" / "last.pt", kind=KIND_TRAIN)["model"]
    assert single.keys() == ddp.keys()
    for k, v in single.items():
        assert torch.allclose(v, ddp[k], rtol=1e-4, atol=1e-5), k
    ddp_lines = [json.loads(s) for s in (tmp_path / "ddp" / "run" / "metrics.jsonl").read_text().splitlines()]
    single_lines = [json.loads(s) for s in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert [m["test_acc"] for m in ddp_lines] == [m["test_acc"] for m in single_lines]


def test_ddp_resume_is_bit_identical(ddp_run, tmp_path):
    resumed = launch(tmp_path, tmp_path / "run", stop_at=1)
    assert_same_weights(resumed["weights"][0], resumed["weights"][1])
    assert_same_weights(resumed["weights"][0], ddp_run["weights"][0])
    assert resumed["saved"][1]["saved"] == []
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]


def test_sharding_partitions_every_epoch():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    parts = [shard_indices(order, r, 3, pad=False) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    padded = [shard_indices(order, r, 3, pad=True) for r in range(3)]
    assert [len(p) for p in padded] == [4, 4, 4] and set(torch.cat(padded).tolist()) == set(range(10))
    samplers = [ShardedSampler(10, rank=r, world_size=2, seed=5) for r in range(2)]
    for s in samplers:
        s.set_epoch(3)
    assert sorted([*samplers[0], *samplers[1]]) == list(range(10))
    assert list(samplers[0]) != list(ShardedSampler(10, rank=0, world_size=2, seed=5))  # epoch 3 vs epoch 0
    batched = ShardedSampler(10, rank=1, world_size=2, batch_size=2, shuffle=False)
    assert list(batched) == [[1, 3], [5, 7], [9]] and len(batched) == 3


@pytest.mark.parametrize("augment", [False, True])
def test_sharded_loaders_split_the_single_process_batches(augment):
    """Both make_loader paths: the ranks' j-th batches together are the single-process j-th batch."""
    kw = {"shuffle": True, "seed": 0, "train": True, "subset": 64, "augment": augment}
    single = _epoch_loader(make_loader("digits", 16, **kw), 0, 2)
    ranks = [_epoch_loader(make_loader("digits", 8, rank=r, world_size=2, **kw), 0, 2, r) for r in range(2)]
    assert distributed.is_sharded(ranks[0]) and not distributed.is_sharded(single)
    if augment:  # sharded: (seed, epoch)-seeded ShardedSampler; single process: the DataLoader's own RandomSampler
        labels = [torch.cat([y for _, y in loader]) for loader in (single, *ranks)]
        assert len(labels[1]) == len(labels[2]) == 32
        assert sorted(labels[0].tolist()) == sorted(torch.cat(labels[1:]).tolist())  # one epoch: all 64 samples
        return
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks, strict=True):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_single_process_is_unchanged(tmp_path, one_thread):
    """Without torchrun: no process group, unsharded loaders, no per-rank RNG states in checkpoints."""
    assert not distributed.requested() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard_kwargs(32) == {"batch_size": 32, "rank": 0, "world_size": 1}
    assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0] and distributed.gather_objects("x") == ["x"]
    distributed.barrier()
    config = TrainConfig(model="mlp", dataset="digits", epochs=1, batch_size=64, subset=256, device="cpu",
                         out=str(tmp_path / "run"))  # fmt: skip
    result = train_run(config)
    assert not torch.distributed.is_initialized()
    last = load_checkpoint(tmp_path / "run" / "last.pt", kind=KIND_TRAIN)
    assert "rng_ranks" not in last and result["epochs_completed"] == 1
    a = make_loader("digits", 32, shuffle=True, seed=0, train=True, subset=100, augment=False)
    b = make_loader("digits", 32, shuffle=True, seed=0, train=True, subset=100, augment=False, rank=0, world_size=1)
    for (xa, ya), (xb, yb) in zip(_epoch_loader(a, 0, 1), _epoch_loader(b, 0, 1), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
