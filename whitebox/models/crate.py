"""CRATE: the white-box transformer classifier, as the published PyTorch CRATE.

Each layer is one step of alternating minimisation of the sparse rate reduction objective
(CRATE JMLR eqs. 2, 14, 6), the block :mod:`whitebox.blocks.crate_layer`:

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))          compression against the subspaces U^ℓ
    Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}) | D^ℓ)      sparsification against the dictionary D^ℓ (no residual)

after the patch embedding ``patchify → LN → Linear → LN``, a cls token and a learned position
embedding; the head is ``LN → Linear`` on the cls token (or the mean token).

With ``block="transformer"`` the same embedding, cls token, positions and head wrap the standard
pre-norm transformer block instead (:mod:`whitebox.blocks.transformer_layer`): that is the ViT
baseline (``--model vit``), with no PyTorch CRATE counterpart.

Public surface::

    cfg = Config(image_size=32, patch_size=4, channels=3, num_classes=10, dim=192, depth=12, heads=3, dim_head=64)
    params = init(cfg, seed=0)                 # name -> array
    logits, cache = forward(params, images, cfg)
    grads = backward(dlogits, cache)           # same keys and shapes as params
    sd = to_torch_state_dict(params, cfg)      # official PyTorch names -> NumPy arrays
    params = from_torch_state_dict(sd, cfg)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from ..blocks import BLOCKS, crate_layer, head, stack, transformer_layer
from ..blocks.attention import MSSA_FORMS, AttentionSpec
from ..blocks.crate_layer import CrateLayerSpec
from ..blocks.transformer_layer import TransformerLayerSpec
from ..blocks.params import Param, layernorm, linear_default, local, model_parameters, normal, prefixed
from ..layers.embedding import (
    patch_embed_backward,
    patch_embed_forward,
    prepend_cls_forward,
)
from ..layers.mssa import subspaces
from ..layers.pooling import POOLS
from .checks import check_crate_block, check_images, check_params
from .common import (
    HEAD_TORCH_NAMES,
    ClassifierCache,
    classifier_trunk_backward,
    attention_torch_names,
    params_from_state_dict,
    state_dict_from_params,
)
from .config import ImageConfig


@dataclass(frozen=True)
class Config(ImageConfig):
    """A CRATE classifier's hyper-parameters (defaults: the paper's η = λ = 0.1, cls pooling).

    ``mssa="tied"`` selects the paper's form of MSSA (output through the subspaces, JMLR eq. 14)
    with the step ``c = tied_kappa · dim_head / (N tied_eps²)``; ``tied_eps`` is ε, not ε².
    ``block="transformer"`` makes it the ViT baseline (MHSA and an MLP of width ``mlp_ratio · dim``;
    ``mssa``, the ISTA steps and the tied fields are then unused).
    """

    CHOICES = {"pool": POOLS, "mssa": MSSA_FORMS, "block": BLOCKS}

    num_classes: int = 10
    pool: str = "cls"
    mssa: str = "published"
    tied_kappa: float = 0.5
    tied_eps: float = 1.0
    block: str = "crate"
    mlp_ratio: int = 4

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1

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


def layer_block(cfg: Config) -> tuple[ModuleType, object]:
    """``(block module, spec)``: the block every layer of ``cfg`` is."""
    if cfg.block == "transformer":
        return transformer_layer, TransformerLayerSpec(cfg.dim, cfg.heads, cfg.dim_head, cfg.mlp_ratio)
    return crate_layer, layer_spec(cfg)


def layer_spec(cfg: Config) -> CrateLayerSpec:
    """The CRATE layer of ``cfg`` (``block="crate"``)."""
    attention = AttentionSpec(cfg.dim, cfg.heads, cfg.dim_head, form=cfg.mssa, tied_scale=cfg.tied_scale or 0.0)
    return CrateLayerSpec(attention, cfg.ista_step, cfg.ista_lambd)


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


def _embed_described(cfg: Config) -> dict:
    """The patch embedding's parameters under its local names (:func:`whitebox.layers.embedding.patch_embed_forward`)."""
    d, P = cfg.dim, cfg.patch_dim
    return {**layernorm(P, "norm_in."), "proj.weight": Param((d, P), linear_default(P)),
            "proj.bias": Param((d,), linear_default(P)), **layernorm(d, "norm_out.")}


def describe(cfg: Config) -> dict:
    """name -> Param, in the order ``init`` draws them (the published code's).

    Linear layers: PyTorch's default; ISTA dictionaries: kaiming-uniform (bound √(6/d));
    cls token and position embedding: N(0, 1); LayerNorms: ones and zeros.
    """
    d = cfg.dim
    return {
        **prefixed("embed.", _embed_described(cfg)),
        "cls_token": Param((1, 1, d), normal()),
        "pos_embedding": Param((1, cfg.num_tokens, d), normal()),
        **stack.shapes(*layer_block(cfg), cfg.depth),
        **head.shapes(d, cfg.num_classes),
    }


shapes, num_params, init = model_parameters(describe)


def forward(params: dict, images, cfg: Config, *, keep_features: bool = False):
    """Logits (B, classes) and the cache for :func:`backward`. images (B, C, H, W), float.

    With ``keep_features=True`` the cache also holds what :func:`layer_features` reports.
    """
    check_images(images, cfg)
    check_params(params, shapes(cfg), images)
    z, embed = patch_embed_forward(images, local(params, "embed.", _embed_described(cfg)), cfg.patch_size)  # (B, n, d)
    z, cls = prepend_cls_forward(z, params["cls_token"], params["pos_embedding"])  # (B, N, d)
    z, layers = stack.forward(z, params, *layer_block(cfg), cfg.depth, keep=keep_features)
    logits, head_cache = head.forward(z, params, cfg.pool)  # (B, classes)
    return logits, ClassifierCache(cfg, embed, cls, layers, head_cache)


def backward(dlogits, cache: ClassifierCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (B, classes)."""
    dtokens, grads = classifier_trunk_backward(dlogits, cache)  # (B, n, d)
    _, embed_grads = patch_embed_backward(dtokens, cache.embed)
    grads.update(prefixed("embed.", embed_grads))
    return grads


def layer_features(cache: ClassifierCache) -> dict:
    """Per-layer measurements kept by ``forward(..., keep_features=True)``: the keys of
    :func:`whitebox.blocks.stack.layer_features` (for CRATE ``codes`` and ``outputs`` coincide)."""
    return stack.layer_features(cache.stack)


def layer_subspaces(params: dict, layer: int, cfg: Config):
    """The subspace bases ``U`` (K, d, p) of layer ``layer``'s MSSA."""
    check_crate_block(cfg, "the subspaces U")
    return subspaces(params[f"layers.{layer}.attn.qkv"], cfg.heads)


def layer_dictionary(params: dict, layer: int, cfg: Config):
    """The ISTA dictionary ``D`` (d, d) of layer ``layer``."""
    check_crate_block(cfg, "the dictionary D")
    return params[f"layers.{layer}.ista.D"]


def torch_names(cfg: Config) -> dict:
    """whitebox parameter name -> official PyTorch CRATE state-dict name (docs/reference.md §5)."""
    check_crate_block(cfg, "the official PyTorch CRATE names")
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
