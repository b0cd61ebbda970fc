"""Parameter initialisers matching PyTorch's defaults, drawn on the host for reproducibility.

Drawing every parameter with NumPy's generator and only then moving it to the device means the
same seed gives the same parameters on the CPU and on the GPU.
"""

from __future__ import annotations

import numpy as np

from .backend import to_device
from .validate import check_float_dtype


def linear_default(rng: np.random.Generator, out_features: int, in_features: int, bias: bool = True):
    """``nn.Linear``'s default: weight and bias ``U(−1/√fan_in, 1/√fan_in)`` (kaiming-uniform, a = √5)."""
    bound = 1.0 / np.sqrt(in_features)
    weight = rng.uniform(-bound, bound, size=(out_features, in_features))
    return weight, (rng.uniform(-bound, bound, size=out_features) if bias else None)


def kaiming_uniform(rng: np.random.Generator, shape: tuple, fan_in: int):
    """``nn.init.kaiming_uniform_`` with its defaults (a = 0, ReLU gain √2): ``U(−√(6/fan_in), √(6/fan_in))``."""
    bound = np.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


def layernorm_default(dim: int):
    """``nn.LayerNorm``'s default: weight ones, bias zeros."""
    return np.ones(dim), np.zeros(dim)


def cast_params(params: dict, dtype, xp) -> dict:
    """The host-drawn ``params`` as arrays of module ``xp`` and floating ``dtype``.

    A non-float ``dtype`` (``int32``, ``"int8"``, ``bool``) raises ``TypeError`` naming
    ``dtype``: casting weights to integers would truncate them to a few values, silently.
    """
    dtype = check_float_dtype("dtype", dtype)
    return {name: to_device(np.asarray(value, dtype=dtype), xp) for name, value in params.items()}
