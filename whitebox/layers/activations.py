"""Softmax and ReLU, the two non-linearities of CRATE."""

from __future__ import annotations

from ..backend import array_module


def softmax_forward(scores, axis: int = -1):
    """Numerically stable ``softmax(s)_i = exp(s_i − max s) / Σ_j exp(s_j − max s)`` along ``axis``.

    Returns the probabilities, which are also the cache of :func:`softmax_backward`.
    """
    xp = array_module(scores)
    p = scores - scores.max(axis=axis, keepdims=True)
    xp.exp(p, out=p)
    p /= p.sum(axis=axis, keepdims=True)
    return p


def softmax_backward(dp, p, axis: int = -1):
    """``ds = p ⊙ (dp − Σ_j dp_j p_j)``: the softmax Jacobian ``diag(p) − p pᵀ`` applied to ``dp``."""
    ds = dp - (dp * p).sum(axis=axis, keepdims=True)
    ds *= p
    return ds


def relu_forward(x):
    """``max(x, 0)``; the output is the cache (its sign pattern is the derivative)."""
    xp = array_module(x)
    return xp.maximum(x, 0)


def relu_backward(dy, out):
    """``dx = dy ⊙ [out > 0]``."""
    return dy * (out > 0)
