"""CRATE: the white-box transformer classifier, exactly as the published PyTorch CRATE.

Each layer is one step of alternating minimisation of the sparse rate reduction objective
(CRATE JMLR eqs. 2, 14, 6):

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))          compression against the subspaces U^ℓ
    Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}) | D^ℓ)      sparsification against the dictionary D^ℓ (no residual)

after the patch embedding ``patchify → LN → Linear → LN``, a cls token and a learned position
embedding; the head is ``LN → Linear`` on the cls token (or the mean token).

Public surface::

    cfg = Config(image_size=32, patch_size=4, channels=3, num_classes=10, dim=192, depth=12, heads=3, dim_head=64)
    params = init(cfg, seed=0)                 # name -> array
    logits, cache = forward(params, images, cfg)
    grads = backward(dlogits, cache)           # same keys and shapes as params
    sd = to_torch_state_dict(params, cfg)      # official PyTorch names -> NumPy arrays
    params = from_torch_state_dict(sd, cfg)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..backend import TRAIN_DTYPE, get_xp
from ..init import kaiming_uniform, layernorm_default, linear_default
from ..layers.embedding import (
    PatchEmbedCache,
    patch_embed_backward,
    patch_embed_forward,
    prepend_cls_backward,
    prepend_cls_forward,
)
from ..layers.ista import ISTACache, ista_backward, ista_forward
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.pooling import POOLS
from .blocks import AttentionCache, attention_sublayer_backward, attention_sublayer_forward, head_backward, head_forward
from .checks import check_images, check_params, positive_int
from .common import HEAD_TORCH_NAMES, attention_torch_names, params_from_state_dict, state_dict_from_params

MSSA_FORMS = ("published", "tied")


@dataclass(frozen=True)
class Config:
    """A CRATE classifier's hyper-parameters (defaults: the paper's η = λ = 0.1, cls pooling).

    ``mssa="tied"`` selects the paper's form of MSSA (output through the subspaces, JMLR eq. 14)
    with the step ``c = tied_kappa · dim_head / (N tied_eps²)``; ``tied_eps`` is ε, not ε².
    """

    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    num_classes: int = 10
    dim: int = 192
    depth: int = 12
    heads: int = 3
    dim_head: int = 64
    ista_step: float = 0.1  # η
    ista_lambd: float = 0.1  # λ
    pool: str = "cls"
    mssa: str = "published"
    tied_kappa: float = 0.5
    tied_eps: float = 1.0

    def __post_init__(self):
        for name in ("image_size", "patch_size", "channels", "num_classes", "dim", "depth", "heads", "dim_head"):
            positive_int(name, getattr(self, name))
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.mssa not in MSSA_FORMS:
            raise ValueError(f"mssa must be one of {MSSA_FORMS}, got {self.mssa!r}")
        for name in ("ista_step", "tied_kappa", "tied_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.ista_lambd >= 0:
            raise ValueError(f"ista_lambd must be >= 0, got {self.ista_lambd!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch_size**2

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_head

    @property
    def project_out(self) -> bool:
        """PyTorch CRATE omits the output projection when ``heads == 1`` and ``dim_head == dim``."""
        return self.mssa == "published" and not (self.heads == 1 and self.dim_head == self.dim)

    @property
    def tied_scale(self) -> float | None:
        """``c = κ p / (N ε²)`` of the tied form, None for the published form."""
        if self.mssa != "tied":
            return None
        return self.tied_kappa * self.dim_head / (self.num_tokens * self.tied_eps**2)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def _preset(dim, depth, heads, dim_head):
    def make(**overrides) -> Config:
        base = dict(image_size=224, patch_size=16, channels=3, num_classes=1000)
        return Config(**{**base, "dim": dim, "depth": depth, "heads": heads, "dim_head": dim_head, **overrides})

    return make


crate_tiny = _preset(384, 12, 6, 64)
crate_small = _preset(576, 12, 12, 48)
crate_base = _preset(768, 12, 12, 64)
crate_large = _preset(1024, 24, 16, 64)
PRESETS = {"tiny": crate_tiny, "small": crate_small, "base": crate_base, "large": crate_large}


def init(cfg: Config, seed: int = 0, *, dtype=TRAIN_DTYPE, device: str | None = None) -> dict:
    """Parameters initialised as the published code does, drawn on the host from ``seed``.

    Linear layers: PyTorch's default; ISTA dictionaries: kaiming-uniform (bound √(6/d));
    cls token and position embedding: N(0, 1); LayerNorms: ones and zeros.
    """
    rng = np.random.default_rng(seed)
    d = cfg.dim
    p = {}
    p["embed.norm_in.weight"], p["embed.norm_in.bias"] = layernorm_default(cfg.patch_dim)
    p["embed.proj.weight"], p["embed.proj.bias"] = linear_default(rng, d, cfg.patch_dim)
    p["embed.norm_out.weight"], p["embed.norm_out.bias"] = layernorm_default(d)
    p["cls_token"] = rng.standard_normal((1, 1, d))
    p["pos_embedding"] = rng.standard_normal((1, cfg.num_tokens, d))
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        p[pre + "attn_norm.weight"], p[pre + "attn_norm.bias"] = layernorm_default(d)
        p[pre + "attn.qkv"], _ = linear_default(rng, cfg.inner_dim, d, bias=False)
        if cfg.project_out:
            p[pre + "attn.out.weight"], p[pre + "attn.out.bias"] = linear_default(rng, d, cfg.inner_dim)
        p[pre + "ista_norm.weight"], p[pre + "ista_norm.bias"] = layernorm_default(d)
        p[pre + "ista.D"] = kaiming_uniform(rng, (d, d), fan_in=d)
    p["head_norm.weight"], p["head_norm.bias"] = layernorm_default(d)
    p["head.weight"], p["head.bias"] = linear_default(rng, cfg.num_classes, d)
    xp = get_xp(device)
    return {k: xp.asarray(v, dtype=dtype) for k, v in p.items()}


class LayerCache(NamedTuple):
    attention: AttentionCache
    norm: LayerNormCache
    ista: ISTACache


class CrateCache(NamedTuple):
    cfg: Config
    embed: PatchEmbedCache
    layers: list  # [LayerCache] per layer
    head: object  # blocks.HeadCache
    features: list | None  # per layer (Z^ℓ, Z^{ℓ+½}), when asked for


def forward(params: dict, images, cfg: Config, *, keep_features: bool = False):
    """Logits (B, classes) and the cache for :func:`backward`. images (B, C, H, W), float.

    With ``keep_features=True`` the cache also holds every layer's input ``Z^ℓ`` and midpoint
    ``Z^{ℓ+½}`` (see :func:`layer_features`).
    """
    check_images(images, cfg)
    check_params(params, shapes(cfg), images)
    z, embed_cache = patch_embed_forward(images, _sub(params, "embed."), cfg.patch_size)  # (B, n, d)
    z = prepend_cls_forward(z, params["cls_token"], params["pos_embedding"])  # (B, N, d)
    layers, features = [], ([] if keep_features else None)
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        z_in = z
        z, attn_cache = attention_sublayer_forward(z, params, pre, heads=cfg.heads, tied_scale=cfg.tied_scale)
        if keep_features:
            features.append((z_in, z))
        y, norm_cache = layernorm_forward(z, params[pre + "ista_norm.weight"], params[pre + "ista_norm.bias"])
        z, ista_cache = ista_forward(y, params[pre + "ista.D"], cfg.ista_step, cfg.ista_lambd)
        layers.append(LayerCache(attn_cache, norm_cache, ista_cache))
    logits, head_cache = head_forward(z, params, cfg.pool)
    return logits, CrateCache(cfg, embed_cache, layers, head_cache, features)


def backward(dlogits, cache: CrateCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (B, classes)."""
    cfg = cache.cfg
    grads = {}
    dz = head_backward(dlogits, cache.head, grads)  # (B, N, d)
    for i in reversed(range(cfg.depth)):
        pre = f"layers.{i}."
        layer = cache.layers[i]
        dy, grads[pre + "ista.D"] = ista_backward(dz, layer.ista)
        dz, grads[pre + "ista_norm.weight"], grads[pre + "ista_norm.bias"] = layernorm_backward(dy, layer.norm)
        dz = attention_sublayer_backward(dz, layer.attention, pre, grads)
    dtokens, grads["cls_token"], grads["pos_embedding"] = prepend_cls_backward(dz)
    _, embed_grads = patch_embed_backward(dtokens, cache.embed, cfg.patch_size)
    grads.update({"embed." + k: v for k, v in embed_grads.items()})
    return grads


def layer_features(cache: CrateCache) -> dict:
    """Per-layer measurements kept by ``forward(..., keep_features=True)``.

    Returns lists over layers: ``inputs`` (Z^ℓ), ``midpoints`` (Z^{ℓ+½}), ``outputs`` (Z^{ℓ+1},
    the ISTA codes), ``attention`` (B, heads, N, N) maps.
    """
    if cache.features is None:
        raise ValueError("the cache holds no features: call forward(..., keep_features=True)")
    return {
        "inputs": [f[0] for f in cache.features],
        "midpoints": [f[1] for f in cache.features],
        "outputs": [layer.ista.out for layer in cache.layers],
        "attention": [layer.attention.mssa.heads.attn for layer in cache.layers],
    }


def _sub(params: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def torch_names(cfg: Config) -> dict:
    """whitebox parameter name -> official PyTorch CRATE state-dict name (REFERENCE §5)."""
    names = {
        "embed.norm_in.weight": "to_patch_embedding.1.weight",
        "embed.norm_in.bias": "to_patch_embedding.1.bias",
        "embed.proj.weight": "to_patch_embedding.2.weight",
        "embed.proj.bias": "to_patch_embedding.2.bias",
        "embed.norm_out.weight": "to_patch_embedding.3.weight",
        "embed.norm_out.bias": "to_patch_embedding.3.bias",
        **HEAD_TORCH_NAMES,
    }
    for i in range(cfg.depth):
        ours, theirs = f"layers.{i}.", f"transformer.layers.{i}."
        names.update(attention_torch_names(i, project_out=cfg.project_out, out_bias=True))
        names[ours + "ista_norm.weight"] = theirs + "1.norm.weight"
        names[ours + "ista_norm.bias"] = theirs + "1.norm.bias"
        names[ours + "ista.D"] = theirs + "1.fn.weight"
    return names


def to_torch_state_dict(params: dict, cfg: Config) -> dict:
    """The parameters under the official PyTorch names, as NumPy arrays (no PyTorch needed).

    Shapes are already PyTorch's, so ``torch_model.load_state_dict({k: torch.from_numpy(v) …})``
    loads them directly.
    """
    if cfg.mssa != "published":
        raise ValueError("only the published MSSA form has a PyTorch CRATE counterpart (cfg.mssa='published')")
    return state_dict_from_params(params, torch_names(cfg))


def from_torch_state_dict(state_dict: dict, cfg: Config, *, dtype=None, device: str | None = None) -> dict:
    """Parameters from an official PyTorch CRATE state dict (arrays or tensors with ``.numpy()``).

    Missing, unexpected or mis-shaped entries raise ``ValueError`` naming them.
    """
    return params_from_state_dict(state_dict, torch_names(cfg), shapes(cfg), dtype=dtype, device=device)


def shapes(cfg: Config) -> dict:
    """Every parameter's shape, computed from the config without allocating."""
    d, P, inner = cfg.dim, cfg.patch_dim, cfg.inner_dim
    out = {
        "embed.norm_in.weight": (P,), "embed.norm_in.bias": (P,),
        "embed.proj.weight": (d, P), "embed.proj.bias": (d,),
        "embed.norm_out.weight": (d,), "embed.norm_out.bias": (d,),
        "cls_token": (1, 1, d), "pos_embedding": (1, cfg.num_tokens, d),
        "head_norm.weight": (d,), "head_norm.bias": (d,),
        "head.weight": (cfg.num_classes, d), "head.bias": (cfg.num_classes,),
    }
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        out[pre + "attn_norm.weight"] = out[pre + "attn_norm.bias"] = (d,)
        out[pre + "attn.qkv"] = (inner, d)
        if cfg.project_out:
            out[pre + "attn.out.weight"], out[pre + "attn.out.bias"] = (d, inner), (d,)
        out[pre + "ista_norm.weight"] = out[pre + "ista_norm.bias"] = (d,)
        out[pre + "ista.D"] = (d, d)
    return out


def num_params(cfg: Config) -> int:
    """The number of scalar parameters, from :func:`shapes`."""
    return int(sum(np.prod(s) for s in shapes(cfg).values()))
