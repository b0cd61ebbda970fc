"""CRATE's sparse-coding block: one ISTA step of the non-negative LASSO (CRATE JMLR eq. 6).

Math (tokens as columns): one proximal-gradient step on ``min_{A ≥ 0} ½‖Z − D A‖² + λ‖A‖₁``
started at ``A = Z``:

    ISTA(Z | D) = ReLU(Z + η Dᵀ(Z − D Z) − η λ),   D ∈ R^{d×d}.

Code layout (tokens as rows ``x``): ``D z ↔ x Dᵀ`` and ``Dᵀ z ↔ x D``, so with the published weight
``D`` (d, d) the step is ``relu(x + η (x − x Dᵀ) D − η λ)``: two matmuls. (The published code
writes ``x + η (x D − (x Dᵀ) D)``, the same function with three.)
"""

from __future__ import annotations

from typing import NamedTuple

from .activations import relu_backward, relu_forward

DEFAULT_STEP = 0.1  # η
DEFAULT_LAMBD = 0.1  # λ


class ISTACache(NamedTuple):
    x: object  # (..., d): input tokens
    residual: object  # (..., d): r = x − x Dᵀ, the coding residual Z − D Z
    D: object  # (d, d): dictionary
    out: object  # (..., d): the ReLU output (its support is the derivative)
    step: float  # η


def ista_forward(x, D, step: float = DEFAULT_STEP, lambd: float = DEFAULT_LAMBD):
    """``relu(x + η (x − x Dᵀ) D − η λ)``: x (..., d), D (d, d) → (..., d)."""
    residual = x - x @ D.T  # (..., d): Z − D Z
    pre = residual @ D  # (..., d): Dᵀ (Z − D Z)
    pre *= step
    pre += x
    pre -= step * lambd
    out = relu_forward(pre)
    return out, ISTACache(x, residual, D, out, float(step))


def ista_backward(dout, cache: ISTACache):
    """Returns ``(dx, dD)``.

    With ``g = dout ⊙ [out > 0]`` and ``dr = η g Dᵀ`` (the gradient reaching the residual):
    ``dx = g + dr − dr D`` and ``dD = η rᵀ g − drᵀ x`` (sums over all tokens).
    """
    x, residual, D, out, step = cache
    d = D.shape[0]
    g = relu_backward(dout, out)  # (..., d)
    # forward: pre = x + η r D
    dr = g @ D.T  # (..., d)
    dr *= step
    dD = step * (residual.reshape(-1, d).T @ g.reshape(-1, d))  # (d, d)
    # forward: r = x − x Dᵀ
    dx = g + dr
    dx -= dr @ D
    dD -= dr.reshape(-1, d).T @ x.reshape(-1, d)
    return dx, dD
