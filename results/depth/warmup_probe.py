"""The first training steps of a ¼-width VGG-16 at lr 0.1, with and without warm-up (issue 28, docs/depth.md).

    python results/depth/warmup_probe.py [--steps 150] [--warmup-steps 200] [--seeds 0,1,2]

For each seed, the same network and batches are trained twice with `snnconv train`'s optimizer and augmentation
(SGD 0.1, momentum 0.9, wd 5e-4, random crop + flip): once at the scheduled rate from step 1 (seed 004's recipe),
once with the rate ramped linearly over ``--warmup-steps`` (``snnconv.train.Warmup``, what ``--warmup-epochs``
does). Per step it records the loss and the lowest QCFS threshold λ of the network. Writes
results/depth/warmup_probe.json and prints one row per run: the highest loss, the lowest λ and at which step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch.nn.functional as F

from snnconv.data import make_loader
from snnconv.layers.qcfs import QCFS
from snnconv.runs import build_model
from snnconv.train import TrainConfig, Warmup, make_optimizer, seed_everything

HERE = Path(__file__).resolve().parent


def probe(seed: int, steps: int, warmup_steps: int) -> dict:
    config = TrainConfig(model="vgg16", dataset="fashion-mnist", width=0.25, epochs=1, seed=seed, out="")
    seed_everything(seed)
    model = build_model(config).train()
    optimizer = make_optimizer(model, config)
    loader = make_loader(config.dataset, config.batch_size, shuffle=True, seed=seed, train=True, augment=True)
    warmup = Warmup(warmup_steps / len(loader), loader)
    qcfs = [m for m in model.modules() if isinstance(m, QCFS)]
    losses, lows = [], []
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with warmup.scaled(optimizer, 0, step):
            optimizer.step()
        losses.append(loss.item())
        lows.append(min(float(m.threshold.detach().min()) for m in qcfs))
    worst = min(range(len(lows)), key=lows.__getitem__)
    return {"seed": seed, "warmup_steps": warmup_steps, "loss": losses, "min_threshold": lows,
            "max_loss": max(losses), "lowest_threshold": lows[worst], "lowest_at_step": worst + 1}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    runs = []
    for seed in map(int, args.seeds.split(",")):
        for w in (0, args.warmup_steps):
            t0 = time.perf_counter()
            runs.append(probe(seed, args.steps, w))
            r = runs[-1]
            print(f"seed {seed} warm-up {w:4d} steps: max loss {r['max_loss']:.2f}, lowest λ "
                  f"{r['lowest_threshold']:.2f} at step {r['lowest_at_step']} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    out = HERE / "warmup_probe.json"
    out.write_text(
        json.dumps(
            {
                "command": f"python results/depth/warmup_probe.py --steps {args.steps} "
                f"--warmup-steps {args.warmup_steps} --seeds {args.seeds}",
                "runs": runs,
            }
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
