"""The CRATE-MAE decoder layer: one encoder layer run backwards (Pai et al. 2024, §3).

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

Code layout: tokens are rows, ``x`` (B, N, d). Local parameter names: ``linear_norm.weight/bias``
(d,), ``linear.weight`` (d, d) and those of :mod:`whitebox.blocks.attention` (``attn_norm.*``,
``attn.qkv`` and, unless the projection is omitted (K = 1, p = d), ``attn.out.*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache, linear_backward, linear_forward
from . import attention
from .attention import AttentionSpec, BranchCache
from .params import Param, kaiming_uniform, layernorm


@dataclass(frozen=True)
class DecoderLayerSpec:
    attention: AttentionSpec  # the published form; MAE's xavier init


def shapes(spec: DecoderLayerSpec) -> dict:
    d = spec.attention.dim
    # kaiming-uniform for the square map: the published decoder leaves it uninitialised
    return {**layernorm(d, "linear_norm."), "linear.weight": Param((d, d), kaiming_uniform(d)),
            **attention.shapes(spec.attention)}


class DecoderLayerCache(NamedTuple):
    linear_norm: LayerNormCache  # LN(X)
    linear: LinearCache  # Y = LN(X) Wᵀ
    attention: BranchCache  # MSSA(LN(Y))


def forward(x, params: dict, spec: DecoderLayerSpec, keep: bool = False):
    """``X⁺ = Y − MSSA(LN(Y))`` with ``Y = LN(X) Wᵀ``: x (B, N, d) → (B, N, d)."""
    u, c1 = layernorm_forward(x, params["linear_norm.weight"], params["linear_norm.bias"])  # (B, N, d)
    y, c2 = linear_forward(u, params["linear.weight"])  # (B, N, d): Y
    branch, c3 = attention.branch_forward(y, params, spec.attention)  # (B, N, d): MSSA(LN(Y))
    out = y - branch
    return out, DecoderLayerCache(c1, c2, c3)


def backward(dout, cache: DecoderLayerCache):
    """Returns ``(dx, grads)`` under the local names of :func:`shapes`."""
    # forward: out = y − MSSA(LN(y))
    dy, grads = attention.branch_backward(-dout, cache.attention)
    dy += dout
    # forward: y = u Wᵀ, u = LN(x)
    du, grads["linear.weight"], _ = linear_backward(dy, cache.linear)
    dx, grads["linear_norm.weight"], grads["linear_norm.bias"] = layernorm_backward(du, cache.linear_norm)
    return dx, grads
