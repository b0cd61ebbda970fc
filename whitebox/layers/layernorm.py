"""Layer normalisation over the last axis (PyTorch ``nn.LayerNorm``, eps 1e-5, affine).

Forward: ``x̂ = (x − μ) / √(σ² + eps)``, ``y = γ ⊙ x̂ + β`` with ``μ, σ²`` the mean and (biased)
variance over the last axis.

Backward (per row, ``g = γ ⊙ dy``): ``dx = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / √(σ² + eps)``,
``dγ = Σ dy ⊙ x̂``, ``dβ = Σ dy``.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module

LAYERNORM_EPS = 1e-5


class LayerNormCache(NamedTuple):
    xhat: object  # (..., d): the normalised input
    rstd: object  # (..., 1): 1 / √(σ² + eps)
    weight: object  # (d,): γ


def layernorm_forward(x, weight, bias, eps: float = LAYERNORM_EPS):
    """``y = γ ⊙ (x − μ)/√(σ² + eps) + β`` over the last axis. x (..., d); weight, bias (d,)."""
    xp = array_module(x)
    d = x.shape[-1]
    xhat = x - x.mean(axis=-1, keepdims=True)  # (..., d)
    var = xp.einsum("...i,...i->...", xhat, xhat)[..., None] / d  # (..., 1), without a squared copy
    rstd = 1.0 / xp.sqrt(var + eps)  # (..., 1)
    xhat *= rstd
    y = xhat * weight
    y += bias
    return y, LayerNormCache(xhat, rstd, weight)


def layernorm_backward(dy, cache: LayerNormCache):
    """Returns ``(dx, dweight, dbias)`` for ``dy`` (..., d)."""
    xhat, rstd, weight = cache
    xp = array_module(dy)
    d = xhat.shape[-1]
    dy2, xhat2 = dy.reshape(-1, d), xhat.reshape(-1, d)  # (M, d)
    dweight = xp.einsum("mi,mi->i", dy2, xhat2)  # (d,)
    dbias = dy2.sum(axis=0)  # (d,)
    g = dy * weight  # (..., d): gradient with respect to x̂
    g_dot_xhat = xp.einsum("...i,...i->...", g, xhat)[..., None] / d  # (..., 1): mean(g ⊙ x̂)
    dx = g
    dx -= g.mean(axis=-1, keepdims=True)
    dx -= xhat * g_dot_xhat
    dx *= rstd
    return dx, dweight, dbias
