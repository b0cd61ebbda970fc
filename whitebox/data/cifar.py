"""The CIFAR-10 "python version" batch format: one pickled dict per file.

``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) unpacks to
``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5`` (10000 images each) and
``test_batch``. Each is a Python 2 pickle of a dict whose keys are byte strings::

    b"data"     uint8 array (N, 3072): per row 1024 red, 1024 green, 1024 blue values,
                each a 32 x 32 image in row-major order, so it reshapes to (N, 3, 32, 32)
    b"labels"   list of N ints in 0..9

Unpickling can run arbitrary code, so the reader only accepts plain containers and NumPy
arrays: any other global in the pickle is refused.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np

CIFAR_CHANNELS, CIFAR_SIZE = 3, 32
CIFAR_NUM_CLASSES = 10

# The globals a pickled batch may refer to: a NumPy array is rebuilt with _reconstruct
# (protocols 0-4) or _frombuffer (protocol 5), and NumPy 2 renamed numpy.core to numpy._core;
# Python 3 writes bytes in protocols 0-2 as _codecs.encode(text, "latin1"), and empty bytes (the
# buffer of an empty batch) as __builtin__.bytes().
_SAFE_GLOBALS = {
    ("_codecs", "encode"),
    ("builtins", "bytes"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays: any other callable named in the file is refused."""

    def find_class(self, module, name):
        canonical = "builtins" if module == "__builtin__" else module.replace("numpy._core", "numpy.core", 1)
        if (canonical, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: a CIFAR batch holds only arrays and lists")
        for candidate in (canonical.replace("numpy.core", "numpy._core", 1), canonical):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"this NumPy has no {module}.{name}")


def parse_cifar_batch(data: bytes, source) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) from the bytes of one batch file.

    ``source`` names the file in error messages. Raises ``ValueError`` when the bytes are not a
    pickle, hold no dict, miss ``b"data"`` or ``b"labels"``, or have the wrong shapes or values.
    """
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a cut-off or foreign pickle can fail in many ways
        raise ValueError(f"{source}: not a readable CIFAR batch pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: a CIFAR batch must be a dict, the pickle holds a {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = [f"b{k!r}" for k in ("data", "labels") if k not in batch]
    if missing:
        raise ValueError(f"{source}: CIFAR batch is missing key(s) {', '.join(missing)}; found {sorted(batch)}")
    images = _images(batch["data"], source)
    return images, _labels(batch["labels"], len(images), source)


def _images(data, source) -> np.ndarray:
    row = CIFAR_CHANNELS * CIFAR_SIZE * CIFAR_SIZE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise ValueError(f"{source}: b'data' must be a uint8 array of shape (N, {row}), got {dtype} of shape {shape}")
    return data.reshape(len(data), CIFAR_CHANNELS, CIFAR_SIZE, CIFAR_SIZE)  # N,C,H,W


def _labels(labels, n, source) -> np.ndarray:
    labels = np.asarray(labels)
    if n == 0 and labels.shape == (0,):  # an empty batch: ``[]`` reads as float64
        return labels.astype(np.int64)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{source}: b'labels' must be {n} integers (one per image), got {labels.dtype} of shape {labels.shape}"
        )
    if n and (labels.min() < 0 or labels.max() >= CIFAR_NUM_CLASSES):
        found = f"{labels.min()}..{labels.max()}"
        raise ValueError(f"{source}: labels must lie in 0..{CIFAR_NUM_CLASSES - 1}, found {found}")
    return labels.astype(np.int64)


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file; see :func:`parse_cifar_batch`."""
    return parse_cifar_batch(Path(path).read_bytes(), path)
