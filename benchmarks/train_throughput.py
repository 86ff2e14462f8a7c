"""Training throughput: snnconv's ``fit`` against a plain PyTorch loop of the same network on the same images.

    .venv/bin/python benchmarks/train_throughput.py                        # VGG-11 ¼, VGG-16 ¼, ResNet-20 ½
    .venv/bin/python benchmarks/train_throughput.py --models vgg11 --images 2560 --repeats 3   # a quick look

One repeat = one training epoch over the first ``--images`` Fashion-MNIST training images (batch 128, SGD lr 0.1,
momentum 0.9, weight decay 5e-4, random crop (padding 2) + horizontal flip) followed by a pass over the first
``--test-images`` test images, for

* ``plain``: the loop a tutorial writes: a ``Dataset`` that applies torchvision's per-sample ``v2`` transforms to
  each uint8 image, ``DataLoader(batch_size=128, shuffle=True)``, ``zero_grad / loss.backward / step``, NCHW, and
  an evaluation under ``torch.no_grad`` with the same batch size;
* ``fit``: ``snnconv.train.fit`` with ``snnconv.data.make_loader`` as ``snnconv train`` runs it (checkpoints,
  metrics files, threshold monitor and all);
* ``fit-nhwc``: the same with ``channels_last=True`` (``snnconv train --channels-last``).

Both train the same registry model from the same initial weights. The setups are interleaved within every repeat
(``_timing.interleaved``); the speed-up is the median over repeats of the per-repeat time ratio plain / fit, with
its quartiles. Issue 21's targets: >= 2x on VGG-11 ¼, >= 1.5x on VGG-16 ¼ and ResNet-20 ½.
Results: a table on stdout and ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import interleaved, machine, spread, write_json  # noqa: E402

WIDTHS = {"vgg11": 0.25, "vgg16": 0.25, "resnet20": 0.5}


class TutorialDataset(Dataset):
    """uint8 images with per-sample torchvision transforms, as a tutorial's dataset applies them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float, augment: bool) -> None:
        ops: list = [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()] if augment else []
        self.transform = v2.Compose([*ops, v2.ToDtype(torch.float32, scale=True), v2.Normalize((mean,), (std,))])
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def _config(model: str, images: int, **overrides):
    from snnconv.train import TrainConfig

    return TrainConfig(model=model, dataset="fashion-mnist", width=WIDTHS[model], epochs=1, batch_size=128,
                       subset=images, device="cpu", log="none", **overrides)  # fmt: skip


def plain_epoch(model: str, args: argparse.Namespace) -> Callable[[], None]:
    from snnconv.data import get_dataset
    from snnconv.runs import build_model

    train = get_dataset("fashion-mnist", train=True, augment=False, subset=args.images)
    test = get_dataset("fashion-mnist", train=False, augment=False, subset=args.test_images)
    mean, std = train.pipeline.mean[0], train.pipeline.std[0]
    train_ds = TutorialDataset(train.images, train.labels, mean, std, augment=True)
    test_ds = TutorialDataset(test.images, test.labels, mean, std, augment=False)
    config = _config(model, args.images)

    def run() -> None:
        torch.manual_seed(0)
        net = build_model(config)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        net.train()
        for x, y in DataLoader(train_ds, batch_size=128, shuffle=True):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(test_ds, batch_size=128):
                correct += int((net(x).argmax(1) == y).sum())

    return run


def fit_epoch(model: str, args: argparse.Namespace, **overrides) -> Callable[[], None]:
    from snnconv.data import make_loader
    from snnconv.runs import build_model
    from snnconv.train import fit

    config = _config(model, args.images, **overrides)
    train = make_loader("fashion-mnist", 128, shuffle=True, train=True, subset=args.images, augment=True)
    test = make_loader("fashion-mnist", 256, shuffle=False, train=False, subset=args.test_images)

    def run() -> None:
        torch.manual_seed(0)
        net = build_model(config)
        with tempfile.TemporaryDirectory() as out:
            fit(net, train, test, config, out)

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vgg11,vgg16,resnet20")
    p.add_argument("--images", type=int, default=12_000, help="training images per epoch")
    p.add_argument("--test-images", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    print(f"{'model':10s} {'setup':9s} {'s/repeat':>8s} {'img/s':>6s}  speed-up vs plain [quartiles]")
    for model in args.models.split(","):
        setups = {"plain": plain_epoch(model, args), "fit": fit_epoch(model, args),
                  "fit-nhwc": fit_epoch(model, args, channels_last=True)}  # fmt: skip
        r = interleaved(setups, args.repeats)
        sec, n = r["seconds"], args.images + args.test_images
        speedup = {k: r["ratio"]["plain"][k] for k in setups if k != "plain"}
        quartiles = {k: r["quartiles"]["plain"][k] for k in speedup}
        for k in setups:
            ratio = spread(speedup[k], quartiles[k], 2) if k in speedup else ""
            print(f"{model:10s} {k:9s} {sec[k]:8.1f} {n / sec[k]:6.0f}  {ratio}")
        results.append({"model": model, "width": WIDTHS[model], "seconds": sec, "speedup": speedup,
                        "speedup_quartiles": quartiles, "images": args.images, "test_images": args.test_images,
                        "raw": r["raw"]})  # fmt: skip
    path = write_json("train_throughput.json", {**machine(args.threads), "repeats": args.repeats}, results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
