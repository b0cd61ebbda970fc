"""The standard pre-norm transformer block: ViT's, and GPT's with the causal mask (docs/reference.md §9).

    Z^{ℓ+½} = Z^ℓ + MHSA(LN(Z^ℓ))                  (free q, k, v projections with biases)
    Z^{ℓ+1} = Z^{ℓ+½} + W₂ GELU(W₁ LN(Z^{ℓ+½}) + b₁) + b₂     (MLP of width r d, r = mlp_ratio)

The baseline every CRATE paper compares against. Where CRATE's layer compresses against subspaces
``U`` (MSSA, ``q = k = v = x U``) and sparsifies against a dictionary ``D`` (ISTA, a ReLU code of
width d), this block has three free attention maps and a dense MLP; its "codes" (reported by
:func:`features`) are the GELU activations ``(B, N, r d)``.

Initialisation: PyTorch's ``nn.Linear`` default ``U(±1/√fan_in)`` for every weight and bias (the
default of lucidrains' vit-pytorch, from which the official CRATE code was written, and the init
CRATE's own linear maps use here), so that a comparison of the two differs in the block only.

Local parameter names: ``attn_norm.weight/bias`` (d,), ``attn.qkv.weight`` (3 K p, d),
``attn.qkv.bias`` (3 K p,), ``attn.out.weight`` (d, K p), ``attn.out.bias`` (d,),
``mlp_norm.weight/bias`` (d,), ``mlp.fc1.weight`` (r d, d), ``mlp.fc1.bias`` (r d,),
``mlp.fc2.weight`` (d, r d), ``mlp.fc2.bias`` (d,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..layers.activations import GeluCache, gelu_backward, gelu_forward
from ..layers.layernorm import LAYERNORM_EPS, LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache, linear_backward, linear_forward
from ..layers.mhsa import MHSACache, mhsa_backward, mhsa_forward
from .params import Param, layernorm, linear_default


@dataclass(frozen=True)
class TransformerLayerSpec:
    dim: int  # d
    heads: int  # K
    dim_head: int  # p
    mlp_ratio: int = 4  # r: the MLP's hidden width is r d
    causal: bool = False  # GPT: token t attends to tokens ≤ t
    norm_eps: float = LAYERNORM_EPS

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_head


def shapes(spec: TransformerLayerSpec) -> dict:
    d, inner, hidden = spec.dim, spec.inner_dim, spec.mlp_ratio * spec.dim
    return {
        **layernorm(d, "attn_norm."),
        "attn.qkv.weight": Param((3 * inner, d), linear_default(d)),
        "attn.qkv.bias": Param((3 * inner,), linear_default(d)),
        "attn.out.weight": Param((d, inner), linear_default(inner)),
        "attn.out.bias": Param((d,), linear_default(inner)),
        **layernorm(d, "mlp_norm."),
        "mlp.fc1.weight": Param((hidden, d), linear_default(d)),
        "mlp.fc1.bias": Param((hidden,), linear_default(d)),
        "mlp.fc2.weight": Param((d, hidden), linear_default(hidden)),
        "mlp.fc2.bias": Param((d,), linear_default(hidden)),
    }


class TransformerLayerCache(NamedTuple):
    attn_norm: LayerNormCache  # its output LN(Z^ℓ) is the MHSA cache's input
    attention: MHSACache
    mlp_norm: LayerNormCache
    fc1: LinearCache  # its x is LN(Z^{ℓ+½})
    gelu: GeluCache
    fc2: LinearCache  # its x is GELU(h), the hidden activations (B, N, r d)
    midpoint: object  # Z^{ℓ+½} when asked for, else None


def forward(z, params: dict, spec: TransformerLayerSpec, keep: bool = False):
    """``Z^{ℓ+1}`` (B, N, d) for z (B, N, d) (the module docstring's two residual steps)."""
    y, attn_norm = layernorm_forward(z, params["attn_norm.weight"], params["attn_norm.bias"], spec.norm_eps)
    a, attention = mhsa_forward(y, params["attn.qkv.weight"], params["attn.qkv.bias"], params["attn.out.weight"],
                                params["attn.out.bias"], heads=spec.heads, causal=spec.causal)  # (B, N, d)
    z_half = a
    z_half += z  # Z^{ℓ+½}
    y, mlp_norm = layernorm_forward(z_half, params["mlp_norm.weight"], params["mlp_norm.bias"], spec.norm_eps)
    h, fc1 = linear_forward(y, params["mlp.fc1.weight"], params["mlp.fc1.bias"])  # (B, N, r d)
    g, gelu = gelu_forward(h)  # (B, N, r d)
    out, fc2 = linear_forward(g, params["mlp.fc2.weight"], params["mlp.fc2.bias"])  # (B, N, d)
    out += z_half
    return out, TransformerLayerCache(attn_norm, attention, mlp_norm, fc1, gelu, fc2, z_half if keep else None)


def backward(dout, cache: TransformerLayerCache):
    """Returns ``(dz, grads)`` under the local names of :func:`shapes`."""
    grads = {}
    # forward: out = z_half + fc2(gelu(fc1(LN(z_half))))
    dg, grads["mlp.fc2.weight"], grads["mlp.fc2.bias"] = linear_backward(dout, cache.fc2)
    dh = gelu_backward(dg, cache.gelu)
    dy, grads["mlp.fc1.weight"], grads["mlp.fc1.bias"] = linear_backward(dh, cache.fc1)
    dz_half, grads["mlp_norm.weight"], grads["mlp_norm.bias"] = layernorm_backward(dy, cache.mlp_norm)
    dz_half += dout
    # forward: z_half = z + MHSA(LN(z))
    dy, grads["attn.qkv.weight"], grads["attn.qkv.bias"], grads["attn.out.weight"], grads["attn.out.bias"] = \
        mhsa_backward(dz_half, cache.attention)
    dz, grads["attn_norm.weight"], grads["attn_norm.bias"] = layernorm_backward(dy, cache.attn_norm)
    dz += dz_half
    return dz, grads


def features(cache: TransformerLayerCache) -> dict:
    """The measurements of :func:`whitebox.blocks.stack.layer_features`; ``codes`` are the GELU
    activations (B, N, r d), ``sparse_inputs`` the MLP's input LN(Z^{ℓ+½})."""
    return {"attention_inputs": cache.attention.in_proj.x, "midpoints": cache.midpoint,
            "sparse_inputs": cache.fc1.x, "codes": cache.fc2.x, "attention": cache.attention.attn}
