import gzip
import struct

import numpy as np
import pytest
import torch

from snnconv.data import DatasetFormatError, parse_idx, read_idx
from snnconv.data.idx import IDX_DTYPES


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    be = np.dtype(IDX_DTYPES[code][1])
    return struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(be).tobytes()


@pytest.mark.parametrize("code", sorted(IDX_DTYPES))
def test_roundtrip_every_dtype(code):
    rng = np.random.default_rng(code)
    arr = rng.integers(-100, 100, size=(3, 4, 5)) if code not in (0x08,) else rng.integers(0, 255, (3, 4, 5))
    arr = arr.astype(np.dtype(IDX_DTYPES[code][1]).newbyteorder("="))
    out = parse_idx(idx_bytes(arr, code))
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_read_idx_plain_and_gzip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(arr, 0x08))
    (tmp_path / "b-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(arr, 0x08)))
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz"):
        t = read_idx(tmp_path / name)
        assert t.dtype == torch.uint8 and t.tolist() == arr.tolist()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "dtype code"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b[:2], "shorter than"),
    ],
)
def test_malformed_raises_naming_file(tmp_path, mutate, match):
    good = idx_bytes(np.zeros((2, 3, 4), np.uint8), 0x08)
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(mutate(good))
    with pytest.raises(DatasetFormatError, match=match) as exc:
        read_idx(path)
    assert "broken-idx3-ubyte" in str(exc.value)


def test_truncated_gzip_names_file(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8), 0x08))
    path = tmp_path / "cut-images-idx3-ubyte.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetFormatError, match="gzip") as exc:
        read_idx(path)
    assert "cut-images-idx3-ubyte.gz" in str(exc.value)
