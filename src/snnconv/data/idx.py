"""A small, strict reader for the IDX format used by (Fashion-)MNIST, plain or gzip-compressed.

Layout: 2 zero bytes, a dtype code, the number of dimensions ``n``, ``n`` big-endian uint32 sizes,
then the big-endian payload, whose length must match the sizes exactly.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from snnconv.data.errors import DatasetFormatError

__all__ = ["IDX_DTYPES", "MAX_IDX_BYTES", "parse_idx", "read_idx"]

#: the most an IDX file may hold (Fashion-MNIST's largest file: 47 MB); a header declaring more is refused
MAX_IDX_BYTES = 2**31

#: IDX dtype code -> (name, big-endian numpy dtype)
IDX_DTYPES: dict[int, tuple[str, str]] = {
    0x08: ("uint8", ">u1"),
    0x09: ("int8", ">i1"),
    0x0B: ("int16", ">i2"),
    0x0C: ("int32", ">i4"),
    0x0D: ("float32", ">f4"),
    0x0E: ("float64", ">f8"),
}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian numpy array; raise :class:`DatasetFormatError` naming ``name``."""
    if len(raw) < 4:
        raise DatasetFormatError(f"{name}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte header")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise DatasetFormatError(f"{name}: bad IDX magic number 0x{raw[:4].hex()} (the first two bytes must be zero)")
    if code not in IDX_DTYPES:
        raise DatasetFormatError(
            f"{name}: unknown IDX dtype code 0x{code:02x} (expected one of "
            + ", ".join(f"0x{c:02x}={n}" for c, (n, _) in IDX_DTYPES.items())
            + ")"
        )
    if ndim == 0:
        raise DatasetFormatError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(
            f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(raw)}"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[code][1])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise DatasetFormatError(
            f"{name}: IDX file {kind}: shape {tuple(shape)} of {IDX_DTYPES[code][0]} needs {expected} "
            f"data bytes after the {header}-byte header, found {got}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def declared_size(head: bytes) -> int | None:
    """Header + payload bytes an IDX file declares in its first ``4 + 4·ndim`` bytes (None: header not complete
    or not IDX; ``parse_idx`` says why)."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_DTYPES or head[3] == 0:
        return None
    header = 4 + 4 * head[3]
    if len(head) < header:
        return None
    shape = struct.unpack(f">{head[3]}I", head[4:header])
    return header + int(np.prod(shape, dtype=object)) * np.dtype(IDX_DTYPES[head[2]][1]).itemsize


def _inflate(path: Path, raw: bytes) -> bytes:
    """Decompress a gzip IDX file, never past the size its header declares (+1 byte to tell trailing data): a
    gzip bomb stops there instead of inflating to gigabytes (issue 20)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            head = f.read(4)
            if len(head) == 4 and head[3]:
                head += f.read(4 * head[3])
            size = declared_size(head)
            if size is None:
                return head + f.read(64)  # enough for parse_idx to say what is wrong
            if size > MAX_IDX_BYTES:
                raise DatasetFormatError(f"{path}: its IDX header declares {size} bytes, more than the "
                                         f"{MAX_IDX_BYTES} an IDX dataset file may hold here")  # fmt: skip
            data = head + f.read(size - len(head) + 1)
            if len(data) > size:
                raise DatasetFormatError(f"{path}: IDX file has trailing bytes: the gzip stream holds more than the "
                                         f"{size} bytes its header declares (decompression stopped there)")  # fmt: skip
            return data
    except (EOFError, OSError, zlib.error) as e:
        raise DatasetFormatError(f"{path}: corrupt or truncated gzip stream: {e}") from e


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetFormatError(f"{path}: cannot read IDX file: {e}") from e
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file name says
        return _inflate(path, raw)
    return raw


@lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int) -> torch.Tensor:
    arr = parse_idx(_read_bytes(Path(path)), name=path)
    return torch.from_numpy(arr)


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (``.gz`` or not) into a tensor with the file's shape and dtype.

    Results are cached per (path, mtime, size); treat the returned tensor as read-only.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DatasetFormatError(f"{p}: cannot read IDX file: {e}") from e
    return _read_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)
