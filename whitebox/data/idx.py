"""The IDX file format of MNIST and Fashion-MNIST: read it (gzipped or not) and write it.

An IDX file is a small big-endian header followed by one C-ordered array
(LeCun & Cortes, "The MNIST database", http://yann.lecun.com/exdb/mnist/)::

    bytes 0-1    0x00 0x00              magic
    byte  2      type code              0x08 uint8, 0x09 int8, 0x0B int16,
                                        0x0C int32, 0x0D float32, 0x0E float64
    byte  3      ndim
    4 * ndim     the dimensions         uint32, big-endian
    the rest     prod(dims) items       big-endian

A file that starts with the gzip magic ``1f 8b`` is decompressed first, whatever its name.
Every malformed file raises ``ValueError`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(path) -> bytes:
    """The uncompressed bytes of an IDX file: gunzipped when it starts with the gzip magic."""
    data = Path(path).read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # bad CRC, cut-off stream, corrupt deflate data
        raise ValueError(f"{path}: corrupt gzip data ({e})") from None


def parse_idx(data: bytes, source) -> np.ndarray:
    """The array held by the uncompressed IDX bytes ``data``, in native byte order.

    ``source`` names the file in error messages. Raises ``ValueError`` for a wrong magic number,
    an unknown type code, a cut-off header, or a payload whose length disagrees with the header.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    if data[:2] != b"\x00\x00":
        raise ValueError(f"{source}: not an IDX file: magic number {data[:4].hex()} does not start with 0000")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{source}: unknown IDX type code 0x{code:02X} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected, found = count * dtype.itemsize, len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "too long"
        raise ValueError(
            f"{source}: {problem}: the header says shape {dims} of {dtype.name} ({expected} bytes of data), "
            f"the file holds {found} bytes after the header"
        )
    array = np.frombuffer(data, dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a NumPy array; see :func:`parse_idx`."""
    return parse_idx(read_idx_bytes(path), path)


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"IDX has no type code for dtype {array.dtype}")
    if array.ndim > 255:
        raise ValueError(f"IDX allows at most 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, IDX_DTYPES[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
