"""Input checks that fail early with an error naming the argument and what was expected."""

from __future__ import annotations

from .backend import array_module


def check_array(name: str, x, *, min_ndim: int = 0, ndim: int | None = None, finite: bool = True):
    """Check that ``x`` is a floating-point NumPy/CuPy array of the right rank, all finite.

    Raises ``TypeError`` for non-arrays and non-float dtypes, ``ValueError`` for a wrong rank or
    non-finite values. Returns ``x`` unchanged.
    """
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    if finite and x.size and not bool(array_module(x).isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_positive(name: str, value) -> float:
    """Check that a scalar hyper-parameter is a finite number > 0 and return it as float."""
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
