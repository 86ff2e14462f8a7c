"""Training cost of the activations: QCFS vs ReLU, and channel-wise softplus CS-QCFS vs QCFS, same network.

    .venv/bin/python benchmarks/train_overhead.py                         # ResNet-20 and VGG-16, 10 steps
    .venv/bin/python benchmarks/train_overhead.py --model resnet20 --steps 20 --repeats 7 --threads 2
    .venv/bin/python benchmarks/train_overhead.py --device cuda           # where a GPU is present

Each setup is the same registry model (same initial weights) built with ``make_act(kind, levels=L)`` for kind in
relu / qcfs / csqcfs, trained for ``--steps`` SGD steps (forward, cross-entropy, backward, momentum SGD update;
QCFS thresholds are trained too) on a fixed random CIFAR-shaped batch. Setups are interleaved within every
repeat after a warm-up (``_timing.interleaved``); the overhead is the median over repeats of the per-repeat time
ratio. Targets: QCFS / ReLU <= 1.05 (issue 8); seed 002 reports CS-QCFS / QCFS = 1.0165 (+1.65 %).
Results: a table on stdout and ``benchmarks/results/train_overhead.json`` (``train_overhead_pytorch-qcfs.json``
with ``SNNCONV_NATIVE=0``, which times QCFS's PyTorch path instead of the fused C++ kernel).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import interleaved, machine, spread, sync, write_json  # noqa: E402

KINDS = ("relu", "qcfs", "csqcfs")


def trainer(model: str, kind: str, args: argparse.Namespace) -> Callable[[], None]:
    """``--steps`` training steps of ``model`` with activation ``kind`` (a closure over its own state)."""
    from snnconv import make_act
    from snnconv.models import create

    torch.manual_seed(0)  # same initial conv/linear weights for every kind
    net = create(model, num_classes=10, in_channels=3, input_size=32, act=make_act(kind, levels=args.levels))
    net = net.to(args.device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
    loss_fn = nn.CrossEntropyLoss()

    def run() -> None:
        for _ in range(args.steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()
        sync(args.device)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", default=["resnet20", "vgg16"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--levels", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (used only where present)")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    torch.set_num_threads(args.threads)
    from snnconv.report import table

    records, rows = [], []
    for model in args.model:
        res = interleaved({k: trainer(model, k, args) for k in KINDS}, args.repeats, args.device)
        q_relu, cs_q = res["ratio"]["qcfs"]["relu"], res["ratio"]["csqcfs"]["qcfs"]
        records.append({"model": model, "seconds_per_step": {k: v / args.steps for k, v in res["seconds"].items()},
                        "qcfs_over_relu": q_relu, "csqcfs_over_qcfs": cs_q,
                        "qcfs_over_relu_quartiles": res["quartiles"]["qcfs"]["relu"],
                        "csqcfs_over_qcfs_quartiles": res["quartiles"]["csqcfs"]["qcfs"],
                        "raw_seconds": res["raw"]})  # fmt: skip
        ms = {k: f"{1e3 * res['seconds'][k] / args.steps:.0f}" for k in KINDS}
        q = res["quartiles"]
        rows.append([model, ms["relu"], ms["qcfs"], ms["csqcfs"], spread(q_relu, q["qcfs"]["relu"], 3, 3),
                     spread(cs_q, q["csqcfs"]["qcfs"], 3, 3)])  # fmt: skip
    info = machine(args.threads, args.device)
    print(f"batch {args.batch}, {args.steps} steps per run, {args.repeats} repeats, {args.threads} threads, "
          f"{args.device}, QCFS: {info['native_kernels']}, "
          f"load average {', '.join(f'{v:.1f}' for v in info['load_average'])}")  # fmt: skip
    print(table(["model", "ReLU ms/step", "QCFS ms/step", "CS-QCFS ms/step", "QCFS / ReLU [quartiles]",
                 "CS-QCFS / QCFS [quartiles]"], rows))  # fmt: skip
    meta = {"batch": args.batch, "levels": args.levels, "steps": args.steps, "repeats": args.repeats,
            "machine": info, "targets": {"qcfs_over_relu": 1.05, "csqcfs_over_qcfs_seed002": 1.0165}}  # fmt: skip
    name = "train_overhead.json" if info["native_kernels"].startswith("native") else "train_overhead_pytorch-qcfs.json"
    print(f"wrote {write_json(name, meta, records)}")


if __name__ == "__main__":
    main()
