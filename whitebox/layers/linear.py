"""Affine map ``y = x Wᵀ + b`` (PyTorch ``nn.Linear`` layout: ``W`` is ``(out, in)``).

Leading axes are flattened before multiplying, so that ``(B, N, in) @ (in, out)`` is one matrix
product instead of ``B`` small ones (NumPy's batched ``matmul`` calls BLAS once per slice).
"""

from __future__ import annotations

from typing import NamedTuple


class LinearCache(NamedTuple):
    x: object  # (..., in): the input, for dW
    W: object  # (out, in): the weight, for dx
    has_bias: bool


def matmul_rows(x, M):
    """``x @ M`` for x (..., k) and a matrix M (k, m), as one 2-D product: → (..., m)."""
    return (x.reshape(-1, x.shape[-1]) @ M).reshape(*x.shape[:-1], M.shape[-1])


def rows_t_matmul(a, b):
    """``Σ_rows aᵀ b`` over all leading axes: a (..., k), b (..., m) → (k, m)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def linear_forward(x, W, b=None):
    """``y = x Wᵀ + b``: x (..., in), W (out, in), b (out,) or None → y (..., out)."""
    y = matmul_rows(x, W.T)  # (..., out)
    if b is not None:
        y += b
    return y, LinearCache(x, W, b is not None)


def linear_backward(dy, cache: LinearCache):
    """Gradients of ``y = x Wᵀ + b``: ``dx = dy W``, ``dW = dyᵀ x`` (summed over leading axes), ``db = Σ dy``.

    Returns ``(dx, dW, db)``; ``db`` is None without a bias.
    """
    x, W, has_bias = cache
    dx = matmul_rows(dy, W)  # (..., in)
    dW = rows_t_matmul(dy, x)  # (out, in)
    db = dy.reshape(-1, dy.shape[-1]).sum(axis=0) if has_bias else None
    return dx, dW, db
