"""Three ways to compress tokens against subspaces, to compare on the same ``Z`` and ``U``.

All in code layout: ``Z`` is (..., N, d) with tokens as rows, ``U`` is (K, d, p), ``P_k = Z U_k``
(N, p), ``β = p / (N ε²)`` with ``eps`` = ε (not ε²).

1. The exact gradient step on the compression term (CRATE JMLR eq. 10):
   ``Z⁺ = Z − κ ∇_Z Rc(Z | U)``, ``∇_Z Rc = Σ_k β (I_N + β P_k P_kᵀ)⁻¹ P_k U_kᵀ``.
2. Its first-order Neumann approximation ``(I + βM)⁻¹ ≈ I − βM`` (JMLR eq. 12):
   ``Z⁺ ≈ Z − κβ Σ_k P_k U_kᵀ + κβ² Σ_k (P_k P_kᵀ) P_k U_kᵀ``.
   The neglected terms are O(β²) relative to the step, so the error shrinks like β².
3. The paper's tied MSSA update (JMLR eqs. 13-14): the middle term becomes ``κβ Z`` when the
   subspaces span the space (``Σ_k U_k U_kᵀ ≈ I``) and the similarity ``β P_k P_kᵀ`` becomes a
   softmax: ``Z⁺ = (1 − κβ) Z + κβ Σ_k softmax(s P_k P_kᵀ) P_k U_kᵀ``.

The published CRATE replaces ``U_kᵀ`` on the way out by a learned projection; that form is
:func:`whitebox.layers.mssa.mssa_forward` with ``W_out``.
"""

from __future__ import annotations

from .layers.mssa import attention_heads_forward
from .rate import compression_rate_grad


def stack_subspaces(U):
    """``W_qkv = [U_1 … U_K]ᵀ`` (K p, d) from bases ``U`` (K, d, p): the inverse of ``layers.mssa.subspaces``."""
    K, d, p = U.shape
    return U.transpose(0, 2, 1).reshape(K * p, d)


def step_size_beta(Z, U, eps: float) -> float:
    """``β = p / (N ε²)``."""
    return U.shape[-1] / (Z.shape[-2] * eps**2)


def gradient_step(Z, U, kappa: float, eps: float):
    """``Z − κ ∇_Z Rc(Z | U)``: the exact step (Z (..., N, d), U (K, d, p))."""
    grad_Z, _ = compression_rate_grad(Z, U, eps)
    return Z - kappa * grad_Z


def neumann_step(Z, U, kappa: float, eps: float):
    """``Z − κβ Σ_k P_k U_kᵀ + κβ² Σ_k (P_k P_kᵀ) P_k U_kᵀ``: the first-order Neumann step."""
    beta = step_size_beta(Z, U, eps)
    P = Z[..., None, :, :] @ U  # (..., K, N, p)
    inner = P - beta * ((P @ P.swapaxes(-1, -2)) @ P)  # (..., K, N, p): (I − β P Pᵀ) P
    return Z - kappa * beta * (inner @ U.swapaxes(-1, -2)).sum(axis=-3)


def tied_mssa_step(Z, U, kappa: float, eps: float, scale: float = 1.0):
    """``(1 − κβ) Z + κβ Σ_k softmax(s P_k P_kᵀ) P_k U_kᵀ`` (JMLR eq. 14), for Z (B, N, d).

    ``scale`` is the softmax temperature ``s``: 1 in the paper's equation, ``p^(-1/2)`` in the
    published code.
    """
    c = kappa * step_size_beta(Z, U, eps)
    W_qkv = stack_subspaces(U)
    O, _ = attention_heads_forward(Z, W_qkv, U.shape[0], scale)  # (B, N, K p)
    return (1 - c) * Z + c * (O @ W_qkv)
