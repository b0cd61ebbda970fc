"""Multi-head subspace self-attention (MSSA): CRATE's compression step.

Math (CRATE JMLR eqs. 11-14, code layout with tokens as rows): the ``K = heads`` subspaces are
the row blocks of one shared projection ``W_qkv = [U_1 … U_K]ᵀ`` of shape ``(K p, d)``, so the
projected tokens of head ``k`` are ``P_k = Z U_k`` (N, p). Then

    SSA_k(Z)  = softmax(s · P_k P_kᵀ) P_k            (softmax over keys, the last axis)
    O         = [SSA_1, …, SSA_K]                    (N, K p), heads concatenated head-major

and the branch output has one of three forms, each its own forward/backward pair:

* published (PyTorch CRATE), :func:`mssa_forward`: ``O W_outᵀ + b_out`` with a learned output
  projection (CRATE-alpha: no bias), and ``s = p^(-1/2)``;
* tied (the paper's form, JMLR eq. 14 written as a residual branch), :func:`mssa_tied_forward`:
  the output goes back through the subspaces themselves, ``Σ_k SSA_k U_kᵀ = O W_qkv``, and with
  ``c = κ p / (N ε²)`` the branch returns ``c (O W_qkv − Z)``, so that ``Z + branch`` is the JMLR
  update ``(1 − c) Z + c MSSA(Z)``;
* no projection (PyTorch CRATE's ``nn.Identity`` when ``heads == 1`` and ``dim_head == dim``):
  ``O`` itself, which is :func:`attention_heads_forward`.

An optional causal mask (token ``i`` attends to keys ``j ≤ i``) is applied before the softmax.
The exact gradient step ``Z − κ ∇_Z Rc`` that this approximates lives in
:mod:`whitebox.compression_step`.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module
from .activations import softmax_backward, softmax_forward
from .linear import LinearCache, linear_backward, linear_forward, matmul_rows, rows_t_matmul


class HeadsCache(NamedTuple):
    x: object  # (B, N, d): input tokens, for dW_qkv
    W_qkv: object  # (K p, d): the stacked subspaces [U_1 … U_K]ᵀ, for dx
    proj: object  # (B, K, N, p): P_k = x U_k
    attn: object  # (B, K, N, N): softmax(s P_k P_kᵀ)
    scale: float  # s


def subspaces(W_qkv, heads: int):
    """The bases ``U`` (K, d, p) stored in the projection ``W_qkv = [U_1 … U_K]ᵀ`` (K p, d)."""
    inner, d = W_qkv.shape
    return W_qkv.reshape(heads, inner // heads, d).transpose(0, 2, 1)


def split_heads(y, heads: int):
    """(B, N, K p) → (B, K, N, p), contiguous: head ``k`` is columns ``k p … (k+1) p − 1``."""
    xp = array_module(y)
    B, N, inner = y.shape
    return xp.ascontiguousarray(y.reshape(B, N, heads, inner // heads).transpose(0, 2, 1, 3))


def merge_heads(o):
    """(B, K, N, p) → (B, N, K p): the heads concatenated head-major (the inverse of :func:`split_heads`)."""
    B, K, N, p = o.shape
    return o.transpose(0, 2, 1, 3).reshape(B, N, K * p)


def attention_weights(q, k, scale: float, causal: bool = False):
    """``softmax(s q kᵀ)`` over the keys: q, k (B, K, N, p) → (B, K, N, N).

    With ``causal`` query ``i`` sees keys ``j ≤ i`` only (the others get weight 0). Shared by MSSA
    (``q = k = P_k``) and the standard attention of :mod:`whitebox.layers.mhsa`.
    """
    xp = array_module(q)
    N = q.shape[-2]
    scores = q @ k.swapaxes(-1, -2)  # (B, K, N, N)
    scores *= scale
    if causal:
        scores[..., xp.triu(xp.ones((N, N), dtype=bool), k=1)] = -xp.inf  # key j > query i
    return softmax_forward(scores)  # (B, K, N, N), in place of scores


def attention_weights_backward(dattn, attn, scale: float):
    """The gradient of the scores' product ``q kᵀ`` for ``dattn`` (B, K, N, N); overwrites ``dattn``.

    The masked entries have ``attn = 0`` and get no gradient.
    """
    # forward: attn = softmax(s · q kᵀ)
    dscores = softmax_backward(dattn, attn, overwrite_dp=True)
    dscores *= scale
    return dscores


def attention_heads_forward(x, W_qkv, heads: int, scale: float | None = None, causal: bool = False):
    """``O = [softmax(s P_k P_kᵀ) P_k]_k`` with ``P_k = x U_k``.

    x (B, N, d), W_qkv (K p, d) → O (B, N, K p). ``scale`` defaults to ``p^(-1/2)``.
    """
    p = W_qkv.shape[0] // heads
    s = p**-0.5 if scale is None else float(scale)
    proj = split_heads(matmul_rows(x, W_qkv.T), heads)  # (B, K, N, p)
    attn = attention_weights(proj, proj, s, causal)  # (B, K, N, N)
    out = merge_heads(attn @ proj)  # (B, N, K p)
    return out, HeadsCache(x, W_qkv, proj, attn, s)


def attention_heads_backward(dout, cache: HeadsCache):
    """Returns ``(dx, dW_qkv)`` for ``dout`` (B, N, K p)."""
    x, W_qkv, proj, attn, s = cache
    K = proj.shape[1]
    dO = split_heads(dout, K)  # (B, K, N, p)
    # forward: out = attn @ proj
    dattn = dO @ proj.swapaxes(-1, -2)  # (B, K, N, N)
    dproj = attn.swapaxes(-1, -2) @ dO  # (B, K, N, p)
    # forward: attn = softmax(s · proj projᵀ): proj is both the queries and the keys
    dscores = attention_weights_backward(dattn, attn, s)
    dproj += (dscores + dscores.swapaxes(-1, -2)) @ proj
    # forward: proj = split_heads(x W_qkvᵀ)
    dx, dW_qkv, _ = linear_backward(merge_heads(dproj), LinearCache(x, W_qkv, False))
    return dx, dW_qkv


class MSSACache(NamedTuple):
    heads: HeadsCache
    out_proj: LinearCache  # the learned output projection


def mssa_forward(x, W_qkv, W_out, b_out=None, *, heads: int, scale=None, causal=False):
    """Published MSSA: ``O W_outᵀ + b_out`` (B, N, d) for x (B, N, d).

    W_qkv (K p, d), W_out (d, K p), b_out (d,) or None (CRATE-alpha has no output bias).
    """
    O, heads_cache = attention_heads_forward(x, W_qkv, heads, scale, causal)  # (B, N, K p)
    y, out_cache = linear_forward(O, W_out, b_out)  # (B, N, d)
    return y, MSSACache(heads_cache, out_cache)


def mssa_backward(dy, cache: MSSACache):
    """Returns ``(dx, dW_qkv, dW_out, db_out)``; ``db_out`` is None without an output bias."""
    # forward: y = O W_outᵀ + b_out
    dO, dW_out, db_out = linear_backward(dy, cache.out_proj)
    dx, dW_qkv = attention_heads_backward(dO, cache.heads)
    return dx, dW_qkv, dW_out, db_out


class TiedMSSACache(NamedTuple):
    heads: HeadsCache
    O: object  # (B, N, K p): the heads' output, for dW_qkv
    tied_scale: float  # c = κ p / (N ε²)


def mssa_tied_forward(x, W_qkv, tied_scale: float, *, heads: int, scale=None, causal=False):
    """Tied MSSA (JMLR eq. 14 as a residual branch): ``c (O W_qkv − x)`` (B, N, d) for x (B, N, d)."""
    O, heads_cache = attention_heads_forward(x, W_qkv, heads, scale, causal)  # (B, N, K p)
    y = matmul_rows(O, W_qkv)  # (B, N, d): Σ_k SSA_k U_kᵀ
    y -= x
    y *= tied_scale
    return y, TiedMSSACache(heads_cache, O, float(tied_scale))


def mssa_tied_backward(dy, cache: TiedMSSACache):
    """Returns ``(dx, dW_qkv)``."""
    heads_cache, O, c = cache
    # forward: y = c (O W_qkv − x)
    dO = matmul_rows(dy, c * heads_cache.W_qkv.T)  # (B, N, K p)
    dx, dW_qkv = attention_heads_backward(dO, heads_cache)
    dW_qkv += c * rows_t_matmul(O, dy)
    dx -= c * dy
    return dx, dW_qkv
