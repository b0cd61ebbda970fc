"""The CRATE-alpha layer, with its ablation switches (CRATE-alpha eqs. 4-5, 7-12).

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                           (eq. 4; output projection without bias)
    Z^{ℓ+1} = [Z^{ℓ+½} +] D̂ A_T,  A_T = ISTA-OC(LN(Z^{ℓ+½}) | D)   (eqs. 8-12)

The switches (:class:`CrateAlphaLayerSpec`): ``overcomplete`` C (``D ∈ R^{d×Cd}``), ``decoupled``
(a separate decoder ``D̂``, eq. 11, else ``D̂ = D``, eq. 10), ``residual`` (eq. 12), ``decode``
(``False``: the block returns the codes ``A_T``, vanilla CRATE), ``odl_steps`` T and ``ista_start``
(``A₀ = 0`` or ``A₀ = Z``, CRATE's ISTA).

Local parameter names: those of :mod:`whitebox.blocks.attention`, ``odl_norm.weight/bias`` (d,),
``odl.D`` (d, Cd) and, when decoupled, ``odl.D1`` (d, Cd).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.odl import ODLCache, odl_backward, odl_forward
from . import attention
from .attention import AttentionSpec, BranchCache
from .params import Param, kaiming_uniform, layernorm


@dataclass(frozen=True)
class CrateAlphaLayerSpec:
    attention: AttentionSpec
    overcomplete: int  # C
    decoupled: bool
    residual: bool
    decode: bool
    odl_steps: int  # T
    ista_start: str  # "zero" (A₀ = 0) or "input" (A₀ = LN(Z^{ℓ+½}))
    ista_step: float  # η
    ista_lambd: float  # λ
    norm_eps: float  # the eps of the LayerNorm before the sparse block

    @property
    def code_dim(self) -> int:
        return self.overcomplete * self.attention.dim


def shapes(spec: CrateAlphaLayerSpec) -> dict:
    d, m = spec.attention.dim, spec.code_dim
    out = {**attention.shapes(spec.attention), **layernorm(d, "odl_norm."),
           "odl.D": Param((d, m), kaiming_uniform(m))}  # the port's kaiming_uniform_ of a (d, Cd) tensor
    if spec.decoupled:
        out["odl.D1"] = Param((d, m), kaiming_uniform(m))
    return out


class CrateAlphaLayerCache(NamedTuple):
    attention: BranchCache
    norm: LayerNormCache
    odl: ODLCache
    sparse_input: object  # LN(Z^{ℓ+½})
    residual: bool
    decoupled: bool
    midpoint: object  # Z^{ℓ+½} when asked for, else None


def forward(z, params: dict, spec: CrateAlphaLayerSpec, keep: bool = False):
    """``Z^{ℓ+1} = [Z^{ℓ+½} +] D̂ A_T`` with ``Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))``: z (B, N, d) → (B, N, d)."""
    z_half, attn_cache = attention.forward(z, params, spec.attention)  # (B, N, d)
    y, norm_cache = layernorm_forward(z_half, params["odl_norm.weight"], params["odl_norm.bias"], spec.norm_eps)
    D = params["odl.D"]
    D_hat = params["odl.D1"] if spec.decoupled else (D if spec.decode else None)
    start = y if spec.ista_start == "input" else None
    out, odl_cache = odl_forward(y, D, D_hat, steps=spec.odl_steps, step=spec.ista_step, lambd=spec.ista_lambd,
                                 start=start)
    if spec.residual:
        out = z_half + out  # a new array: without a decoder ``out`` is the cached code A_T
    return out, CrateAlphaLayerCache(attn_cache, norm_cache, odl_cache, y, spec.residual, spec.decoupled,
                                     z_half if keep else None)


def backward(dout, cache: CrateAlphaLayerCache):
    """Returns ``(dz, grads)`` under the local names of :func:`shapes`."""
    grads = {}
    dy, dD, dD_hat, dstart = odl_backward(dout, cache.odl)
    if dstart is not None:  # A₀ = LN(Z^{ℓ+½})
        dy += dstart
    if cache.decoupled:
        grads["odl.D1"] = dD_hat
    elif dD_hat is not None:  # tied decoder D̂ = D
        dD += dD_hat
    grads["odl.D"] = dD
    dz_half, grads["odl_norm.weight"], grads["odl_norm.bias"] = layernorm_backward(dy, cache.norm)
    if cache.residual:
        dz_half += dout
    dz, attn_grads = attention.backward(dz_half, cache.attention)
    grads.update(attn_grads)
    return dz, grads


def features(cache: CrateAlphaLayerCache) -> dict:
    heads = attention.heads_cache(cache.attention)
    return {"attention_inputs": heads.x, "midpoints": cache.midpoint, "sparse_inputs": cache.sparse_input,
            "codes": cache.odl.codes[-1], "attention": heads.attn}
