"""Sequence pooling for the classifier head: the cls token or the mean of all tokens."""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module

POOLS = ("cls", "mean")


class PoolCache(NamedTuple):
    pool: str  # "cls" or "mean"
    num_tokens: int  # N


def pool_forward(z, pool: str):
    """z (B, N, d) → (B, d): ``z[:, 0]`` for ``"cls"``, ``mean_i z[:, i]`` for ``"mean"``."""
    if pool == "cls":
        pooled = z[:, 0]
    elif pool == "mean":
        pooled = z.mean(axis=1)
    else:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return pooled, PoolCache(pool, z.shape[1])


def pool_backward(dpooled, cache: PoolCache):
    """The gradient (B, N, d) of the pooled features with respect to all tokens."""
    xp = array_module(dpooled)
    B, d = dpooled.shape
    N = cache.num_tokens
    if cache.pool == "cls":
        dz = xp.zeros((B, N, d), dtype=dpooled.dtype)
        dz[:, 0] = dpooled
        return dz
    return xp.broadcast_to((dpooled / N)[:, None, :], (B, N, d)).copy()
