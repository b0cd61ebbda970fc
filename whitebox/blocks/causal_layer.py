"""The CRATE layer of the token models: both halves residual, attention masked in the causal model.

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                 (CRATE JMLR eq. 14; causal: token t attends to tokens ≤ t,
                                                    CRATE-BERT: to every token)
    Z^{ℓ+1} = Z^{ℓ+½} + SC(LN(Z^{ℓ+½}))            (sparse coding, then decoding)

``SC`` is ``"overcomplete"``: CRATE-alpha's ODL with the tied decoder ``D̂ = D`` (its eqs. 8-10),
``D A_T`` with ``D ∈ R^{d×m}`` from ``A₀ = 0``; or ``"ista"``: CRATE's one-step ISTA (JMLR eq. 6).

Local parameter names: those of :mod:`whitebox.blocks.attention`, ``ista_norm.weight/bias`` (d,)
and ``ista.D`` (d, m).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..layers.ista import ista_backward, ista_forward
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.odl import odl_backward, odl_forward
from . import attention
from .attention import AttentionSpec, BranchCache
from .params import Param, kaiming_uniform, layernorm

SPARSE_BLOCKS = ("overcomplete", "ista")


@dataclass(frozen=True)
class CausalLayerSpec:
    attention: AttentionSpec  # causal=True for the next-token model, False for CRATE-BERT
    sparse: str  # "overcomplete" or "ista"
    code_dim: int  # m (d for "ista")
    sparse_steps: int  # T of the overcomplete block
    ista_step: float  # η
    ista_lambd: float  # λ


def shapes(spec: CausalLayerSpec) -> dict:
    d = spec.attention.dim
    return {**attention.shapes(spec.attention), **layernorm(d, "ista_norm."),
            "ista.D": Param((d, spec.code_dim), kaiming_uniform(d))}  # the LM code's (m, d) weight: fan_in d


class CausalLayerCache(NamedTuple):
    attention: BranchCache
    norm: LayerNormCache
    sparse: object  # ODLCache (overcomplete) or ISTACache (ista)
    sparse_input: object  # LN(Z^{ℓ+½})
    overcomplete: bool
    midpoint: object  # Z^{ℓ+½} when asked for, else None


def forward(z, params: dict, spec: CausalLayerSpec, keep: bool = False):
    """``Z^{ℓ+1} = Z^{ℓ+½} + SC(LN(Z^{ℓ+½}))``: z (B, T, d) → (B, T, d)."""
    z_half, attn_cache = attention.forward(z, params, spec.attention)
    y, norm_cache = layernorm_forward(z_half, params["ista_norm.weight"], params["ista_norm.bias"])
    D = params["ista.D"]
    overcomplete = spec.sparse == "overcomplete"
    if overcomplete:  # D A_T with the tied decoder D̂ = D
        branch, sparse_cache = odl_forward(y, D, D, steps=spec.sparse_steps, step=spec.ista_step,
                                           lambd=spec.ista_lambd)
    else:
        branch, sparse_cache = ista_forward(y, D, spec.ista_step, spec.ista_lambd)
    out = z_half + branch
    return out, CausalLayerCache(attn_cache, norm_cache, sparse_cache, y, overcomplete, z_half if keep else None)


def backward(dout, cache: CausalLayerCache):
    """Returns ``(dz, grads)`` under the local names of :func:`shapes`."""
    grads = {}
    # forward: out = z_half + SC(LN(z_half))
    if cache.overcomplete:
        dy, dD, dD_hat, _ = odl_backward(dout, cache.sparse)
        dD += dD_hat  # the tied dictionary: encoder and decoder gradients add
        grads["ista.D"] = dD
    else:
        dy, grads["ista.D"] = ista_backward(dout, cache.sparse)
    dz_half, grads["ista_norm.weight"], grads["ista_norm.bias"] = layernorm_backward(dy, cache.norm)
    dz_half += dout
    dz, attn_grads = attention.backward(dz_half, cache.attention)
    grads.update(attn_grads)
    return dz, grads


def features(cache: CausalLayerCache) -> dict:
    heads = attention.heads_cache(cache.attention)
    codes = cache.sparse.codes[-1] if cache.overcomplete else cache.sparse.out
    return {"attention_inputs": heads.x, "midpoints": cache.midpoint, "sparse_inputs": cache.sparse_input,
            "codes": codes, "attention": heads.attn}
