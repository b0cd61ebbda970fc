"""ℓ2-normalisation of the last axis, ``y = x / max(‖x‖, eps)`` (PyTorch ``F.normalize``), and its backward.

DINO's head puts the bottleneck on the unit sphere before the prototypes, and its weight-normalised
last layer is the same map applied to the rows of a weight (:mod:`whitebox.layers.weightnorm`);
SimDINO compares unit vectors. With ``r = ‖x‖ > eps`` the Jacobian is ``(I − y yᵀ) / r``, the
projection onto the tangent space of the sphere at ``y`` divided by the radius::

    dx = (dy − y ⟨y, dy⟩) / r

Below ``eps`` (a zero vector) the map is ``x / eps``, linear, and ``dx = dy / eps``.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module

EPS = 1e-12  # F.normalize's default


class L2NormCache(NamedTuple):
    y: object  # (..., d): the unit vectors (or x / eps where ‖x‖ ≤ eps)
    radius: object  # (..., 1): max(‖x‖, eps)
    clamped: object  # (..., 1) bool: ‖x‖ ≤ eps, where the map is linear


def l2_normalize_forward(x, eps: float = EPS):
    """x (..., d) → ``x / max(‖x‖₂, eps)`` along the last axis, and the cache."""
    xp = array_module(x)
    norm = xp.sqrt(xp.einsum("...i,...i->...", x, x))[..., None]  # (..., 1), without a squared copy
    radius = xp.maximum(norm, eps)  # (..., 1)
    y = x / radius  # (..., d)
    return y, L2NormCache(y, radius, norm <= eps)


def l2_normalize_backward(dy, cache: L2NormCache):
    """``dx = (dy − y ⟨y, dy⟩) / r`` (module doc); ``dy / eps`` where the norm was clamped."""
    xp = array_module(dy)
    y, radius, clamped = cache
    # forward: y = x / r(x), r = ‖x‖; so dx = dy / r − y ⟨y, dy⟩ / r
    along = xp.einsum("...i,...i->...", y, dy)[..., None]  # (..., 1), ⟨y, dy⟩
    return (dy - xp.where(clamped, 0.0, along) * y) / radius
