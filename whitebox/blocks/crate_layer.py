"""The CRATE layer: one step of alternating minimisation of sparse rate reduction (CRATE JMLR eqs. 14, 6).

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))           (eq. 14: compression against the subspaces U^ℓ)
    Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}) | D^ℓ)       (eq. 6: sparsification against D^ℓ, no residual)

Local parameter names: those of :mod:`whitebox.blocks.attention`, ``ista_norm.weight/bias`` (d,)
and ``ista.D`` (d, d). Used by CRATE and by CRATE-MAE's encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..layers.ista import ISTACache, ista_backward, ista_forward
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from . import attention
from .attention import AttentionSpec, BranchCache
from .params import Param, kaiming_uniform, layernorm


@dataclass(frozen=True)
class CrateLayerSpec:
    attention: AttentionSpec
    ista_step: float  # η
    ista_lambd: float  # λ


def shapes(spec: CrateLayerSpec) -> dict:
    d = spec.attention.dim
    return {
        **attention.shapes(spec.attention),
        **layernorm(d, "ista_norm."),
        "ista.D": Param((d, d), kaiming_uniform(d)),
    }


class CrateLayerCache(NamedTuple):
    attention: BranchCache
    norm: LayerNormCache
    ista: ISTACache  # its x is LN(Z^{ℓ+½}), its out Z^{ℓ+1}
    midpoint: object  # Z^{ℓ+½} when asked for, else None


def forward(z, params: dict, spec: CrateLayerSpec, keep: bool = False):
    """``Z^{ℓ+1} = ISTA(LN(Z^ℓ + MSSA(LN(Z^ℓ))))``: z (B, N, d) → (B, N, d)."""
    z_half, attn_cache = attention.forward(z, params, spec.attention)  # (B, N, d)
    y, norm_cache = layernorm_forward(z_half, params["ista_norm.weight"], params["ista_norm.bias"])
    out, ista_cache = ista_forward(y, params["ista.D"], spec.ista_step, spec.ista_lambd)
    return out, CrateLayerCache(attn_cache, norm_cache, ista_cache, z_half if keep else None)


def backward(dout, cache: CrateLayerCache):
    """Returns ``(dz, grads)`` under the local names of :func:`shapes`."""
    grads = {}
    # forward: out = ISTA(y), y = LN(z_half)
    dy, grads["ista.D"] = ista_backward(dout, cache.ista)
    dz_half, grads["ista_norm.weight"], grads["ista_norm.bias"] = layernorm_backward(dy, cache.norm)
    dz, attn_grads = attention.backward(dz_half, cache.attention)
    grads.update(attn_grads)
    return dz, grads


def features(cache: CrateLayerCache) -> dict:
    heads = attention.heads_cache(cache.attention)
    return {"attention_inputs": heads.x, "midpoints": cache.midpoint, "sparse_inputs": cache.ista.x,
            "codes": cache.ista.out, "attention": heads.attn}
