import gzip
import struct

import numpy as np
import pytest
import torch

import snnconv.data.fashion_mnist as fm
from snnconv.data import DatasetFormatError, DatasetNotFoundError, dataset_info, get_dataset, make_loader

REAL = all((fm.SYSTEM_DIR / f"{s}.gz").is_file() for pair in fm.FASHION_MNIST_FILES.values() for s in pair)
needs_real = pytest.mark.skipif(not REAL, reason="sudo apt-get install dataset-fashion-mnist")


def write_idx(path, arr):
    raw = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def make_tiny(d, n_train=20, n_test=10, gz=True):
    d.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    rng = np.random.default_rng(0)
    for train, n in ((True, n_train), (False, n_test)):
        img, lbl = fm.FASHION_MNIST_FILES[train]
        write_idx(d / (img + ext), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(d / (lbl + ext), (np.arange(n) % 10).astype(np.uint8))
    return d


@needs_real
@pytest.mark.parametrize(("train", "n"), [(True, 60_000), (False, 10_000)])
def test_real_fashion_mnist(train, n):
    ds = get_dataset("fashion-mnist", train=train, augment=False)
    assert len(ds) == n == (dataset_info("fashion-mnist").train_size if train else 10_000)
    assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels, minlength=10).tolist() == [n // 10] * 10
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    info = dataset_info("fashion-mnist")
    lo, hi = (0 - info.mean[0]) / info.std[0], (1 - info.mean[0]) / info.std[0]
    xb, yb = next(iter(make_loader(ds, batch_size=n)))
    assert xb.shape == (n, 1, 28, 28) and yb.dtype == torch.int64
    assert xb.min().item() == pytest.approx(lo, abs=1e-5) and xb.max().item() == pytest.approx(hi, abs=1e-5)
    if train:  # normalisation statistics are the training set's own
        assert xb.mean().item() == pytest.approx(0.0, abs=1e-3)
        assert xb.std().item() == pytest.approx(1.0, abs=1e-3)


@needs_real
def test_real_train_augmented_batch():
    ds = get_dataset("fashion-mnist", train=True, subset=256)
    assert ds.augmented and len(ds) == 256
    x, y = next(iter(make_loader(ds, batch_size=64, shuffle=True, seed=1)))
    assert x.shape == (64, 1, 28, 28) and torch.isfinite(x).all()


def test_search_order_root_then_env_then_system(tmp_path, monkeypatch):
    explicit = make_tiny(tmp_path / "explicit", n_train=20)
    envdir = make_tiny(tmp_path / "env" / "fashion-mnist", n_train=30, gz=False)
    system = make_tiny(tmp_path / "system", n_train=40)
    monkeypatch.setattr(fm, "SYSTEM_DIR", system)
    monkeypatch.setenv("SNNCONV_DATA", str(tmp_path / "env"))
    assert fm.find_fashion_mnist(explicit) == explicit
    assert len(get_dataset("fashion-mnist", root=explicit, train=True)) == 20
    assert len(get_dataset("fashion-mnist", root=tmp_path / "explicit", train=False)) == 10
    assert fm.find_fashion_mnist(None) == envdir
    assert len(get_dataset("fashion-mnist", train=True)) == 30  # un-gzipped files work too
    monkeypatch.delenv("SNNCONV_DATA")
    assert fm.find_fashion_mnist(None) == system
    with pytest.raises(DatasetNotFoundError, match="not found in the given root"):  # issue 20: no silent fall-back
        fm.find_fashion_mnist(tmp_path / "nowhere")


def test_missing_dataset_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "absent")
    monkeypatch.setenv("SNNCONV_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as exc:
        get_dataset("fashion-mnist", root=tmp_path / "empty", train=False)
    msg = str(exc.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and str(tmp_path / "empty") in msg
    assert isinstance(exc.value, FileNotFoundError)


def test_truncated_file_raises_clear_error(tmp_path, monkeypatch):
    d = make_tiny(tmp_path / "fm")
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "absent")
    path = d / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetFormatError, match="truncated") as exc:
        get_dataset("fashion-mnist", root=d, train=False)
    assert "t10k-images-idx3-ubyte.gz" in str(exc.value)


def test_label_count_mismatch(tmp_path, monkeypatch):
    d = make_tiny(tmp_path / "fm")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DatasetFormatError, match="3 labels"):
        get_dataset("fashion-mnist", root=d, train=False)
