"""CRATE-alpha: CRATE with an overcomplete, decoupled, residual sparse-coding block (CRATE-alpha §3).

Each layer (CRATE-alpha eqs. 4-5 and 7-12, as the published PyTorch port of the JAX code):

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                  output projection without bias
    Z^{ℓ+1} = Z^{ℓ+½} + D̂ A_T,   A_T = ISTA-OC(LN(Z^{ℓ+½}) | D)   (T = 2 steps from A₀ = 0)

after a convolutional patch embedding (kernel = stride = patch, with bias), a cls token and a
learned position embedding; the head is ``LN → Linear`` on the cls token.

The layer is the block :mod:`whitebox.blocks.crate_alpha_layer`. The three modifications are
switches of this one model, so the paper's ablation (Fig. 1 and 7:
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

from dataclasses import dataclass
from ..blocks import crate_alpha_layer, head, stack
from ..blocks.attention import AttentionSpec
from ..blocks.crate_alpha_layer import CrateAlphaLayerSpec
from ..blocks.params import Param, linear_default, model_parameters, normal
from ..layers.embedding import (
    conv_patch_embed_backward,
    conv_patch_embed_forward,
    prepend_cls_forward,
)
from ..layers.mssa import subspaces
from ..layers.pooling import POOLS
from .checks import check_images, check_params
from .common import (
    HEAD_TORCH_NAMES,
    ClassifierCache,
    classifier_trunk_backward,
    attention_torch_names,
    params_from_state_dict,
    state_dict_from_params,
)
from .config import ImageConfig

ISTA_STARTS = ("zero", "input")
PORT_NORM_EPS = 1e-6  # the port's PreNorm LayerNorm(dim, eps=1e-6) (flax's default)


@dataclass(frozen=True)
class Config(ImageConfig):
    """A CRATE-alpha classifier's hyper-parameters; the defaults are the published block.

    ``overcomplete`` (C), ``decoupled``, ``residual``: the three modifications (module docstring).
    ``odl_steps`` (T): proximal steps; ``ista_start``: ``A₀ = 0`` (``"zero"``, the paper) or
    ``A₀ = Z`` (``"input"``, CRATE's ISTA; needs C = 1). ``decode=False`` makes the block output
    the codes ``A_T`` (vanilla CRATE; needs C = 1 and ``decoupled=False``). ``ista_step`` η and
    ``ista_lambd`` λ as in :class:`whitebox.models.crate.Config`. ``norm_eps``: eps of the two
    LayerNorms in each layer.
    """

    CHOICES = {"pool": POOLS, "ista_start": ISTA_STARTS}

    num_classes: int = 10
    overcomplete: int = 4  # C
    decoupled: bool = True
    residual: bool = True
    decode: bool = True
    odl_steps: int = 2  # T
    ista_start: str = "zero"
    norm_eps: float = PORT_NORM_EPS
    pool: str = "cls"

    def __post_init__(self):
        super().__post_init__()
        if self.ista_start == "input" and self.overcomplete != 1:
            raise ValueError(f"ista_start='input' (A₀ = Z) needs overcomplete=1, got overcomplete={self.overcomplete}")
        if not self.decode and self.overcomplete != 1:
            raise ValueError(f"decode=False (codes as tokens) needs overcomplete=1, got overcomplete={self.overcomplete}")
        if not self.decode and self.decoupled:
            raise ValueError("decoupled=True needs decode=True (the decoder D1 decodes the codes)")

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1

    @property
    def code_dim(self) -> int:
        """``m = C d``, the number of dictionary atoms."""
        return self.overcomplete * self.dim

    @property
    def project_out(self) -> bool:
        """The port omits the output projection when ``heads == 1`` and ``dim_head == dim``."""
        return not (self.heads == 1 and self.dim_head == self.dim)


def layer_spec(cfg: Config) -> CrateAlphaLayerSpec:
    """The block every layer of ``cfg`` is: MSSA without output bias, both LayerNorms with ``norm_eps``."""
    attention = AttentionSpec(cfg.dim, cfg.heads, cfg.dim_head, out_bias=False, norm_eps=cfg.norm_eps)
    return CrateAlphaLayerSpec(attention, cfg.overcomplete, cfg.decoupled, cfg.residual, cfg.decode, cfg.odl_steps,
                               cfg.ista_start, cfg.ista_step, cfg.ista_lambd, cfg.norm_eps)


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


def describe(cfg: Config) -> dict:
    """name -> Param, in the order ``init`` draws them (the published PyTorch port's).

    Conv: ``Conv2d``'s default (weight and bias ``U(±1/√(C p²))``); linear layers: PyTorch's
    default; ``D``, ``D1``: ``kaiming_uniform_`` of a (d, Cd) tensor, fan_in = Cd; cls token and
    position embedding: N(0, 1); LayerNorms: ones and zeros.
    """
    d, P = cfg.dim, cfg.patch_size
    fan_in = cfg.channels * P * P
    return {
        "embed.conv.weight": Param((d, cfg.channels, P, P), linear_default(fan_in)),  # Conv2d's default
        "embed.conv.bias": Param((d,), linear_default(fan_in)),
        "cls_token": Param((1, 1, d), normal()),
        "pos_embedding": Param((1, cfg.num_tokens, d), normal()),
        **stack.shapes(crate_alpha_layer, layer_spec(cfg), cfg.depth),
        **head.shapes(d, cfg.num_classes),
    }


shapes, num_params, init = model_parameters(describe)


def forward(params: dict, images, cfg: Config, *, keep_features: bool = False):
    """Logits (B, classes) and the cache for :func:`backward`. images (B, C, H, W), float.

    With ``keep_features=True`` the cache also holds what :func:`layer_features` reports.
    """
    check_images(images, cfg)
    check_params(params, shapes(cfg), images)
    z, embed = conv_patch_embed_forward(images, params["embed.conv.weight"], params["embed.conv.bias"],
                                        cfg.patch_size)  # (B, n, d)
    z, cls = prepend_cls_forward(z, params["cls_token"], params["pos_embedding"])  # (B, N, d)
    z, layers = stack.forward(z, params, crate_alpha_layer, layer_spec(cfg), cfg.depth, keep=keep_features)
    logits, head_cache = head.forward(z, params, cfg.pool)  # (B, classes)
    return logits, ClassifierCache(cfg, embed, cls, layers, head_cache)


def backward(dlogits, cache: ClassifierCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (B, classes)."""
    dtokens, grads = classifier_trunk_backward(dlogits, cache)  # (B, n, d)
    _, grads["embed.conv.weight"], grads["embed.conv.bias"] = conv_patch_embed_backward(dtokens, cache.embed)
    return grads


def layer_features(cache: ClassifierCache) -> dict:
    """Per-layer measurements kept by ``forward(..., keep_features=True)``: the keys of
    :func:`whitebox.blocks.stack.layer_features`. ``codes`` are ODL's ``A_T`` (B, N, Cd), the
    quantity whose sparsity the papers measure; ``outputs`` are the next layer's tokens Z^{ℓ+1}."""
    return stack.layer_features(cache.stack)


def layer_subspaces(params: dict, layer: int, cfg: Config):
    """The subspace bases ``U`` (K, d, p) of layer ``layer``'s MSSA."""
    return subspaces(params[f"layers.{layer}.attn.qkv"], cfg.heads)


def layer_dictionary(params: dict, layer: int, cfg: Config):
    """The encoding dictionary ``D`` (d, Cd) of layer ``layer`` (the decoder ``D1`` is separate)."""
    return params[f"layers.{layer}.odl.D"]


def torch_names(cfg: Config) -> dict:
    """whitebox parameter name -> official CRATE-alpha PyTorch state-dict name (docs/reference.md §6).

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
