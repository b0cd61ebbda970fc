"""Coding rates and the sparse rate reduction objective, with their gradients.

The objective that every CRATE layer descends (CRATE JMLR eq. 2, CRATE-alpha eqs. 1-2), in the
papers' math layout (tokens are the columns of ``Z ∈ R^{d×N}``):

.. math::

    R(Z) = ½ logdet(I_d + α Z Zᵀ),                          α = d / (N ε²)
    Rc(Z | U_[K]) = Σ_k ½ logdet(I_p + β (U_kᵀZ)(U_kᵀZ)ᵀ),   β = p / (N ε²)
    L_srr(Z) = Rc(Z | U_[K]) − R(Z) + λ ‖Z‖₁

Code layout: ``Z`` is ``(..., N, d)``, tokens are ROWS, batch dimensions lead, so
``Z_code = Z_mathᵀ``; the bases ``U`` are ``(K, d, p)`` and the projected tokens of head ``k``
are ``P_k = Z @ U_k``, ``(..., N, p)``, the transpose of ``U_kᵀ Z_math``.

``eps`` is ε itself, not ε². Some published MCR² and ReduNet code passes ε² under the name
``eps``; with that convention ``eps=0.5`` here would be ``eps=0.25`` there.

How it is computed: each rate is ``½ logdet(I + c XᵀX)`` of some token matrix ``X`` (``Z`` or
``P_k``). Sylvester's identity ``logdet(I_m + c XᵀX) = logdet(I_n + c X Xᵀ)`` lets us work with
the smaller Gram matrix, and ``I + PSD`` always has a Cholesky factor. Gradients use the
push-through identity ``X (I_m + c XᵀX)⁻¹ = (I_n + c X Xᵀ)⁻¹ X`` on the smaller side, with linear
solves instead of inverses.

Scale: ``X`` is first written as ``2^k Y`` with ``max |Y|`` in ``[½, 1)`` (exact: a power of two
does not round), and the factor ``c = (m / N)(2^k / ε)²`` of ``YᵀY`` is carried as ``log c``, so no
Gram of a huge ``Z`` and no ``1/ε²`` for a tiny ε overflows. While ``c ε_mach tr(YᵀY) ≤ 0.1`` the
rate is the Cholesky form above; beyond, where the Gram's rounding times ``c`` outweighs ``I`` and
Cholesky fails for a rank-deficient ``Z``, it is ``½ Σ_i logaddexp(0, log c + log λ_i)`` over the
eigenvalues ``λ_i`` of the Gram, those below ``ε_mach λ_max`` (rounding noise) counted as 0.

Accuracy: this is finite for every finite ``Z`` and every ε > 0, and accurate to a few ulps for
huge ε (see :func:`half_logdet_identity_plus`) and for tiny ε with a well-conditioned ``Z``.
Forming a Gram matrix rounds away singular values of ``Z`` below about ``1e-8 ‖Z‖`` (float64), so
when ``Z`` is nearly rank-deficient AND ε is tiny (``α σ² ≈ 1`` for such a singular value σ), the
rate is accurate only to about ``1e-16 · α ‖Z‖₂²`` in absolute terms (and the gradient drops the
directions of such σ). ``½ Σ_i log1p(α σ_i²)`` from the SVD of ``Z`` avoids this at several times
the cost.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .backend import array_module
from .validate import check_array, check_positive, check_same_backend



def half_logdet_identity_plus(gram, scale: float):
    """``½ logdet(I + scale · gram)`` for a positive semi-definite ``gram``, via Cholesky.

    .. math::

        I + M = L Lᵀ,   ½ logdet(I + M) = Σ_i log L_ii = ½ Σ_i log1p(L_ii² − 1),
        L_ii² − 1 = M_ii − Σ_{j<i} L_ij²

    The last line is the Cholesky recursion itself. It reads ``L_ii² − 1`` off ``M`` and ``L``
    without rounding ``1 + tiny`` to 1, so the result keeps full relative accuracy when
    ``scale · gram`` is tiny (huge ε), where ``2 Σ log L_ii`` has a relative error of about
    ``1e-16 / ‖scale · gram‖``. Elsewhere it carries the factorisation's own rounding.

    Parameters
    ----------
    gram : array, shape (..., n, n)
        Symmetric positive semi-definite matrices, e.g. ``XᵀX``.
    scale : float
        The non-negative factor ``c``.

    Returns
    -------
    array, shape (...)
    """
    xp = array_module(gram)
    n = gram.shape[-1]
    m = scale * gram                                                  # (..., n, n)
    chol = xp.linalg.cholesky(xp.eye(n, dtype=gram.dtype) + m)        # (..., n, n), I + M = L Lᵀ
    below = chol * xp.tri(n, k=-1, dtype=gram.dtype)                  # (..., n, n), L_ij for j < i
    excess = xp.diagonal(m, axis1=-2, axis2=-1) - (below**2).sum(axis=-1)  # (..., n), L_ii² − 1
    return 0.5 * xp.log1p(excess).sum(axis=-1)


def coding_rate(Z, eps: float):
    """Coding rate ``R(Z) = ½ logdet(I_d + α Z Zᵀ)``, ``α = d / (N ε²)`` (JMLR eq. 2, alpha eq. 2).

    In code layout this is ``½ logdet(I_d + α ZᵀZ) = ½ logdet(I_N + α Z Zᵀ)``; the smaller side
    is used.

    Parameters
    ----------
    Z : float array, shape (..., N, d)
        Tokens as rows; leading dimensions are a batch.
    eps : float
        The distortion ε > 0 (not ε²).

    Returns
    -------
    array, shape (...)
        One rate per batch element (a scalar for ``Z`` of shape ``(N, d)``).
    """
    eps = _check_rate_inputs(Z, eps)
    return _half_logdet(Z, math.log(eps))


def coding_rate_grad(Z, eps: float):
    """Gradient of :func:`coding_rate` with respect to ``Z``.

    .. math::

        ∇_Z R = α (I_d + α Z Zᵀ)⁻¹ Z = α Z (I_N + α ZᵀZ)⁻¹      (math layout)
        ∇_Z R = α Z (I_d + α ZᵀZ)⁻¹ = α (I_N + α Z Zᵀ)⁻¹ Z      (code layout)

    Parameters
    ----------
    Z : float array, shape (..., N, d)
    eps : float
        ε > 0 (not ε²).

    Returns
    -------
    array, shape (..., N, d)
        The gradient of each batch element's rate with respect to its own tokens.
    """
    eps = _check_rate_inputs(Z, eps)
    return _half_logdet_grad(Z, math.log(eps))


def compression_rate(Z, U, eps: float):
    """Compression term ``Rc(Z | U_[K]) = Σ_k ½ logdet(I_p + β (U_kᵀZ)(U_kᵀZ)ᵀ)``.

    CRATE JMLR eq. 2; CRATE-alpha eq. 2 writes it as ``Σ_k R(U_kᵀZ)``.

    ``β = p / (N ε²)``. In code layout ``U_kᵀ Z_math = P_kᵀ`` with ``P_k = Z @ U_k``, so each term
    is ``½ logdet(I_p + β P_kᵀP_k)``: the coding rate of the projected tokens (``p`` features).

    Parameters
    ----------
    Z : float array, shape (..., N, d)
    U : float array, shape (K, d, p)
        One basis ``U_k ∈ R^{d×p}`` per subspace (head).
    eps : float
        ε > 0 (not ε²).

    Returns
    -------
    array, shape (...)
    """
    eps = _check_rate_inputs(Z, eps, U)
    P, _, log_eps = _project_scaled(Z, U, eps)                        # (..., K, N, p)
    return _half_logdet(P, log_eps).sum(axis=-1)


def compression_rate_grad(Z, U, eps: float):
    """Gradients of :func:`compression_rate` with respect to ``Z`` and ``U``.

    .. math::

        ∇_Z Rc = Σ_k β U_k U_kᵀ Z (I_N + β (U_kᵀZ)ᵀ(U_kᵀZ))⁻¹           (math layout)
        ∇_{U_k} Rc = β Z Zᵀ U_k (I_p + β U_kᵀ Z Zᵀ U_k)⁻¹

    Code layout, through the projection ``P_k = Z U_k``: with the ``(N, p)`` matrices
    ``G_k = ∂Rc/∂P_k = β P_k (I_p + β P_kᵀP_k)⁻¹ = β (I_N + β P_k P_kᵀ)⁻¹ P_k``,

    .. math::

        ∇_Z Rc = Σ_k G_k U_kᵀ,        ∇_{U_k} Rc = Zᵀ G_k = β ZᵀZ U_k (I_p + β P_kᵀP_k)⁻¹

    Parameters
    ----------
    Z : float array, shape (..., N, d)
    U : float array, shape (K, d, p)
    eps : float
        ε > 0 (not ε²).

    Returns
    -------
    grad_Z : array, shape (..., N, d)
        Each batch element's gradient with respect to its own tokens.
    grad_U : array, shape (K, d, p)
        The gradient of the SUM of the rates over the batch (``U`` is shared by all elements).
    """
    eps = _check_rate_inputs(Z, eps, U)
    xp = array_module(Z)
    P, k, log_eps = _project_scaled(Z, U, eps)                        # (..., K, N, p), P = Z U / 2^k
    G = _half_logdet_grad(P, log_eps)                                 # (..., K, N, p), ∂Rc/∂P
    grad_Z = xp.ldexp((G @ xp.swapaxes(U, -1, -2)).sum(axis=-3), -k)  # (..., N, d), ∂Rc/∂(ZU) = G / 2^k
    grad_U = xp.swapaxes(xp.ldexp(Z, -k), -1, -2)[..., None, :, :] @ G  # (..., K, d, p), Zᵀ ∂Rc/∂(ZU)
    return grad_Z, grad_U.reshape((-1,) + U.shape).sum(axis=0)        # (..., N, d), (K, d, p)


def sparse_rate_reduction(Z, U, eps: float, lambd: float):
    """Sparse rate reduction ``L_srr = Rc(Z | U_[K]) − R(Z) + λ ‖Z‖₁`` (CRATE-alpha eq. 1).

    The quantity CRATE layers minimise; ``‖Z‖₁`` sums ``|z_ij|`` over each batch element.

    Parameters
    ----------
    Z : float array, shape (..., N, d)
    U : float array, shape (K, d, p)
    eps : float
        ε > 0 (not ε²).
    lambd : float
        The sparsity weight λ ≥ 0.

    Returns
    -------
    array, shape (...)
    """
    lambd = _check_lambd(lambd)
    rates = compression_rate(Z, U, eps) - coding_rate(Z, eps)         # (...), validates Z, U, eps
    return rates + lambd * array_module(Z).abs(Z).sum(axis=(-2, -1))


def sparse_rate_reduction_grad(Z, U, eps: float, lambd: float):
    """Gradients of :func:`sparse_rate_reduction` with respect to ``Z`` and ``U``.

    .. math::

        ∇_Z L_srr = ∇_Z Rc − ∇_Z R + λ sign(Z),     ∇_U L_srr = ∇_U Rc

    ``λ sign(Z)`` is a subgradient of ``λ‖Z‖₁``, with ``sign(0) = 0`` (the minimum-norm element
    of the subdifferential ``λ[−1, 1]`` at 0).

    Parameters
    ----------
    Z : float array, shape (..., N, d)
    U : float array, shape (K, d, p)
    eps : float
        ε > 0 (not ε²).
    lambd : float
        λ ≥ 0.

    Returns
    -------
    grad_Z : array, shape (..., N, d)
    grad_U : array, shape (K, d, p)
        The gradient of the SUM of the objectives over the batch.
    """
    lambd = _check_lambd(lambd)
    xp = array_module(Z)
    grad_Z, grad_U = compression_rate_grad(Z, U, eps)
    return grad_Z - coding_rate_grad(Z, eps) + lambd * xp.sign(Z), grad_U


def _project(Z, U):
    """``P_k = Z U_k`` for every head: ``(..., N, d) × (K, d, p) → (..., K, N, p)``."""
    return Z[..., None, :, :] @ U


def _project_scaled(Z, U, eps: float):
    """``P = (Z / 2^k) U``, ``k`` and ``log(ε / 2^k)``, with ``2^k`` the power of two near ``max |Z|``.

    The rate of ``Z U`` at ``ε`` is the rate of ``Z U / 2^k`` at ``ε / 2^k`` (``1/ε²`` absorbs the
    scale), and ``Z / 2^k`` cannot overflow in the product with ``U``.
    """
    k = _exponent(Z)
    return _project(array_module(Z).ldexp(Z, -k), U), k, math.log(eps) - k * math.log(2)


def _exponent(X) -> int:
    """``k`` with ``max |X| / 2^k`` in ``[½, 1)`` (0 for an empty or all-zero ``X``)."""
    largest = float(array_module(X).abs(X).max()) if X.size else 0.0
    return math.frexp(largest)[1] if largest > 0 else 0


def _smaller_gram(X):
    """``X Xᵀ`` ``(..., n, n)`` if ``X`` ``(..., n, m)`` has ``n < m``, else ``XᵀX`` ``(..., m, m)``.

    By Sylvester's identity both give the same ``logdet(I + c · gram)``.
    """
    Xt = array_module(X).swapaxes(X, -1, -2)
    return X @ Xt if X.shape[-2] < X.shape[-1] else Xt @ X


class _Scaled(NamedTuple):
    """A token matrix ``X = 2^k Y`` with ``max |Y|`` in ``[½, 1)``, and the log of its rate's factor.

    The rate of ``X`` (``N`` tokens of ``m`` features) is ``½ logdet(I + (m / (N ε²)) XᵀX)
    = ½ logdet(I + c YᵀY)`` with ``c = (m / N) (2^k / ε)²``; ``log c`` is finite for every finite
    ``X`` and every ``ε > 0``, where ``c`` itself or the Gram of ``X`` may overflow.
    """

    Y: object        # (..., N, m), X / 2^k, exact (scaling by a power of two does not round)
    k: int           # the exponent
    log_c: float     # log(m / (N ε²)) + 2 k log 2


def _scaled(X, log_eps: float) -> _Scaled:
    """``X`` ``(..., N, m)`` as ``2^k Y`` and ``log c``; ``log_eps`` is ``log ε``."""
    xp = array_module(X)
    k = _exponent(X)
    N, m = X.shape[-2:]
    log_c = math.log(m / N) + 2 * (k * math.log(2) - log_eps)
    return _Scaled(xp.ldexp(X, -k), k, log_c)


def _cholesky_factor(xp, gram, log_c: float) -> float | None:
    """``c`` when ``I + c · gram`` keeps its identity against the Gram's rounding, else ``None``.

    The Gram of ``Y`` carries rounding errors of about ``ε_mach λ_max ≤ ε_mach tr(gram)``. While
    ``c`` times that stays below ``0.1``, ``I + c · gram`` is numerically positive definite and the
    Cholesky and solve forms are accurate; beyond, Cholesky fails for a rank-deficient ``Y``.
    A zero Gram gives ``c = 0`` (the rate and its gradient are 0 whatever ``c``).
    """
    trace = float(xp.trace(gram, axis1=-2, axis2=-1).max()) if gram.size else 0.0
    if trace == 0.0:
        return 0.0
    if log_c + math.log(xp.finfo(gram.dtype).eps * trace) > math.log(0.1):
        return None
    return math.exp(log_c)


def _eigen_form(xp, gram):
    """``gram = V Λ Vᵀ``: ``(log λ, V, kept)`` with ``kept`` false for rounding-level ``λ_i``.

    Used where ``c ε_mach λ_max`` is large (see :func:`_cholesky_factor`): eigenvalues at or below
    ``ε_mach λ_max`` are rounding noise amplified beyond 1 and are dropped (rate term 0, gradient
    weight 0), the numerical rank as in ``pinv``.
    """
    lam, V = xp.linalg.eigh(gram)                                         # (..., n), (..., n, n)
    kept = lam > xp.finfo(lam.dtype).eps * lam.max(axis=-1, keepdims=True)  # (..., n)
    return xp.log(xp.where(kept, lam, 1.0)), V, kept                      # log λ, 0 where dropped


def _half_logdet(X, log_eps: float):
    """``½ logdet(I + c XᵀX)`` with ``c = m / (N ε²)`` for ``X`` ``(..., N, m)``: one rate per matrix.

    Cholesky (:func:`half_logdet_identity_plus`) of ``I + c YᵀY`` while it is accurate (see
    :func:`_cholesky_factor`); beyond, the eigenvalues ``λ_i`` of ``YᵀY`` in logs:
    ``½ Σ_i log(1 + c λ_i) = ½ Σ_i logaddexp(0, log c + log λ_i)``.
    """
    xp = array_module(X)
    s = _scaled(X, log_eps)
    gram = _smaller_gram(s.Y)                                           # (..., n, n)
    c = _cholesky_factor(xp, gram, s.log_c)
    if c is not None:
        return half_logdet_identity_plus(gram, c)
    log_lam, _, kept = _eigen_form(xp, gram)
    terms = xp.logaddexp(0.0, s.log_c + log_lam)                      # (..., n), log(1 + c λ_i)
    return 0.5 * xp.where(kept, terms, 0.0).sum(axis=-1)


def _half_logdet_grad(X, log_eps: float):
    """Gradient of :func:`_half_logdet` with respect to ``X`` ``(..., N, m)``.

    ``c (I_N + c X Xᵀ)⁻¹ X = c X (I_m + c XᵀX)⁻¹``, solved on the smaller side; the second form
    is computed as ``c (A⁻¹ Xᵀ)ᵀ`` since ``A = I_m + c XᵀX`` is symmetric. With ``X = 2^k Y`` this
    is ``2^{−k} c (I + c YᵀY)⁻¹ ...`` in ``Y``. Where :func:`_half_logdet` uses eigenvalues, so
    does this: ``(I + c V Λ Vᵀ)⁻¹ c = V diag(1 / (1/c + λ_i)) Vᵀ``, with weight 0 for dropped
    ``λ_i`` (the limit ``c → ∞`` along the numerical range of ``Y``; see :func:`_eigen_form`).
    """
    xp = array_module(X)
    s = _scaled(X, log_eps)
    wide = X.shape[-2] < X.shape[-1]                                   # the Gram is Y Yᵀ, else YᵀY
    gram = _smaller_gram(s.Y)                                           # (..., n, n), n = min(N, m)
    c = _cholesky_factor(xp, gram, s.log_c)
    if c is not None:
        A = xp.eye(gram.shape[-1], dtype=X.dtype) + c * gram           # (..., n, n)
        Yt = xp.swapaxes(s.Y, -1, -2)
        grad = c * xp.linalg.solve(A, s.Y) if wide else c * xp.swapaxes(xp.linalg.solve(A, Yt), -1, -2)
    else:
        log_lam, V, kept = _eigen_form(xp, gram)
        weight = xp.where(kept, xp.exp(-xp.logaddexp(-s.log_c, log_lam)), 0.0)  # (..., n), 1/(1/c + λ)
        Vt = xp.swapaxes(V, -1, -2)
        if wide:
            grad = V @ (weight[..., :, None] * (Vt @ s.Y))              # (..., N, m)
        else:
            grad = ((s.Y @ V) * weight[..., None, :]) @ Vt              # (..., N, m)
    return xp.ldexp(grad, -s.k).astype(X.dtype, copy=False)


def _check_rate_inputs(Z, eps, U=None) -> float:
    """Validate ``Z`` (and ``U``, and their backends) and return ``eps`` as a float."""
    check_array("Z", Z, min_ndim=2)
    if Z.shape[-2] < 1 or Z.shape[-1] < 1:
        raise ValueError(f"Z must hold at least one token of at least one feature (shape (..., N, d), N, d >= 1), got {tuple(Z.shape)}")
    if U is not None:
        check_same_backend(Z=Z, U=U)
        check_array("U", U)
        d = Z.shape[-1]
        if U.ndim != 3 or U.shape[1] != d or U.shape[2] < 1:
            expected = f"(K, d, p) = (K, {d}, p) with p >= 1 for Z's d = {d}"
            raise ValueError(f"U must have shape {expected}, got {tuple(U.shape)}")
    return check_positive("eps", eps)


def _check_lambd(lambd) -> float:
    """``λ`` as a float, checked to be finite and ≥ 0."""
    try:
        value = float(lambd)
    except (TypeError, ValueError):
        raise TypeError(f"lambd must be a number >= 0, got {lambd!r}") from None
    if not (0 <= value < float("inf")):
        raise ValueError(f"lambd must be a finite number >= 0, got {lambd!r}")
    return value
