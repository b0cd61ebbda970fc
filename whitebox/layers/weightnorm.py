"""The weight-normalised linear map of DINO's last layer: ``y = x Wᵀ`` with ``W_k = V_k / ‖V_k‖``.

DINO (Caron et al. 2021, §3.1 and Appendix) ends its projection head with
``weight_norm(Linear(bottleneck, K, bias=False))`` and fixes the gain ``g`` to 1
(``norm_last_layer=True``), so every prototype ``W_k`` is a unit vector and the logits
``⟨x, W_k⟩`` of a unit ``x`` are cosines. ``W`` is :func:`whitebox.layers.l2norm.l2_normalize_forward`
of the rows of ``V`` (PyTorch's ``weight_norm(..., dim=0)``), so the backward is the linear map's
followed by that of the row normalisation::

    dx = dy W,   dW = dyᵀ x,   dV_k = (dW_k − W_k ⟨W_k, dW_k⟩) / ‖V_k‖
"""

from __future__ import annotations

from typing import NamedTuple

from .l2norm import L2NormCache, l2_normalize_backward, l2_normalize_forward
from .linear import LinearCache, linear_backward, linear_forward


class WeightNormCache(NamedTuple):
    rows: L2NormCache  # the normalisation of V's rows, (K, in)
    linear: LinearCache  # x (..., in) and W (K, in)


def weightnorm_linear_forward(x, V):
    """x (..., in), V (K, in) → ``x (V / ‖V‖_rows)ᵀ`` (..., K), and the cache."""
    W, rows = l2_normalize_forward(V)  # (K, in), unit rows
    y, linear = linear_forward(x, W)  # (..., K)
    return y, WeightNormCache(rows, linear)


def weightnorm_linear_backward(dy, cache: WeightNormCache):
    """Returns ``(dx, dV)`` for dy (..., K)."""
    dx, dW, _ = linear_backward(dy, cache.linear)  # (..., in), (K, in)
    return dx, l2_normalize_backward(dW, cache.rows)
