"""The compression sublayer ``Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))`` (CRATE JMLR eq. 14 as a residual step).

MSSA takes one of its three forms (:mod:`whitebox.layers.mssa`), chosen by the spec: published
with an output projection (with or without its bias), published without a projection (PyTorch
CRATE's ``nn.Identity`` when ``heads == 1`` and ``dim_head == dim``), or tied (the paper's form).

Local parameter names: ``attn_norm.weight/bias`` (d,), ``attn.qkv`` (K p, d) and, with a
projection, ``attn.out.weight`` (d, K p) and ``attn.out.bias`` (d,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..layers.layernorm import LAYERNORM_EPS, LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.mssa import (
    attention_heads_backward,
    attention_heads_forward,
    mssa_backward,
    mssa_forward,
    mssa_tied_backward,
    mssa_tied_forward,
)
from .params import Param, layernorm, linear_default, xavier_uniform, zeros

MSSA_FORMS = ("published", "tied")
INITS = ("pytorch", "xavier")


@dataclass(frozen=True)
class AttentionSpec:
    """One MSSA sublayer: width ``dim``, ``heads`` subspaces of dimension ``dim_head``.

    ``form``: ``"published"`` or ``"tied"`` (with the step ``tied_scale`` c = κ p/(N ε²));
    ``out_bias``: the published projection has a bias (CRATE) or not (CRATE-alpha);
    ``init``: PyTorch's linear default (CRATE) or MAE's xavier-uniform with zero biases.
    """

    dim: int
    heads: int
    dim_head: int
    form: str = "published"
    out_bias: bool = True
    causal: bool = False
    tied_scale: float = 0.0
    norm_eps: float = LAYERNORM_EPS
    init: str = "pytorch"

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_head

    @property
    def project_out(self) -> bool:
        """The published form omits its output projection when ``heads == 1`` and ``dim_head == dim``."""
        return self.form == "published" and not (self.heads == 1 and self.dim_head == self.dim)


def shapes(spec: AttentionSpec) -> dict:
    d, inner = spec.dim, spec.inner_dim
    xavier = spec.init == "xavier"
    out = layernorm(d, "attn_norm.")
    out["attn.qkv"] = Param((inner, d), xavier_uniform(d, inner) if xavier else linear_default(d))
    if spec.project_out:
        out["attn.out.weight"] = Param((d, inner), xavier_uniform(inner, d) if xavier else linear_default(inner))
        if spec.out_bias:
            out["attn.out.bias"] = Param((d,), zeros if xavier else linear_default(inner))
    return out


class BranchCache(NamedTuple):
    norm: LayerNormCache
    mssa: object  # MSSACache, TiedMSSACache or HeadsCache (no projection)
    form: str  # "projected", "tied" or "heads"


def branch_forward(z, params: dict, spec: AttentionSpec):
    """``MSSA(LN(Z))``: z (B, N, d) → (B, N, d), the branch without the residual."""
    y, norm_cache = layernorm_forward(z, params["attn_norm.weight"], params["attn_norm.bias"], spec.norm_eps)
    W_qkv = params["attn.qkv"]
    if spec.form == "tied":
        out, cache = mssa_tied_forward(y, W_qkv, spec.tied_scale, heads=spec.heads, causal=spec.causal)
        return out, BranchCache(norm_cache, cache, "tied")
    if spec.project_out:
        out, cache = mssa_forward(y, W_qkv, params["attn.out.weight"], params.get("attn.out.bias"),
                                  heads=spec.heads, causal=spec.causal)
        return out, BranchCache(norm_cache, cache, "projected")
    out, cache = attention_heads_forward(y, W_qkv, spec.heads, causal=spec.causal)
    return out, BranchCache(norm_cache, cache, "heads")


def branch_backward(dout, cache: BranchCache):
    """Returns ``(dz, grads)`` for ``dout`` (B, N, d)."""
    grads = {}
    if cache.form == "projected":
        dy, grads["attn.qkv"], grads["attn.out.weight"], db_out = mssa_backward(dout, cache.mssa)
        if db_out is not None:
            grads["attn.out.bias"] = db_out
    elif cache.form == "tied":
        dy, grads["attn.qkv"] = mssa_tied_backward(dout, cache.mssa)
    else:
        dy, grads["attn.qkv"] = attention_heads_backward(dout, cache.mssa)
    dz, grads["attn_norm.weight"], grads["attn_norm.bias"] = layernorm_backward(dy, cache.norm)
    return dz, grads


def forward(z, params: dict, spec: AttentionSpec):
    """``Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))``: z (B, N, d) → (B, N, d)."""
    branch, cache = branch_forward(z, params, spec)
    branch += z
    return branch, cache


def backward(dz_half, cache: BranchCache):
    """Returns ``(dz, grads)``: the residual adds ``dz_half`` to the branch's input gradient."""
    dz, grads = branch_backward(dz_half, cache)
    dz += dz_half
    return dz, grads


def heads_cache(cache: BranchCache):
    """The :class:`whitebox.layers.mssa.HeadsCache` inside (its ``x`` is LN(Z), its ``attn`` the maps)."""
    return cache.mssa if cache.form == "heads" else cache.mssa.heads
