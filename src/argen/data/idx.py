"""The IDX format of MNIST-style datasets (raw or gzip): a 4-byte magic, big-endian sizes, raw data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type byte -> numpy dtype (multi-byte types are big-endian).
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(ValueError):
    """An IDX file that does not follow the format; the message names the file."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (`.gz` is decompressed) into an array of the declared shape."""
    path = Path(path)
    if not path.is_file():
        raise IDXError(f"{path}: no such IDX file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise IDXError(f"{path}: cannot decompress ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IDXError(f"{path}: not an IDX file (the magic number must start with two zero bytes)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _DTYPES:
        raise IDXError(
            f"{path}: unknown IDX data type 0x{type_code:02x}; expected one of "
            + ", ".join(f"0x{c:02x}" for c in _DTYPES)
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[type_code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IDXError(
            f"{path}: size {len(raw)} bytes does not match its header {shape} of {dtype} "
            f"({expected} bytes); the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an uint8 array as IDX (gzip when the name ends in .gz); used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
