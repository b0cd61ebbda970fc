"""Sequence pooling for the classifier head: the cls token or the mean of all tokens."""

from __future__ import annotations

from ..backend import array_module

POOLS = ("cls", "mean")


def pool_forward(z, pool: str):
    """z (B, N, d) → (B, d): ``z[:, 0]`` for ``"cls"``, ``mean_i z[:, i]`` for ``"mean"``."""
    if pool == "cls":
        return z[:, 0]
    if pool == "mean":
        return z.mean(axis=1)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


def pool_backward(dpooled, pool: str, num_tokens: int):
    """The gradient (B, N, d) of the pooled features with respect to all tokens."""
    xp = array_module(dpooled)
    B, d = dpooled.shape
    if pool == "cls":
        dz = xp.zeros((B, num_tokens, d), dtype=dpooled.dtype)
        dz[:, 0] = dpooled
        return dz
    return xp.broadcast_to((dpooled / num_tokens)[:, None, :], (B, num_tokens, d)).copy()
