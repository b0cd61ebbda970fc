"""CRATE-alpha: CRATE with an overcomplete, decoupled, residual sparse-coding block (CRATE-alpha §3).

Each layer (CRATE-alpha eqs. 4-5 and 7-12, as the published PyTorch port of the JAX code):

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                  output projection without bias
    Z^{ℓ+1} = Z^{ℓ+½} + D̂ A_T,   A_T = ISTA-OC(LN(Z^{ℓ+½}) | D)   (T = 2 steps from A₀ = 0)

after a convolutional patch embedding (kernel = stride = patch, with bias), a cls token and a
learned position embedding; the head is ``LN → Linear`` on the cls token.

The three modifications are switches of this one model, so the paper's ablation (Fig. 1 and 7:
CRATE, +O, +O+D, +O+D+R) is four configs, see :func:`ablation_configs`:

* ``overcomplete`` (C): ``D ∈ R^{d×Cd}``; C = 1 is a square dictionary.
* ``decoupled``: a separate decoder ``D̂`` (``fn.D1``); otherwise ``D̂ = D`` (eq. 10) and there is no
  ``D1`` parameter.
* ``residual``: ``Z^{ℓ+1} = Z^{ℓ+½} + ODL(LN(Z^{ℓ+½}))`` (eq. 12) instead of ``ODL(LN(Z^{ℓ+½}))``.

Vanilla CRATE in this family. CRATE's ISTA (eq. 6) returns the code ``A₁`` itself, not ``D A₁``:
one step from ``A₀ = Z`` with a square ``D``, and its output is the next layer's tokens. No choice
of ``D̂`` among {D, a learned D1} reproduces that, so the family has a fourth switch, ``decode``:
with ``decode=False`` the block's output is the code ``A_T`` (``D̂ = I``, no parameter). The
``"crate"`` ablation config is ``overcomplete=1, odl_steps=1, ista_start="input", decode=False,
decoupled=False, residual=False``, whose sparse block is exactly
:func:`whitebox.layers.ista.ista_forward` of ``LN(Z^{ℓ+½})`` (tested bit for bit). The rest of that
model is CRATE-alpha's (conv embedding, bias-free output projection, LayerNorm eps 1e-6): it is
the paper's ablation baseline, not :mod:`whitebox.models.crate` (which has the LN-Linear-LN patch
embedding and an output bias).

Details taken from the published PyTorch port (``torch_inference/model/crate_alpha.py``):
the LayerNorms before MSSA and ODL use eps 1e-6 (``norm_eps``), the head's LayerNorm PyTorch's
default 1e-5; ``D`` and ``D1`` are drawn by ``kaiming_uniform_`` on a (d, Cd) tensor, whose
fan_in is ``Cd`` (bound ``√(6/(Cd))``); the conv has PyTorch's ``Conv2d`` default init; cls token
and position embedding are N(0, 1). (The JAX training code initialises differently: flax's
kaiming-uniform takes fan_in = d for a (d, 4d) kernel, position embedding N(0, 0.02²), cls token
N(0, 1e-12). Initialisation does not affect loading published weights.)

Public surface (as :mod:`whitebox.models.crate`)::

    cfg = crate_alpha_base()                      # or Config(...), ablation_configs(cfg)["+O"]
    params = init(cfg, seed=0)
    logits, cache = forward(params, images, cfg)
    grads = backward(dlogits, cache)
    sd = to_torch_state_dict(params, cfg)         # official names: conv1.*, transformer.layers.i.1.fn.D …
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..backend import TRAIN_DTYPE, get_xp
from ..init import kaiming_uniform, layernorm_default, linear_default
from ..layers.embedding import (
    conv_patch_embed_backward,
    conv_patch_embed_forward,
    prepend_cls_backward,
    prepend_cls_forward,
)
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache
from ..layers.odl import ODLCache, odl_backward, odl_forward
from ..layers.pooling import POOLS
from .blocks import AttentionCache, attention_sublayer_backward, attention_sublayer_forward, head_backward, head_forward
from .checks import check_images, check_params, positive_int
from .common import HEAD_TORCH_NAMES, attention_torch_names, params_from_state_dict, state_dict_from_params

ISTA_STARTS = ("zero", "input")
PORT_NORM_EPS = 1e-6  # the port's PreNorm LayerNorm(dim, eps=1e-6) (flax's default)


@dataclass(frozen=True)
class Config:
    """A CRATE-alpha classifier's hyper-parameters; the defaults are the published block.

    ``overcomplete`` (C), ``decoupled``, ``residual``: the three modifications (module docstring).
    ``odl_steps`` (T): proximal steps; ``ista_start``: ``A₀ = 0`` (``"zero"``, the paper) or
    ``A₀ = Z`` (``"input"``, CRATE's ISTA; needs C = 1). ``decode=False`` makes the block output
    the codes ``A_T`` (vanilla CRATE; needs C = 1 and ``decoupled=False``). ``ista_step`` η and
    ``ista_lambd`` λ as in :class:`whitebox.models.crate.Config`. ``norm_eps``: eps of the two
    LayerNorms in each layer.
    """

    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    num_classes: int = 10
    dim: int = 192
    depth: int = 12
    heads: int = 3
    dim_head: int = 64
    overcomplete: int = 4  # C
    decoupled: bool = True
    residual: bool = True
    decode: bool = True
    odl_steps: int = 2  # T
    ista_start: str = "zero"
    ista_step: float = 0.1  # η
    ista_lambd: float = 0.1  # λ
    norm_eps: float = PORT_NORM_EPS
    pool: str = "cls"

    def __post_init__(self):
        for name in ("image_size", "patch_size", "channels", "num_classes", "dim", "depth", "heads", "dim_head",
                     "overcomplete", "odl_steps"):
            positive_int(name, getattr(self, name))
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        for name in ("decoupled", "residual", "decode"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.ista_start not in ISTA_STARTS:
            raise ValueError(f"ista_start must be one of {ISTA_STARTS}, got {self.ista_start!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        for name in ("ista_step", "norm_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.ista_lambd >= 0:
            raise ValueError(f"ista_lambd must be >= 0, got {self.ista_lambd!r}")
        if self.ista_start == "input" and self.overcomplete != 1:
            raise ValueError(f"ista_start='input' (A₀ = Z) needs overcomplete=1, got overcomplete={self.overcomplete}")
        if not self.decode and self.overcomplete != 1:
            raise ValueError(f"decode=False (codes as tokens) needs overcomplete=1, got overcomplete={self.overcomplete}")
        if not self.decode and self.decoupled:
            raise ValueError("decoupled=True needs decode=True (the decoder D1 decodes the codes)")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_head

    @property
    def code_dim(self) -> int:
        """``m = C d``, the number of dictionary atoms."""
        return self.overcomplete * self.dim

    @property
    def project_out(self) -> bool:
        """The port omits the output projection when ``heads == 1`` and ``dim_head == dim``."""
        return not (self.heads == 1 and self.dim_head == self.dim)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def _preset(dim, depth, heads):
    def make(**overrides) -> Config:
        base = dict(image_size=224, patch_size=16, channels=3, num_classes=1000)
        return Config(**{**base, "dim": dim, "depth": depth, "heads": heads, "dim_head": dim // heads, **overrides})

    return make


crate_alpha_tiny = _preset(192, 12, 3)
crate_alpha_small = _preset(576, 12, 12)
crate_alpha_base = _preset(768, 12, 12)
crate_alpha_large = _preset(1024, 24, 16)
crate_alpha_huge = _preset(1280, 32, 16)
PRESETS = {
    "tiny": crate_alpha_tiny,
    "small": crate_alpha_small,
    "base": crate_alpha_base,
    "large": crate_alpha_large,
    "huge": crate_alpha_huge,
}


def ablation_configs(base_cfg: Config) -> dict:
    """The paper's ablation (Fig. 1 / 7) as four configs sharing ``base_cfg``'s other fields.

    ``"crate"``: CRATE's ISTA (C = 1, one step from ``A₀ = Z``, codes as output, no residual);
    ``"+O"``: C = ``base_cfg.overcomplete``, ``base_cfg.odl_steps`` steps from ``A₀ = 0``,
    output ``D A_T``; ``"+O+D"``: decoupled ``D̂ A_T``; ``"+O+D+R"``: plus the residual (CRATE-alpha).
    """
    if base_cfg.overcomplete < 2:
        raise ValueError(f"the +O variants need base_cfg.overcomplete >= 2, got {base_cfg.overcomplete}")
    overcomplete = dict(ista_start="zero", decode=True)
    return {
        "crate": base_cfg.replace(overcomplete=1, odl_steps=1, ista_start="input", decode=False,
                                  decoupled=False, residual=False),
        "+O": base_cfg.replace(**overcomplete, decoupled=False, residual=False),
        "+O+D": base_cfg.replace(**overcomplete, decoupled=True, residual=False),
        "+O+D+R": base_cfg.replace(**overcomplete, decoupled=True, residual=True),
    }


def init(cfg: Config, seed: int = 0, *, dtype=TRAIN_DTYPE, device: str | None = None) -> dict:
    """Parameters initialised as the published PyTorch port does, drawn on the host from ``seed``.

    Conv: ``Conv2d``'s default (weight and bias ``U(±1/√(C p²))``); linear layers: PyTorch's
    default; ``D``, ``D1``: ``kaiming_uniform_`` of a (d, Cd) tensor, fan_in = Cd; cls token and
    position embedding: N(0, 1); LayerNorms: ones and zeros.
    """
    rng = np.random.default_rng(seed)
    d, m, P = cfg.dim, cfg.code_dim, cfg.patch_size
    p = {}
    weight, p["embed.conv.bias"] = linear_default(rng, d, cfg.channels * P * P)
    p["embed.conv.weight"] = weight.reshape(d, cfg.channels, P, P)
    p["cls_token"] = rng.standard_normal((1, 1, d))
    p["pos_embedding"] = rng.standard_normal((1, cfg.num_tokens, d))
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        p[pre + "attn_norm.weight"], p[pre + "attn_norm.bias"] = layernorm_default(d)
        p[pre + "attn.qkv"], _ = linear_default(rng, cfg.inner_dim, d, bias=False)
        if cfg.project_out:
            p[pre + "attn.out.weight"], _ = linear_default(rng, d, cfg.inner_dim, bias=False)
        p[pre + "odl_norm.weight"], p[pre + "odl_norm.bias"] = layernorm_default(d)
        p[pre + "odl.D"] = kaiming_uniform(rng, (d, m), fan_in=m)
        if cfg.decoupled:
            p[pre + "odl.D1"] = kaiming_uniform(rng, (d, m), fan_in=m)
    p["head_norm.weight"], p["head_norm.bias"] = layernorm_default(d)
    p["head.weight"], p["head.bias"] = linear_default(rng, cfg.num_classes, d)
    xp = get_xp(device)
    return {k: xp.asarray(v, dtype=dtype) for k, v in p.items()}


class LayerCache(NamedTuple):
    attention: AttentionCache
    norm: LayerNormCache
    odl: ODLCache


class CrateAlphaCache(NamedTuple):
    cfg: Config
    embed: LinearCache
    layers: list  # [LayerCache] per layer
    head: object  # blocks.HeadCache
    features: list | None  # per layer (Z^ℓ, Z^{ℓ+½}), when asked for


def _sparse_forward(z_half, params: dict, prefix: str, cfg: Config):
    """``Z^{ℓ+1} = [Z^{ℓ+½} +] D̂ A_T`` with ``A_T = ISTA-OC(LN(Z^{ℓ+½}) | D)`` (eqs. 10-12)."""
    y, norm_cache = layernorm_forward(z_half, params[prefix + "odl_norm.weight"], params[prefix + "odl_norm.bias"],
                                      cfg.norm_eps)
    D = params[prefix + "odl.D"]
    D_hat = params[prefix + "odl.D1"] if cfg.decoupled else (D if cfg.decode else None)
    start = y if cfg.ista_start == "input" else None
    out, odl_cache = odl_forward(y, D, D_hat, steps=cfg.odl_steps, step=cfg.ista_step, lambd=cfg.ista_lambd,
                                 start=start)
    if cfg.residual:
        out = z_half + out  # a new array: without a decoder ``out`` is the cached code A_T
    return out, norm_cache, odl_cache


def forward(params: dict, images, cfg: Config, *, keep_features: bool = False):
    """Logits (B, classes) and the cache for :func:`backward`. images (B, C, H, W), float.

    With ``keep_features=True`` the cache also holds every layer's input ``Z^ℓ`` and midpoint
    ``Z^{ℓ+½}`` (see :func:`layer_features`).
    """
    check_images(images, cfg)
    check_params(params, shapes(cfg), images)
    z, embed_cache = conv_patch_embed_forward(images, params["embed.conv.weight"], params["embed.conv.bias"],
                                              cfg.patch_size)  # (B, n, d)
    z = prepend_cls_forward(z, params["cls_token"], params["pos_embedding"])  # (B, N, d)
    layers, features = [], ([] if keep_features else None)
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        z_in = z
        z, attn_cache = attention_sublayer_forward(z, params, pre, heads=cfg.heads, norm_eps=cfg.norm_eps)  # Z^{ℓ+½}
        if keep_features:
            features.append((z_in, z))
        z, norm_cache, odl_cache = _sparse_forward(z, params, pre, cfg)  # Z^{ℓ+1}
        layers.append(LayerCache(attn_cache, norm_cache, odl_cache))
    logits, head_cache = head_forward(z, params, cfg.pool)
    return logits, CrateAlphaCache(cfg, embed_cache, layers, head_cache, features)


def backward(dlogits, cache: CrateAlphaCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (B, classes)."""
    cfg = cache.cfg
    grads = {}
    dz = head_backward(dlogits, cache.head, grads)  # (B, N, d): gradient of Z^{ℓ+1}
    for i in reversed(range(cfg.depth)):
        pre = f"layers.{i}."
        layer = cache.layers[i]
        dy, dD, dD_hat, dstart = odl_backward(dz, layer.odl)
        if dstart is not None:  # A₀ = LN(Z^{ℓ+½})
            dy += dstart
        if cfg.decoupled:
            grads[pre + "odl.D1"] = dD_hat
        elif dD_hat is not None:  # tied decoder D̂ = D
            dD += dD_hat
        grads[pre + "odl.D"] = dD
        dz_half, grads[pre + "odl_norm.weight"], grads[pre + "odl_norm.bias"] = layernorm_backward(dy, layer.norm)
        if cfg.residual:
            dz_half += dz
        dz = attention_sublayer_backward(dz_half, layer.attention, pre, grads)
    dtokens, grads["cls_token"], grads["pos_embedding"] = prepend_cls_backward(dz)
    weight_shape = (cfg.dim, cfg.channels, cfg.patch_size, cfg.patch_size)
    image_shape = (cfg.channels, cfg.image_size, cfg.image_size)
    _, grads["embed.conv.weight"], grads["embed.conv.bias"] = conv_patch_embed_backward(
        dtokens, cache.embed, weight_shape, image_shape, cfg.patch_size
    )
    return grads


def layer_features(cache: CrateAlphaCache) -> dict:
    """Per-layer measurements kept by ``forward(..., keep_features=True)``.

    Returns lists over layers: ``inputs`` (Z^ℓ), ``midpoints`` (Z^{ℓ+½}), ``outputs`` (the sparse
    codes ``A_T`` (B, N, Cd) of the ODL block, the quantity whose sparsity the papers measure;
    unlike CRATE these are not the next layer's input ``Z^{ℓ+1}`` unless ``decode`` and
    ``residual`` are off), ``attention`` (B, heads, N, N) maps.
    """
    if cache.features is None:
        raise ValueError("the cache holds no features: call forward(..., keep_features=True)")
    return {
        "inputs": [f[0] for f in cache.features],
        "midpoints": [f[1] for f in cache.features],
        "outputs": [layer.odl.codes[-1] for layer in cache.layers],
        "attention": [layer.attention.mssa.heads.attn for layer in cache.layers],
    }


def torch_names(cfg: Config) -> dict:
    """whitebox parameter name -> official CRATE-alpha PyTorch state-dict name (REFERENCE §6).

    ``fn.D1`` exists only for ``decoupled=True`` (the published block); the other ablation
    variants keep the same names for the parameters they have.
    """
    names = {
        "embed.conv.weight": "conv1.weight",
        "embed.conv.bias": "conv1.bias",
        **HEAD_TORCH_NAMES,
    }
    for i in range(cfg.depth):
        ours, theirs = f"layers.{i}.", f"transformer.layers.{i}."
        names.update(attention_torch_names(i, project_out=cfg.project_out, out_bias=False))
        names[ours + "odl_norm.weight"] = theirs + "1.norm.weight"
        names[ours + "odl_norm.bias"] = theirs + "1.norm.bias"
        names[ours + "odl.D"] = theirs + "1.fn.D"
        if cfg.decoupled:
            names[ours + "odl.D1"] = theirs + "1.fn.D1"
    return names


def to_torch_state_dict(params: dict, cfg: Config) -> dict:
    """The parameters under the official PyTorch names, as NumPy arrays (no PyTorch needed)."""
    return state_dict_from_params(params, torch_names(cfg))


def from_torch_state_dict(state_dict: dict, cfg: Config, *, dtype=None, device: str | None = None) -> dict:
    """Parameters from an official CRATE-alpha PyTorch state dict (arrays or tensors).

    Missing, unexpected or mis-shaped entries raise ``ValueError`` naming them.
    """
    return params_from_state_dict(state_dict, torch_names(cfg), shapes(cfg), dtype=dtype, device=device)


def shapes(cfg: Config) -> dict:
    """Every parameter's shape, computed from the config without allocating."""
    d, m, inner, P = cfg.dim, cfg.code_dim, cfg.inner_dim, cfg.patch_size
    out = {
        "embed.conv.weight": (d, cfg.channels, P, P), "embed.conv.bias": (d,),
        "cls_token": (1, 1, d), "pos_embedding": (1, cfg.num_tokens, d),
        "head_norm.weight": (d,), "head_norm.bias": (d,),
        "head.weight": (cfg.num_classes, d), "head.bias": (cfg.num_classes,),
    }
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        out[pre + "attn_norm.weight"] = out[pre + "attn_norm.bias"] = (d,)
        out[pre + "attn.qkv"] = (inner, d)
        if cfg.project_out:
            out[pre + "attn.out.weight"] = (d, inner)
        out[pre + "odl_norm.weight"] = out[pre + "odl_norm.bias"] = (d,)
        out[pre + "odl.D"] = (d, m)
        if cfg.decoupled:
            out[pre + "odl.D1"] = (d, m)
    return out


def num_params(cfg: Config) -> int:
    """The number of scalar parameters, from :func:`shapes`."""
    return int(sum(np.prod(s) for s in shapes(cfg).values()))
