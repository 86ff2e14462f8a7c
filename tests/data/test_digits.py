import torch

from snnconv.data import dataset_info, get_dataset, make_loader
from snnconv.data.digits import load_digits_split


def test_digits_shapes_and_classes():
    tr = get_dataset("digits", train=True)
    te = get_dataset("digits", train=False)
    info = dataset_info("digits")
    assert (len(tr), len(te)) == (info.train_size, info.test_size) == (1437, 360)
    assert tr.images.shape == (1437, 1, 8, 8) and te.images.shape == (360, 1, 8, 8)
    for ds in (tr, te):
        counts = torch.bincount(ds.labels, minlength=10)
        assert (counts > 0).all() and counts.numel() == 10
    # stratified: every class has ~20% of its samples in the test split
    te_counts = torch.bincount(te.labels, minlength=10).float()
    tot = te_counts + torch.bincount(tr.labels, minlength=10).float()
    assert ((te_counts / tot - 360 / 1797).abs() < 0.02).all()
    x, y = te[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= y < 10


def test_digits_values_map_from_0_16():
    from sklearn.datasets import load_digits

    raw = load_digits()
    x, _ = load_digits_split(train=True)
    assert x.dtype == torch.uint8 and int(x.max()) == 255 and int(x.min()) == 0
    levels = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(x).tolist()) <= levels
    assert len(raw.images) == 1797


def test_digits_split_is_deterministic_and_disjoint():
    a = get_dataset("digits", train=False)
    from snnconv.data.digits import _split

    _split.cache_clear()
    b = get_dataset("digits", train=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    tr = get_dataset("digits", train=True)
    train_rows = {bytes(r.numpy()) for r in tr.images.flatten(1)}
    test_rows = [bytes(r.numpy()) for r in b.images.flatten(1)]
    # identical images can occur in the raw data; the overlap must be tiny
    assert sum(r in train_rows for r in test_rows) <= 3


def test_digits_loader_epoch():
    loader = make_loader("digits", batch_size=100, train=True, seed=3)
    xs, ys = zip(*loader, strict=True)
    assert len(loader) == 15 and sum(len(y) for y in ys) == 1437
    assert all(x.shape[1:] == (1, 8, 8) for x in xs)
