"""Pieces shared by the CRATE-family models: the compression sublayer and the classifier head.

Parameter names are the model's own (``layers.{i}.attn.qkv`` …); each model module maps them to
the official PyTorch state-dict names.
"""

from __future__ import annotations

from typing import NamedTuple

from ..layers.layernorm import LAYERNORM_EPS, LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache, linear_backward, linear_forward
from ..layers.mssa import MSSACache, mssa_backward, mssa_forward
from ..layers.pooling import pool_backward, pool_forward


class AttentionCache(NamedTuple):
    norm: LayerNormCache
    mssa: MSSACache


def attention_sublayer_forward(
    z, params: dict, prefix: str, *, heads: int, causal=False, tied_scale=None, norm_eps: float = LAYERNORM_EPS
):
    """``Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))``: z (B, N, d) → (B, N, d).

    Reads ``{prefix}attn_norm.weight/bias``, ``{prefix}attn.qkv`` and, when present,
    ``{prefix}attn.out.weight`` / ``{prefix}attn.out.bias``.
    """
    y, norm_cache = layernorm_forward(
        z, params[prefix + "attn_norm.weight"], params[prefix + "attn_norm.bias"], norm_eps
    )
    branch, mssa_cache = mssa_forward(
        y,
        params[prefix + "attn.qkv"],
        params.get(prefix + "attn.out.weight"),
        params.get(prefix + "attn.out.bias"),
        heads=heads,
        causal=causal,
        tied_scale=tied_scale,
    )
    branch += z
    return branch, AttentionCache(norm_cache, mssa_cache)


def attention_sublayer_backward(dz_half, cache: AttentionCache, prefix: str, grads: dict):
    """Adds this sublayer's parameter gradients to ``grads``; returns the gradient for ``Z^ℓ``."""
    dy, dW_qkv, dW_out, db_out = mssa_backward(dz_half, cache.mssa)
    grads[prefix + "attn.qkv"] = dW_qkv
    if dW_out is not None:
        grads[prefix + "attn.out.weight"] = dW_out
    if db_out is not None:
        grads[prefix + "attn.out.bias"] = db_out
    dz, grads[prefix + "attn_norm.weight"], grads[prefix + "attn_norm.bias"] = layernorm_backward(dy, cache.norm)
    dz += dz_half  # the residual
    return dz


class HeadCache(NamedTuple):
    norm: LayerNormCache
    linear: LinearCache
    pool: str
    num_tokens: int


def head_forward(z, params: dict, pool: str):
    """``logits = Linear(LN(pool(Z)))``: z (B, N, d) → (B, classes)."""
    pooled = pool_forward(z, pool)  # (B, d)
    h, norm_cache = layernorm_forward(pooled, params["head_norm.weight"], params["head_norm.bias"])
    logits, linear_cache = linear_forward(h, params["head.weight"], params["head.bias"])
    return logits, HeadCache(norm_cache, linear_cache, pool, z.shape[1])


def head_backward(dlogits, cache: HeadCache, grads: dict):
    """Adds the head's gradients to ``grads``; returns the gradient for the tokens (B, N, d)."""
    dh, grads["head.weight"], grads["head.bias"] = linear_backward(dlogits, cache.linear)
    dpooled, grads["head_norm.weight"], grads["head_norm.bias"] = layernorm_backward(dh, cache.norm)
    return pool_backward(dpooled, cache.pool, cache.num_tokens)
