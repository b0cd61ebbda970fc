"""CRATE's sparse-coding block: one ISTA step of the non-negative LASSO (CRATE JMLR eq. 6).

Math (tokens as columns): one proximal-gradient step on ``min_{A ≥ 0} ½‖Z − D A‖² + λ‖A‖₁``
started at ``A = Z``:

    ISTA(Z | D) = ReLU(Z + η Dᵀ(Z − D Z) − η λ),   D ∈ R^{d×d}.

Code layout (tokens as rows ``x``): ``D z ↔ x Dᵀ`` and ``Dᵀ z ↔ x D``, so with the published weight
``D`` (d, d) the step is ``relu(x + η (x (I − D)ᵀ) D − η λ)``: two matmuls. (The published code
writes ``x + η (x D − (x Dᵀ) D)``, the same function with three.)
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module
from .activations import relu_backward
from .linear import matmul_rows, rows_t_matmul

DEFAULT_STEP = 0.1  # η
DEFAULT_LAMBD = 0.1  # λ


class ISTACache(NamedTuple):
    x: object  # (..., d): input tokens
    residual: object  # (..., d): r = x (I − D)ᵀ, the coding residual Z − D Z
    D: object  # (d, d): dictionary
    out: object  # (..., d): the ReLU output (its support is the derivative)
    step: float  # η


def ista_forward(x, D, step: float = DEFAULT_STEP, lambd: float = DEFAULT_LAMBD):
    """``relu(x + η (x − x Dᵀ) D − η λ)``: x (..., d), D (d, d) → (..., d)."""
    xp = array_module(x)
    residual = matmul_rows(x, _identity_minus(D, xp).T)  # (..., d): Z − D Z
    out = matmul_rows(residual, D)  # (..., d): Dᵀ (Z − D Z)
    out *= step
    out += x
    out -= step * lambd
    xp.maximum(out, 0, out=out)  # ReLU in place
    return out, ISTACache(x, residual, D, out, float(step))


def ista_backward(dout, cache: ISTACache):
    """Returns ``(dx, dD)``.

    With ``g = dout ⊙ [out > 0]`` and ``dr = η g Dᵀ`` (the gradient reaching the residual):
    ``dx = g + dr (I − D)`` and ``dD = η rᵀ g − drᵀ x`` (sums over all tokens).
    """
    x, residual, D, out, step = cache
    xp = array_module(x)
    g = relu_backward(dout, out)  # (..., d)
    # forward: out = relu(x + η r D − ηλ)
    dr = matmul_rows(g, step * D.T)  # (..., d)
    dD = rows_t_matmul(residual, g)  # (d, d)
    dD *= step
    # forward: r = x (I − D)ᵀ
    dx = matmul_rows(dr, _identity_minus(D, xp))
    dx += g
    dD -= rows_t_matmul(dr, x)
    return dx, dD


def _identity_minus(D, xp):
    """``I − D`` (d, d)."""
    M = -D
    M[xp.diag_indices(D.shape[0])] += 1
    return M
