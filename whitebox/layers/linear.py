"""Affine map ``y = x Wᵀ + b`` (PyTorch ``nn.Linear`` layout: ``W`` is ``(out, in)``)."""

from __future__ import annotations

from typing import NamedTuple


class LinearCache(NamedTuple):
    x: object  # (..., in): the input, for dW
    W: object  # (out, in): the weight, for dx
    has_bias: bool


def linear_forward(x, W, b=None):
    """``y = x Wᵀ + b``: x (..., in), W (out, in), b (out,) or None → y (..., out)."""
    y = x @ W.T  # (..., out)
    if b is not None:
        y += b
    return y, LinearCache(x, W, b is not None)


def linear_backward(dy, cache: LinearCache):
    """Gradients of ``y = x Wᵀ + b``: ``dx = dy W``, ``dW = dyᵀ x`` (summed over leading axes), ``db = Σ dy``.

    Returns ``(dx, dW, db)``; ``db`` is None without a bias.
    """
    x, W, has_bias = cache
    dx = dy @ W  # (..., in)
    dy2 = dy.reshape(-1, dy.shape[-1])  # (M, out)
    dW = dy2.T @ x.reshape(-1, x.shape[-1])  # (out, in)
    db = dy2.sum(axis=0) if has_bias else None
    return dx, dW, db
