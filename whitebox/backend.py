"""The array backend: NumPy by default, CuPy on the GPU when asked for.

This is the only module of whitebox that imports CuPy. Everything else receives arrays and
asks :func:`array_module` which namespace (``numpy`` or ``cupy``) they belong to, then calls
plain ``xp.*`` functions, so the same code runs on both.

Choosing the device
-------------------
``get_xp(device)`` takes ``"cpu"`` or ``"gpu"``; with ``device=None`` it reads the environment
variable ``WHITEBOX_DEVICE`` (default ``"cpu"``). Asking for the GPU where CuPy or a CUDA device
is missing raises :class:`DeviceUnavailableError`; whitebox never falls back silently.

Tests without a GPU
-------------------
``with use_device_module(module):`` makes ``module`` the device in place of CuPy for the block:
``get_xp("gpu")``, ``gpu_available``, ``array_module``, ``is_device_array``, ``to_host``,
``to_device``, ``default_rng`` and ``synchronize`` treat it and its ``ndarray`` as CuPy and CuPy's
arrays. The test suite passes its strict CuPy stand-in (``tests/strict_device.py``); outside such
a block, and wherever no test asks for it, CuPy is used exactly as without the hook.

Dtype policy
------------
``TRAIN_DTYPE`` (float32) for training and benchmarks, ``CHECK_DTYPE`` (float64) for gradient
checks and property tests.
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType

import numpy as np

DEVICES = ("cpu", "gpu")
DEVICE_ENV = "WHITEBOX_DEVICE"
TRAIN_DTYPE = np.float32
CHECK_DTYPE = np.float64


class DeviceUnavailableError(RuntimeError):
    """The GPU was asked for, but CuPy or a CUDA device is missing."""


_device_module: ModuleType | None = None  # set by use_device_module (tests), else CuPy is the device


@contextlib.contextmanager
def use_device_module(module: ModuleType):
    """Inside the block, ``module`` (CuPy-shaped: ``ndarray``, ``asarray``, ``random.default_rng``,
    ``cuda.runtime.getDeviceCount``, ``cuda.get_current_stream``) is the device in place of CuPy."""
    global _device_module
    if not isinstance(getattr(module, "ndarray", None), type):
        raise TypeError(f"module must be CuPy-shaped, with an ndarray type; got {module!r}")
    previous, _device_module = _device_module, module
    try:
        yield module
    finally:
        _device_module = previous


def _import_cupy() -> ModuleType | None:
    if _device_module is not None:
        return _device_module
    try:
        import cupy  # the one place whitebox imports CuPy
    except Exception:  # ImportError, or a CUDA library failing to load
        return None
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_device(device: str | None = None) -> str:
    """Return ``"cpu"`` or ``"gpu"`` from an argument, else from ``$WHITEBOX_DEVICE``."""
    from_env = device is None
    if from_env:
        device = os.environ.get(DEVICE_ENV, "cpu").strip() or "cpu"
    if not isinstance(device, str) or device.lower() not in DEVICES:
        accepted = " or ".join(repr(d) for d in DEVICES)
        if from_env:
            raise ValueError(f"${DEVICE_ENV}={device!r} is not a device: set it to {accepted}, or unset it for 'cpu'")
        raise ValueError(f"device must be one of {DEVICES} (argument or ${DEVICE_ENV}), got {device!r}")
    return device.lower()


def get_xp(device: str | None = None) -> ModuleType:
    """The array module for ``device``: ``numpy`` for ``"cpu"``, ``cupy`` for ``"gpu"``."""
    device = resolve_device(device)
    if device == "cpu":
        return np
    cupy = _import_cupy()
    if cupy is None:
        raise DeviceUnavailableError(
            "device 'gpu' was requested but CuPy is not installed: pip install 'whitebox[gpu]'"
        )
    if not gpu_available():
        raise DeviceUnavailableError("device 'gpu' was requested but CuPy sees no CUDA device")
    return cupy


def array_module(*arrays) -> ModuleType:
    """``numpy`` or ``cupy``: the module the arrays belong to (NumPy for scalars and lists).

    Raises ``TypeError`` if the arrays are split between host and device.
    """
    modules = {_module_of(a) for a in arrays if a is not None}
    if len(modules) > 1:
        raise TypeError("arrays are on different backends (some NumPy, some CuPy); move them with to_device")
    return modules.pop() if modules else np


def _module_of(a) -> ModuleType:
    return _import_cupy() if is_device_array(a) else np


def is_device_array(a) -> bool:
    """True for a CuPy array (an array of the module of :func:`use_device_module` inside its block)."""
    if _device_module is not None:
        return isinstance(a, _device_module.ndarray)
    return type(a).__module__.split(".")[0] == "cupy"


def to_host(a):
    """A NumPy copy of a NumPy or CuPy array (NumPy arrays pass through unchanged)."""
    if is_device_array(a):
        return a.get()
    return np.asarray(a)


def to_device(a, xp: ModuleType):
    """``a`` as an array of module ``xp`` (a no-op when it already is one)."""
    if xp is np:
        return to_host(a)
    return xp.asarray(a)


def tree_to_host(tree: dict) -> dict:
    """A dict of arrays moved to NumPy."""
    return {k: to_host(v) for k, v in tree.items()}


def tree_to_device(tree: dict, xp: ModuleType) -> dict:
    """A dict of arrays moved to module ``xp``."""
    return {k: to_device(v, xp) for k, v in tree.items()}


def default_rng(seed: int | None, xp: ModuleType = np):
    """A seeded random generator of ``xp`` (``numpy.random.Generator`` or CuPy's)."""
    return xp.random.default_rng(seed)


def synchronize(xp: ModuleType) -> None:
    """Wait for queued GPU work (for timing); a no-op on NumPy."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()
