import pickle
import struct

import numpy as np
import pytest
import torch

from snnconv.data import DatasetFormatError, DatasetNotFoundError, get_dataset, make_loader

CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta"),
}


def write_cifar(root, name, per_file=12):
    """The real "python version" layout: dicts pickled with protocol 2, as in the released archives."""
    folder, train_files, test_files, meta = CIFAR[name]
    k = 10 if name == "cifar10" else 100
    d = root / folder
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, f in enumerate(train_files + test_files):
        n = per_file * (5 if name == "cifar100" and f == "train" else 1)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(i + j) % k for j in range(n)]
        entry = {"batch_label": f, "data": data, "filenames": [f"img_{j}.png" for j in range(n)]}
        if name == "cifar10":
            entry["labels"] = labels
        else:
            entry.update(fine_labels=labels, coarse_labels=[x // 5 for x in labels])
        with open(d / f, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
    key = "label_names" if name == "cifar10" else "fine_label_names"
    with open(d / meta, "wb") as fh:
        pickle.dump({key: [f"class{c}" for c in range(k)], "num_vis": 3072}, fh, protocol=2)
    return d


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_fixture_roundtrip(tmp_path, name):
    d = write_cifar(tmp_path, name)
    tr = get_dataset(name, root=tmp_path, train=True)
    te = get_dataset(name, root=tmp_path, train=False, augment=False)
    assert len(tr) == 60 and len(te) == 12 and tr.augmented and not te.augmented
    assert tr.images.shape == (60, 3, 32, 32) and tr.images.dtype == torch.uint8
    assert tr.classes[:2] == ["class0", "class1"]
    # pixel layout: rows of 3072 = R plane, G plane, B plane, each 32x32 row-major
    with open(d / CIFAR[name][2][0], "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    assert torch.equal(te.images[0], torch.from_numpy(raw["data"][0].reshape(3, 32, 32)))
    assert te.labels.tolist() == raw["labels" if name == "cifar10" else "fine_labels"]
    x, y = te[3]
    assert x.shape == (3, 32, 32) and isinstance(y, int)
    xb, yb = next(iter(make_loader(tr, 16, shuffle=True)))
    assert xb.shape == (16, 3, 32, 32)
    # the batches folder itself is accepted as root
    assert len(get_dataset(name, root=d, train=False)) == 12


def test_cifar_missing_names_files_and_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        get_dataset("cifar10", root=tmp_path, train=True)
    msg = str(exc.value)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "batches.meta" in msg
    assert "--download" in msg and "download=True" in msg


def test_cifar_malformed(tmp_path):
    d = write_cifar(tmp_path, "cifar10", per_file=4)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, fh, protocol=2)
    with pytest.raises(DatasetFormatError, match="N x 3072") as exc:
        get_dataset("cifar10", root=tmp_path, train=False)
    assert "test_batch" in str(exc.value)
    (d / "test_batch").write_bytes((d / "data_batch_1").read_bytes()[:-50])
    with pytest.raises(DatasetFormatError, match="test_batch"):
        get_dataset("cifar10", root=tmp_path, train=False)


def test_cifar_reader_refuses_code(tmp_path):
    d = write_cifar(tmp_path, "cifar10", per_file=2)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(d / "test_batch", "wb") as fh:
        pickle.dump({"data": Evil(), "labels": []}, fh, protocol=2)
    with pytest.raises(DatasetFormatError, match="refusing"):
        get_dataset("cifar10", root=tmp_path, train=False)


def write_mnist(root, n_train=30, n_test=10):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + imgs.tobytes())
        lbl = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + lbl.tobytes())
    return raw


def test_mnist_fixture_through_torchvision(tmp_path):
    write_mnist(tmp_path)
    tr = get_dataset("mnist", root=tmp_path, train=True)
    te = get_dataset("mnist", root=tmp_path, train=False)
    assert len(tr) == 30 and len(te) == 10 and te.images.shape == (10, 1, 28, 28)
    assert te.labels.tolist() == [i % 10 for i in range(10)]
    x, y = tr[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 0


def test_mnist_missing_names_files_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNCONV_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as exc:
        get_dataset("mnist", train=False)
    msg = str(exc.value)
    assert str(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte") in msg and "--download" in msg


def test_mnist_truncated(tmp_path):
    raw = write_mnist(tmp_path)
    p = raw / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetFormatError, match="MNIST"):
        get_dataset("mnist", root=tmp_path, train=False)


def test_cifar_pickles_from_numpy1_are_read(tmp_path):
    """The released archives reference ``numpy.core.multiarray`` (numpy < 2); the reader maps it."""
    d = write_cifar(tmp_path, "cifar10", per_file=3)
    for f in d.iterdir():
        raw = f.read_bytes()
        f.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in (d / "test_batch").read_bytes()
    assert len(get_dataset("cifar10", root=tmp_path, train=False)) == 3


def test_cifar_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision

    calls = []

    class FakeCIFAR100:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_cifar(tmp_path, "cifar100", per_file=2)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    ds = get_dataset("cifar100", root=tmp_path, train=False, download=True)
    assert calls == [(str(tmp_path), False, True)] and len(ds) == 2
