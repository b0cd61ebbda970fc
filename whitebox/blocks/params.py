"""Parameters described once: a shape and an initialiser per name, from which ``init`` and the
parameter count follow.

An initialiser is a function ``(rng, shape) -> host array``. Parameters are drawn in the order of
their description from one NumPy generator, so that the same seed gives the same numbers on every
backend; an initialiser that draws nothing (ones, zeros) leaves the generator untouched.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..backend import TRAIN_DTYPE, get_xp
from ..init import cast_params


class Param(NamedTuple):
    shape: tuple
    init: Callable  # (rng, shape) -> np.ndarray


def ones(rng, shape):
    """LayerNorm weights: ones (no draw)."""
    return np.ones(shape)


def zeros(rng, shape):
    """Biases of MAE's initialisation and LayerNorm biases: zeros (no draw)."""
    return np.zeros(shape)


def uniform(bound: float) -> Callable:
    """``U(−bound, bound)``."""
    return lambda rng, shape: rng.uniform(-bound, bound, size=shape)


def normal(std: float = 1.0) -> Callable:
    """``N(0, std²)``."""
    return lambda rng, shape: std * rng.standard_normal(shape)


def linear_default(fan_in: int) -> Callable:
    """``nn.Linear``'s (and ``nn.Conv2d``'s) default for weight and bias: ``U(±1/√fan_in)``."""
    return uniform(1.0 / np.sqrt(fan_in))


def kaiming_uniform(fan_in: int) -> Callable:
    """``nn.init.kaiming_uniform_`` with its defaults (a = 0, ReLU gain √2): ``U(±√(6/fan_in))``."""
    return uniform(np.sqrt(6.0 / fan_in))


def xavier_uniform(fan_in: int, fan_out: int) -> Callable:
    """``nn.init.xavier_uniform_``: ``U(±√(6/(fan_in + fan_out)))``."""
    return uniform(np.sqrt(6.0 / (fan_in + fan_out)))


def layernorm(dim: int, prefix: str) -> dict:
    """``{prefix}weight`` ones and ``{prefix}bias`` zeros, both (dim,): ``nn.LayerNorm``'s default."""
    return {prefix + "weight": Param((dim,), ones), prefix + "bias": Param((dim,), zeros)}


def prefixed(prefix: str, items: dict) -> dict:
    """The same entries under ``prefix + name``."""
    return {prefix + name: value for name, value in items.items()}


def local(params: dict, prefix: str, names) -> dict:
    """``{name: params[prefix + name]}`` for the given local names."""
    return {name: params[prefix + name] for name in names}


def shapes_of(described: dict) -> dict:
    """name -> shape."""
    return {name: tuple(p.shape) for name, p in described.items()}


def count(described: dict) -> int:
    """The number of scalar parameters."""
    return int(sum(np.prod(p.shape) for p in described.values()))


def draw(described: dict, seed: int, *, dtype, device: str | None = None) -> dict:
    """Every parameter drawn on the host from ``numpy.random.default_rng(seed)`` in order, then moved."""
    rng = np.random.default_rng(seed)
    host = {name: p.init(rng, p.shape) for name, p in described.items()}
    return cast_params(host, dtype, get_xp(device))  # a non-float dtype is refused, naming ``dtype``


def model_parameters(describe: Callable):
    """A model's ``shapes``, ``num_params`` and ``init``, all three derived from ``describe(cfg)``
    (name -> Param, in the order the parameters are drawn)."""

    def shapes(cfg) -> dict:
        """Every parameter's shape, computed from the config without allocating."""
        return shapes_of(describe(cfg))

    def num_params(cfg) -> int:
        """The number of scalar parameters."""
        return count(describe(cfg))

    def init(cfg, seed: int = 0, *, dtype=TRAIN_DTYPE, device: str | None = None) -> dict:
        """Parameters drawn on the host from ``seed`` in the order and with the initialisers of the
        model's description (its ``describe`` docstring), then moved to ``device`` as ``dtype``."""
        return draw(describe(cfg), seed, dtype=dtype, device=device)

    return shapes, num_params, init
