import pytest
import torch
from torch.utils.data import DataLoader

from snnconv.data import TensorBatchLoader, get_dataset, make_loader


@pytest.fixture(scope="module")
def test_set():
    return get_dataset("digits", train=False)


def test_fast_path_matches_per_sample(test_set):
    loader = make_loader(test_set, batch_size=64)
    assert isinstance(loader, TensorBatchLoader) and len(loader) == 6
    x, y = torch.cat([b[0] for b in loader]), torch.cat([b[1] for b in loader])
    ref = torch.stack([test_set[i][0] for i in range(len(test_set))])
    assert torch.allclose(x, ref, atol=1e-6) and torch.equal(y, test_set.labels)
    assert y.dtype == torch.int64 and x.dtype == torch.float32


def test_shuffle_is_seeded_and_changes_per_epoch(test_set):
    a = make_loader(test_set, 360, shuffle=True, seed=5)
    b = make_loader(test_set, 360, shuffle=True, seed=5)
    ya1, ya2 = next(iter(a))[1], next(iter(a))[1]
    yb1 = next(iter(b))[1]
    assert torch.equal(ya1, yb1) and not torch.equal(ya1, ya2)
    assert torch.equal(torch.sort(ya1).values, torch.sort(test_set.labels).values)
    c = make_loader(test_set, 360, shuffle=True, seed=6)
    assert not torch.equal(next(iter(c))[1], ya1)


def test_drop_last(test_set):
    loader = make_loader(test_set, 100, drop_last=True)
    assert len(loader) == 3 and sum(len(y) for _, y in loader) == 300


def test_augmented_uses_dataloader_with_seeded_order():
    ds = get_dataset("digits", train=True)
    loader = make_loader(ds, 128, shuffle=True, seed=1)
    assert isinstance(loader, DataLoader) and len(loader) == 12
    torch.manual_seed(0)
    batches = list(loader)
    assert sum(len(y) for _, y in batches) == 1437
    assert batches[0][0].shape == (128, 1, 8, 8) and batches[0][1].dtype == torch.int64
    again = make_loader(ds, 128, shuffle=True, seed=1)
    torch.manual_seed(0)
    b2 = list(again)
    assert all(torch.equal(p[1], q[1]) for p, q in zip(batches, b2, strict=True))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(batches, b2, strict=True))


def test_name_and_subset():
    loader = make_loader("digits", 32, train=False, subset=64)
    assert isinstance(loader, TensorBatchLoader) and len(loader.dataset) == 64 and len(loader) == 2
    loader = make_loader(get_dataset("digits", train=False), 32, subset=40)
    assert len(loader.dataset) == 40
    with pytest.raises(ValueError, match="train="):
        make_loader("digits", 32)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader("digits", 0, train=True)


def test_workers():
    loader = make_loader("digits", 256, train=True, num_workers=1, seed=0)
    assert sum(len(y) for _, y in loader) == 1437
