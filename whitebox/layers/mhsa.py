"""Standard multi-head self-attention (MHSA): the attention of ViT, GPT and BERT (Vaswani et al. 2017, eq. 1).

Code layout with tokens as rows. One fused input projection ``W_in (3 K p, d)``, ``b_in (3 K p,)``
stacked ``[W_q; W_k; W_v]`` (the layout of PyTorch's ``nn.MultiheadAttention.in_proj_weight`` and
of timm's ``qkv``), each block head-major, gives per head ``k``

    Q_k = x W_qᵏᵀ + b_qᵏ,   K_k = x W_kᵏᵀ + b_kᵏ,   V_k = x W_vᵏᵀ + b_vᵏ      (N, p) each
    head_k = softmax(s Q_k K_kᵀ) V_k,   s = p^(-1/2)
    y = [head_1, …, head_K] W_outᵀ + b_out                                    (N, d)

with an optional causal mask before the softmax. The softmax attention is
:func:`whitebox.layers.mssa.attention_weights`, the one MSSA uses: MSSA is this with
``W_q = W_k = W_v = [U_1 … U_K]ᵀ`` and no input bias, which is what makes it a compression step
against subspaces (CRATE JMLR §2.3); here the three maps are free.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module
from .linear import LinearCache, linear_backward, linear_forward
from .mssa import attention_weights, attention_weights_backward, merge_heads, split_heads


class MHSACache(NamedTuple):
    in_proj: LinearCache  # x → [q, k, v]
    q: object  # (B, K, N, p)
    k: object  # (B, K, N, p)
    v: object  # (B, K, N, p)
    attn: object  # (B, K, N, N): softmax(s q kᵀ)
    scale: float  # s
    out_proj: LinearCache  # [head_1 … head_K] → y


def mhsa_forward(x, W_in, b_in, W_out, b_out, *, heads: int, causal: bool = False, scale: float | None = None):
    """``y = MHSA(x)`` (B, N, d) for x (B, N, d); W_in (3 K p, d), b_in (3 K p,), W_out (d, K p), b_out (d,).

    ``scale`` defaults to ``p^(-1/2)``. Returns ``(y, MHSACache)``.
    """
    inner = W_in.shape[0] // 3
    s = (inner // heads) ** -0.5 if scale is None else float(scale)
    qkv, in_cache = linear_forward(x, W_in, b_in)  # (B, N, 3 K p)
    q, k, v = (split_heads(qkv[..., i * inner:(i + 1) * inner], heads) for i in range(3))  # (B, K, N, p) each
    attn = attention_weights(q, k, s, causal)  # (B, K, N, N)
    O = merge_heads(attn @ v)  # (B, N, K p)
    y, out_cache = linear_forward(O, W_out, b_out)  # (B, N, d)
    return y, MHSACache(in_cache, q, k, v, attn, s, out_cache)


def mhsa_backward(dy, cache: MHSACache):
    """Returns ``(dx, dW_in, db_in, dW_out, db_out)`` for ``dy`` (B, N, d)."""
    xp = array_module(dy)
    in_cache, q, k, v, attn, s, out_cache = cache
    K = q.shape[1]
    # forward: y = O W_outᵀ + b_out
    dO, dW_out, db_out = linear_backward(dy, out_cache)  # (B, N, K p)
    dO = split_heads(dO, K)  # (B, K, N, p)
    # forward: O = attn @ v
    dattn = dO @ v.swapaxes(-1, -2)  # (B, K, N, N)
    dv = attn.swapaxes(-1, -2) @ dO  # (B, K, N, p)
    # forward: attn = softmax(s q kᵀ)
    dscores = attention_weights_backward(dattn, attn, s)  # (B, K, N, N)
    dq = dscores @ k  # (B, K, N, p)
    dk = dscores.swapaxes(-1, -2) @ q  # (B, K, N, p)
    # forward: [q, k, v] = split(x W_inᵀ + b_in)
    dqkv = xp.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, N, 3 K p)
    dx, dW_in, db_in = linear_backward(dqkv, in_cache)
    return dx, dW_in, db_in, dW_out, db_out
