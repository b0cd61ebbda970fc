"""The classifier head of CRATE and CRATE-alpha: ``logits = Linear(LN(pool(Z^L)))``.

Parameter names: ``head_norm.weight/bias`` (d,), ``head.weight`` (classes, d), ``head.bias`` (classes,).
"""

from __future__ import annotations

from typing import NamedTuple

from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache, linear_backward, linear_forward
from ..layers.pooling import PoolCache, pool_backward, pool_forward
from .params import Param, layernorm, linear_default


def shapes(dim: int, num_classes: int) -> dict:
    return {**layernorm(dim, "head_norm."),
            "head.weight": Param((num_classes, dim), linear_default(dim)),
            "head.bias": Param((num_classes,), linear_default(dim))}


class HeadCache(NamedTuple):
    pool: PoolCache
    norm: LayerNormCache
    linear: LinearCache


def forward(z, params: dict, pool: str):
    """``logits = LN(pool(Z)) Wᵀ + b``: z (B, N, d) → (B, classes)."""
    pooled, pool_cache = pool_forward(z, pool)  # (B, d)
    h, norm_cache = layernorm_forward(pooled, params["head_norm.weight"], params["head_norm.bias"])
    logits, linear_cache = linear_forward(h, params["head.weight"], params["head.bias"])
    return logits, HeadCache(pool_cache, norm_cache, linear_cache)


def backward(dlogits, cache: HeadCache):
    """Returns ``(dz, grads)``: the gradient for the tokens (B, N, d) and the head's parameters."""
    grads = {}
    dh, grads["head.weight"], grads["head.bias"] = linear_backward(dlogits, cache.linear)
    dpooled, grads["head_norm.weight"], grads["head_norm.bias"] = layernorm_backward(dh, cache.norm)
    return pool_backward(dpooled, cache.pool), grads
