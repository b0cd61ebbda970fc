"""CRATE-alpha's sparse-coding block: overcomplete dictionary learning (ODL, CRATE-alpha eqs. 7-12).

Math (tokens as columns, ``Z ∈ R^{d×N}``). The codes of ``Z`` against an overcomplete dictionary
``D ∈ R^{d×m}``, ``m = C d``, approximately solve the non-negative LASSO (eq. 7)

    A* ≈ argmin_{A ≥ 0} ½‖Z − D A‖² + λ‖A‖₁,

by ``T`` proximal-gradient steps (eqs. 8-9; the paper takes ``T = 2`` from ``A₀ = 0``)

    A_{t+1} = Prox_{η,λ}[A_t; D, Z] = ReLU(A_t − η Dᵀ(D A_t − Z) − η λ),

whose first step from ``A₀ = 0`` is ``A₁ = ReLU(η DᵀZ − η λ)`` (computed without the zero matmul).
The block returns ``D̂ A_T`` (eq. 10 with ``D̂ = D``, eq. 11 with a decoupled ``D̂ ∈ R^{d×m}``); the
residual connection of eq. 12 belongs to the model. Passing ``D_hat=None`` returns the codes
``A_T`` themselves: with ``m = d``, ``T = 1`` and ``A₀ = Z`` that is CRATE's ISTA block
(:mod:`whitebox.layers.ista`, CRATE-alpha eq. 6), bit for bit.

Code layout (tokens as rows ``x`` (..., d), codes ``a`` (..., m)), with the official weights
``fn.D`` and ``fn.D1`` both of shape (d, m): ``D A ↔ a Dᵀ`` and ``Dᵀ Z ↔ x D``. Each step is
written with the coding residual ``r_t = Z − D A_t``:

    r_t     = x − a_t Dᵀ                  (..., d)   [r_0 = x when A₀ = 0: no matmul]
    a_{t+1} = relu(a_t + η r_t D − η λ)   (..., m)

so a forward from ``A₀ = 0`` costs ``2T`` matmuls (one for the first step, two for each further
step, one for the decoder) and its backward ``4T``.

Descent: for ``η ≤ 1/‖D‖₂²`` no step increases the LASSO objective (the standard ISTA bound);
``tests/test_odl.py`` checks it on random data.
"""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple

from .activations import relu_backward, relu_forward
from .linear import matmul_rows, rows_t_matmul

DEFAULT_STEPS = 2  # T
DEFAULT_STEP = 0.1  # η
DEFAULT_LAMBD = 0.1  # λ


class ODLCache(NamedTuple):
    D: object  # (d, m): the dictionary, for the steps' input gradients
    D_hat: object  # (d, m): the decoder, or None when the block returns the codes
    codes: tuple  # (A_0, A_1, …, A_T), each (..., m); A_0 is None for A₀ = 0. A_{t+1} > 0 is the ReLU support
    residuals: tuple  # (r_0, …, r_{T−1}), each (..., d): r_t = Z − D A_t, for dD
    step: float  # η


def odl_forward(x, D, D_hat, *, steps: int = DEFAULT_STEPS, step: float = DEFAULT_STEP,
                lambd: float = DEFAULT_LAMBD, start=None):
    """``ODL(Z | D, D̂) = D̂ A_T`` with ``A_T`` from ``steps`` proximal steps (CRATE-alpha eqs. 8-11).

    Parameters
    ----------
    x : array (..., d)
        The tokens ``Z`` as rows.
    D : array (d, m)
        The dictionary (official ``fn.D``).
    D_hat : array (d, m) or None
        The decoder (``fn.D1``; pass ``D`` itself for the tied decoder ``D̂ = D`` of eq. 10), or
        None to return the codes ``A_T`` (..., m) instead of decoding them.
    steps : int
        ``T ≥ 1``.
    step, lambd : float
        ``η`` and ``λ``.
    start : array (..., m) or None
        ``A₀``; None for ``A₀ = 0`` (the paper). CRATE's ISTA is ``start=x`` with ``m = d``.

    Returns ``(out, cache)`` with ``out`` (..., d), or (..., m) when ``D_hat`` is None.
    """
    _check(x, D, D_hat, steps, start)
    a = start
    codes, residuals = [a], []
    for _ in range(steps):
        if a is None:
            r = x  # (..., d): Z − D·0
        else:
            r = x - matmul_rows(a, D.T)  # (..., d): Z − D A_t
        pre = matmul_rows(r, D)  # (..., m): Dᵀ (Z − D A_t)
        pre *= step
        if a is not None:
            pre += a
        pre -= step * lambd
        a = relu_forward(pre)  # (..., m): A_{t+1}
        codes.append(a)
        residuals.append(r)
    out = a if D_hat is None else matmul_rows(a, D_hat.T)  # (..., d): D̂ A_T
    return out, ODLCache(D, D_hat, tuple(codes), tuple(residuals), float(step))


def odl_backward(dout, cache: ODLCache):
    """Returns ``(dx, dD, dD_hat, dstart)``.

    ``dD`` is the gradient through the encoding steps only and ``dD_hat`` through the decoder
    (None without one): for the tied decoder ``D̂ = D`` the gradient of ``D`` is their sum.
    ``dstart`` is the gradient of ``A₀`` (None for ``A₀ = 0``).

    Per step, backwards, with ``g = dA_{t+1} ⊙ [A_{t+1} > 0]`` and ``dr = η g Dᵀ``:
    ``dA_t = g − dr D``, ``dx += dr``, ``dD += η r_tᵀ g − drᵀ A_t`` (sums over all tokens).
    """
    D, D_hat, codes, residuals, step = cache
    d, m = D.shape
    # forward: out = a_T D̂ᵀ
    if D_hat is None:
        da, dD_hat = dout, None
    else:
        da = matmul_rows(dout, D_hat)  # (..., m)
        dD_hat = rows_t_matmul(dout, codes[-1])  # (d, m)
    dx, dD = None, None
    for t in reversed(range(len(residuals))):
        a, r = codes[t], residuals[t]
        g = relu_backward(da, codes[t + 1])  # (..., m)
        # forward: a_{t+1} = relu(a_t + η r_t D − η λ)
        dr = matmul_rows(g, D.T)  # (..., d)
        dr *= step
        dD_step = rows_t_matmul(r, g)  # (d, m)
        dD_step *= step
        # forward: r_t = x − a_t Dᵀ
        if a is None:
            da = None
        else:
            da = g - matmul_rows(dr, D)  # (..., m)
            dD_step -= rows_t_matmul(dr, a)
        if dx is None:
            dx, dD = dr, dD_step
        else:
            dx += dr
            dD += dD_step
    return dx, dD, dD_hat, da


def _check(x, D, D_hat, steps, start) -> None:
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if D.ndim != 2 or D.shape[0] != x.shape[-1]:
        raise ValueError(f"D must have shape (d, m) with d = {x.shape[-1]} (the tokens' width), got {tuple(D.shape)}")
    if D_hat is not None and D_hat.shape != D.shape:
        raise ValueError(f"D_hat must have the shape of D {tuple(D.shape)}, got {tuple(D_hat.shape)}")
    if start is not None and start.shape != x.shape[:-1] + D.shape[1:]:
        raise ValueError(f"start must have shape {x.shape[:-1] + D.shape[1:]} (the codes'), got {tuple(start.shape)}")
