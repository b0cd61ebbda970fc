"""Input checks that fail early with an error naming the argument and what was expected."""

from __future__ import annotations

import numpy as np

from .backend import array_module, is_device_array


def check_array(name: str, x, *, min_ndim: int = 0, ndim: int | None = None, finite: bool = True):
    """Check that ``x`` is a floating-point NumPy/CuPy array of the right rank, all finite.

    Raises ``TypeError`` for non-arrays and non-float dtypes (integer, bool, complex, object,
    strings), ``ValueError`` for a wrong rank or non-finite values. Returns ``x`` unchanged.
    """
    if not hasattr(x, "dtype") or not hasattr(x, "shape") or not hasattr(x, "ndim"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(x).__name__}")
    if getattr(x.dtype, "kind", None) != "f":
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    if finite and x.size and not bool(array_module(x).isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_positive(name: str, value) -> float:
    """Check that a scalar hyper-parameter is a finite number > 0 and return it as float.

    Strings and booleans are refused (``"0.5"`` is not a number; ``True`` is not a scale).
    """
    if isinstance(value, (str, bytes, bool)):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0 and v < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_same_backend(**arrays):
    """Check that all arrays live on one backend; the error names them."""
    try:
        return array_module(*arrays.values())
    except TypeError:
        names = ", ".join(arrays)
        raise TypeError(f"{names} must all be NumPy arrays or all CuPy arrays, not a mix") from None


def check_float_dtype(name: str, dtype) -> np.dtype:
    """``dtype`` as a NumPy floating dtype (float16/32/64), or ``TypeError`` naming ``name``.

    For initialisers and converters: an integer or bool dtype would truncate weights silently.
    """
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be a floating dtype such as float32 or float64, got {dtype!r}") from None
    if resolved.kind != "f":
        raise TypeError(f"{name} must be a floating dtype such as float32 or float64, got {resolved}")
    return resolved


def check_class_labels(name: str, labels, count: int, classes: int):
    """Check that ``labels`` is an integer array of shape ``(count,)`` with values in ``[0, classes)``.

    Raises ``TypeError`` for a non-array or a non-integer dtype (float labels, even integral ones,
    are refused), ``ValueError`` for a wrong shape (a length-1 array would broadcast) or a value
    out of range (``-1`` would index the last class). Returns ``labels`` unchanged.

    The range needs the values on the host, so it is checked for host (NumPy) labels only; device
    labels are the caller's to check on the host batch before the transfer (the training tasks do),
    so that a training step never waits for the device.
    """
    if not hasattr(labels, "dtype") or not hasattr(labels, "shape"):
        raise TypeError(f"{name} must be an integer NumPy or CuPy array, got {type(labels).__name__}")
    if getattr(labels.dtype, "kind", None) not in ("i", "u"):
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if tuple(labels.shape) != (count,):
        raise ValueError(f"{name} must have shape ({count},), one label per row, got {tuple(labels.shape)}")
    if count and not is_device_array(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= classes:
            raise ValueError(f"{name} must lie in [0, {classes}), found values in [{low}, {high}]")
    return labels
