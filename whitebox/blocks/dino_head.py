"""DINO's projection head (Caron et al. 2021, §3.1, ``DINOHead``), and SimDINO's (the same without prototypes).

From the backbone's feature ``h`` (B, d), the pooled and normalised token of
:func:`whitebox.models.common.represent`::

    u = GELU(h W₁ᵀ + b₁)                      (B, hidden)
    u = GELU(u W₂ᵀ + b₂)                      (B, hidden)
    z = ℓ2-normalise(u W₃ᵀ + b₃)              (B, bottleneck), on the unit sphere
    logits = z (V / ‖V‖_rows)ᵀ                (B, K), cosines with K unit prototypes (DINO only)

``prototypes=0`` stops at ``z``: SimDINO's head (Wu et al. 2025, §3), whose loss compares the unit
vectors ``z`` directly. Parameter names: ``dino_head.mlp.{0,1,2}.weight/bias`` and
``dino_head.prototypes`` (K, bottleneck) (PyTorch's ``last_layer.weight_v``; the gain ``weight_g`` is
fixed to 1, ``norm_last_layer=True``). Initialisation: the MLP's weights N(0, 0.02²) and zero biases
(DINO draws a normal truncated at ±2σ, which changes nothing at this scale); the prototypes
``nn.Linear``'s default.
"""

from __future__ import annotations

from typing import NamedTuple

from ..layers.activations import GeluCache, gelu_backward, gelu_forward
from ..layers.l2norm import L2NormCache, l2_normalize_backward, l2_normalize_forward
from ..layers.linear import LinearCache, linear_backward, linear_forward
from ..layers.weightnorm import WeightNormCache, weightnorm_linear_backward, weightnorm_linear_forward
from .params import Param, linear_default, normal, zeros

PREFIX = "dino_head."


class DinoHeadSpec(NamedTuple):
    dim: int  # d, the backbone's feature width
    hidden: int  # the MLP's width
    bottleneck: int  # the width of z
    prototypes: int  # K; 0: no prototypes (SimDINO)


def shapes(spec: DinoHeadSpec) -> dict:
    """name -> Param of the head, under ``dino_head.``."""
    widths = [spec.dim, spec.hidden, spec.hidden, spec.bottleneck]
    out = {}
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        out[f"{PREFIX}mlp.{i}.weight"] = Param((fan_out, fan_in), normal(0.02))
        out[f"{PREFIX}mlp.{i}.bias"] = Param((fan_out,), zeros)
    if spec.prototypes:
        out[PREFIX + "prototypes"] = Param((spec.prototypes, spec.bottleneck), linear_default(spec.bottleneck))
    return out


class DinoHeadCache(NamedTuple):
    linears: tuple[LinearCache, ...]  # the three linear maps
    gelus: tuple[GeluCache, ...]  # the two GELUs
    sphere: L2NormCache  # the normalisation of the bottleneck
    prototypes: WeightNormCache | None  # None without prototypes


def forward(h, params: dict):
    """h (B, d) → the logits (B, K), or z (B, bottleneck) without prototypes; and the cache."""
    linears, gelus = [], []
    u = h
    for i in range(3):
        u, cache = linear_forward(u, params[f"{PREFIX}mlp.{i}.weight"], params[f"{PREFIX}mlp.{i}.bias"])
        linears.append(cache)
        if i < 2:
            u, cache = gelu_forward(u)  # (B, hidden)
            gelus.append(cache)
    z, sphere = l2_normalize_forward(u)  # (B, bottleneck), unit rows
    if PREFIX + "prototypes" not in params:
        return z, DinoHeadCache(tuple(linears), tuple(gelus), sphere, None)
    logits, prototypes = weightnorm_linear_forward(z, params[PREFIX + "prototypes"])  # (B, K)
    return logits, DinoHeadCache(tuple(linears), tuple(gelus), sphere, prototypes)


def backward(dout, cache: DinoHeadCache):
    """Returns ``(dh, grads)``: the gradient for the features (B, d) and the head's parameters."""
    grads = {}
    dz = dout
    if cache.prototypes is not None:
        dz, grads[PREFIX + "prototypes"] = weightnorm_linear_backward(dout, cache.prototypes)
    du = l2_normalize_backward(dz, cache.sphere)  # (B, bottleneck)
    for i in reversed(range(3)):  # the forward's loop, walked backwards
        if i < 2:
            du = gelu_backward(du, cache.gelus[i])
        du, grads[f"{PREFIX}mlp.{i}.weight"], grads[f"{PREFIX}mlp.{i}.bias"] = linear_backward(du, cache.linears[i])
    return du, grads
