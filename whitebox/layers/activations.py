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


def softmax_backward(dp, p, *, overwrite_dp: bool = False):
    """``ds = p ⊙ (dp − Σ_j dp_j p_j)`` along the last axis: the Jacobian ``diag(p) − p pᵀ`` applied to ``dp``.

    With ``overwrite_dp=True`` the result is written into ``dp`` (saves an array of its size).
    """
    xp = array_module(dp)
    row_dot = xp.einsum("...j,...j->...", dp, p)[..., None]  # Σ_j dp_j p_j, without a temporary of dp's size
    ds = dp if overwrite_dp else dp.copy()
    ds -= row_dot
    ds *= p
    return ds


def relu_forward(x):
    """``max(x, 0)``; the output is the cache (its sign pattern is the derivative)."""
    xp = array_module(x)
    return xp.maximum(x, 0)


def relu_backward(dy, out):
    """``dx = dy ⊙ [out > 0]``."""
    return dy * (out > 0)
