"""Layer normalisation over the last axis (PyTorch ``nn.LayerNorm``, eps 1e-5, affine).

Forward: ``x̂ = (x − μ) / √(σ² + eps)``, ``y = γ ⊙ x̂ + β`` with ``μ, σ²`` the mean and (biased)
variance over the last axis.

Backward (per row, ``g = γ ⊙ dy``): ``dx = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / √(σ² + eps)``,
``dγ = Σ dy ⊙ x̂``, ``dβ = Σ dy``.
"""

from __future__ import annotations

from typing import NamedTuple

LAYERNORM_EPS = 1e-5


class LayerNormCache(NamedTuple):
    xhat: object  # (..., d): the normalised input
    rstd: object  # (..., 1): 1 / √(σ² + eps)
    weight: object  # (d,): γ


def layernorm_forward(x, weight, bias, eps: float = LAYERNORM_EPS):
    """``y = γ ⊙ (x − μ)/√(σ² + eps) + β`` over the last axis. x (..., d); weight, bias (d,)."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xhat = x - mean  # (..., d)
    var = (xhat * xhat).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = 1.0 / (var + eps) ** 0.5  # (..., 1)
    xhat *= rstd
    y = xhat * weight
    y += bias
    return y, LayerNormCache(xhat, rstd, weight)


def layernorm_backward(dy, cache: LayerNormCache):
    """Returns ``(dx, dweight, dbias)`` for ``dy`` (..., d)."""
    xhat, rstd, weight = cache
    d = xhat.shape[-1]
    dweight = (dy * xhat).reshape(-1, d).sum(axis=0)  # (d,)
    dbias = dy.reshape(-1, d).sum(axis=0)  # (d,)
    g = dy * weight  # (..., d): gradient with respect to x̂
    dx = g - g.mean(axis=-1, keepdims=True)
    dx -= xhat * (g * xhat).mean(axis=-1, keepdims=True)
    dx *= rstd
    return dx, dweight, dbias
