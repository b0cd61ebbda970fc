"""The CRATE-MAE decoder layer: one encoder layer run backwards (REFERENCE §7, Pai et al. 2024).

An encoder layer compresses, then sparsifies:

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))           (a step *down* the coding rate of the subspaces)
    Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}) | D^ℓ)        (a sparse code against the dictionary D^ℓ)

The decoder layer undoes the two steps in the opposite order:

    Y   = LN(X) Wᵀ                           undo the sparse coding: a d×d linear map, the
                                             "dictionary" that turns codes back into tokens
    X⁺  = Y − MSSA(LN(Y))                    undo the compression: a step *up* the coding rate

Decisions, following the published CRATE-MAE code (``crate_decoder.Block_CRATE``):

* The first map is ``F.linear(LN(x), W)``: a square weight ``W`` (d, d), **no bias and no ReLU**
  (decoding a non-negative code is linear). In the paper's idealisation ``W`` would be the
  encoder's dictionary ``D^ℓ`` (code ``x ↦ x Dᵀ`` is ``D a`` for codes as columns); the code
  learns it as a free parameter, and so does whitebox.
* The second step is MSSA in its published form (shared ``qkv`` projection, softmax over keys,
  learned output projection with bias) with a **minus** sign and no extra scaling, on the
  LayerNorm of ``Y``; the subtraction is taken from ``Y`` itself, not from ``LN(Y)``.

Code layout: tokens are rows, ``x`` (B, N, d). ``params`` holds this layer's arrays under local
names: ``linear_norm.weight/bias`` (d,), ``linear.weight`` (d, d), ``attn_norm.weight/bias`` (d,),
``attn.qkv`` (K p, d) and, unless the projection is omitted (K = 1, p = d), ``attn.out.weight``
(d, K p) and ``attn.out.bias`` (d,).
"""

from __future__ import annotations

from typing import NamedTuple

from .layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from .linear import LinearCache, linear_backward, linear_forward
from .mssa import MSSACache, mssa_backward, mssa_forward


class DecoderLayerCache(NamedTuple):
    linear_norm: LayerNormCache  # LN(X)
    linear: LinearCache  # Y = LN(X) Wᵀ
    attn_norm: LayerNormCache  # LN(Y)
    mssa: MSSACache  # MSSA(LN(Y))


def decoder_layer_forward(x, params: dict, *, heads: int):
    """``X⁺ = Y − MSSA(LN(Y))`` with ``Y = LN(X) Wᵀ``: x (B, N, d) → (B, N, d)."""
    u, c1 = layernorm_forward(x, params["linear_norm.weight"], params["linear_norm.bias"])  # (B, N, d)
    y, c2 = linear_forward(u, params["linear.weight"])  # (B, N, d): Y
    v, c3 = layernorm_forward(y, params["attn_norm.weight"], params["attn_norm.bias"])  # (B, N, d)
    branch, c4 = mssa_forward(
        v, params["attn.qkv"], params.get("attn.out.weight"), params.get("attn.out.bias"), heads=heads
    )  # (B, N, d)
    out = y - branch
    return out, DecoderLayerCache(c1, c2, c3, c4)


def decoder_layer_backward(dout, cache: DecoderLayerCache):
    """Returns ``(dx, grads)`` with ``grads`` keyed like the forward's ``params``."""
    grads = {}
    # forward: out = y − MSSA(v), v = LN(y)
    dv, grads["attn.qkv"], dW_out, db_out = mssa_backward(-dout, cache.mssa)
    if dW_out is not None:
        grads["attn.out.weight"] = dW_out
    if db_out is not None:
        grads["attn.out.bias"] = db_out
    dy, grads["attn_norm.weight"], grads["attn_norm.bias"] = layernorm_backward(dv, cache.attn_norm)
    dy += dout
    # forward: y = u Wᵀ, u = LN(x)
    du, grads["linear.weight"], _ = linear_backward(dy, cache.linear)
    dx, grads["linear_norm.weight"], grads["linear_norm.bias"] = layernorm_backward(du, cache.linear_norm)
    return dx, grads
