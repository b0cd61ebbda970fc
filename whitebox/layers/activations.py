"""Softmax and ReLU, the two non-linearities of CRATE, and GELU, the standard transformer's."""

from __future__ import annotations

import math
from typing import NamedTuple

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


GELU_C = math.sqrt(2.0 / math.pi)  # √(2/π)
GELU_A = 0.044715


class GeluCache(NamedTuple):
    x: object  # (...): the input
    t: object  # (...): tanh(u), u = √(2/π)(x + 0.044715 x³)


def gelu_forward(x):
    """GELU in the tanh approximation of GPT-2 and BERT (Hendrycks & Gimpel 2016, §2)::

        gelu(x) ≈ ½ x (1 + tanh u),   u = √(2/π) (x + 0.044715 x³)

    The exact ``x Φ(x) = ½ x (1 + erf(x/√2))`` needs ``erf``, which the array namespaces do not
    have (CuPy's is in ``cupyx``); the two differ by less than 5e-4 everywhere. Returns
    ``(out, GeluCache)``.
    """
    xp = array_module(x)
    u = x * x  # (...)
    u *= GELU_A
    u += 1.0
    u *= x
    u *= GELU_C  # u = √(2/π)(x + a x³)
    t = xp.tanh(u, out=u)  # (...), in place of u
    out = t + 1.0
    out *= x
    out *= 0.5
    return out, GeluCache(x, t)


def gelu_backward(dout, cache: GeluCache):
    """``dx = dout ⊙ [½ (1 + t) + ½ x (1 − t²) √(2/π) (1 + 3·0.044715 x²)]`` with ``t = tanh u``."""
    x, t = cache
    # forward: out = ½ x (1 + t), t = tanh(u(x)); so d out/dx = ½ (1 + t) + ½ x (1 − t²) u'(x)
    du = x * x  # (...)
    du *= 3.0 * GELU_A
    du += 1.0
    du *= GELU_C  # u'(x) = √(2/π)(1 + 3a x²)
    du *= 1.0 - t * t
    du *= x
    du += 1.0 + t
    du *= 0.5
    du *= dout
    return du
