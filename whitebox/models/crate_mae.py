"""CRATE-MAE: a masked autoencoder whose encoder is CRATE and whose decoder inverts it (docs/reference.md §7).

Pai et al., "Masked Completion via Structured Diffusion with White-Box Transformers" (ICLR 2024):
the encoder layers compress and sparsify the tokens of the visible patches; the decoder layers
(:mod:`whitebox.blocks.decoder_layer`) run the same two steps backwards, and a linear head turns every
token back into pixels. The training signal is MAE's: hide most patches, predict their pixels.

Forward, for images (B, C, H, W) and a mask that keeps ``k`` of the ``n`` patches of each image::

    x   = patchify-conv(images) + pos[1:]           B, n, d     (fixed 2-D sin-cos position)
    x   = x[keep]                                   B, k, d     (per-sample random subset)
    z   = [cls + pos[0]; x]                         B, 1+k, d   (cls token optional)
    z   = CRATE layers:  z + MSSA(LN z),  ISTA(LN ·)            (λ = 0.5 as in the CRATE-MAE code)
    z   = LN(z)                                                 encoder output
    h   = z W_eᵀ + b_e                              B, 1+k, D   (encoder width → decoder width)
    h   = scatter(h, keep) + mask_token elsewhere   B, 1+n, D
    h   = h + pos_dec                                           (fixed sin-cos, width D)
    h   = decoder layers: Y = LN(h) Wᵀ,  h = Y − MSSA(LN Y)     as many as the encoder's
    out = LN(h) W_pᵀ + b_p, cls row dropped         B, n, p·p·C (pixels of every patch)

and :func:`reconstruction_loss` is the mean squared error over the *masked* patches only (per
patch the mean over its pixels, then the mean over the masked patches of the batch), optionally
against per-patch normalised pixels (MAE's ``norm_pix_loss``).

Conventions taken from MAE (facebookresearch/mae), which the CRATE-MAE code builds on: the patch
embedding is a convolution with kernel = stride = patch and a bias; both position embeddings are
fixed (``get_2d_sincos_pos_embed``, cls row zero) and are not parameters; the encoder and the
decoder end with a LayerNorm; masking draws uniform noise per patch and keeps the patches with
the smallest noise, ``k = int(n (1 − mask_ratio))``; initialisation is Xavier-uniform for the
linear maps (zero biases), N(0, 0.02²) for the cls and mask tokens, kaiming-uniform for the ISTA
dictionaries and for the decoder's square maps (the published decoder leaves that tensor
uninitialised, relying on loading).

Public surface::

    cfg = Config(image_size=28, patch_size=4, channels=1, dim=64, depth=2, ...)
    params = init(cfg, seed=0)
    mask = make_mask(cfg, batch=B, rng=seed_or_generator)          # Mask(keep, masked)
    pred, cache = forward(params, images, cfg, mask=mask)          # B, n, P
    loss, dpred = reconstruction_loss(pred, images, mask, cfg)
    grads = backward(dpred, cache)
    feats = features(params, images, cfg)                         # B, d: frozen, no masking
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..backend import array_module, is_device_array, to_host
from ..blocks import crate_layer, decoder_layer, stack
from ..blocks.attention import AttentionSpec
from ..blocks.crate_layer import CrateLayerSpec
from ..blocks.decoder_layer import DecoderLayerSpec
from ..blocks.params import Param, layernorm, model_parameters, normal, xavier_uniform, zeros
from ..layers.embedding import (
    ClsCache,
    ConvEmbedCache,
    GatherCache,
    ScatterCache,
    conv_patch_embed_backward,
    conv_patch_embed_forward,
    gather_tokens_backward,
    gather_tokens_forward,
    patchify,
    prepend_cls_backward,
    prepend_cls_forward,
    scatter_tokens_backward,
    scatter_tokens_forward,
    unpatchify,
)
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache, linear_backward, linear_forward
from ..layers.mssa import subspaces
from .checks import check_images, check_params, positive_int
from .config import ImageConfig

NORM_PIX_EPS = 1e-6  # MAE: (target − mean) / (var + 1e-6) ** 0.5
TOKEN_INIT_STD = 0.02  # MAE: cls and mask tokens ~ N(0, 0.02²)


@dataclass(frozen=True)
class Config(ImageConfig):
    """A CRATE-MAE's hyper-parameters. The decoder is as deep as the encoder (``depth``).

    ``dim``, ``heads``, ``dim_head``: the encoder; ``decoder_dim``, ``decoder_heads``,
    ``decoder_dim_head``: the decoder. Both widths must be multiples of 4 (the 2-D sin-cos
    embedding gives each axis half the width, as sin and cos pairs).
    """

    NONNEGATIVE = ("ista_lambd", "mask_ratio")

    depth: int = 6
    ista_lambd: float = 0.5  # λ of the CRATE-MAE code
    decoder_dim: int = 192
    decoder_heads: int = 3
    decoder_dim_head: int = 64
    mask_ratio: float = 0.75
    cls_token: bool = True
    norm_pix_loss: bool = False

    def __post_init__(self):
        if not isinstance(self.mask_ratio, (int, float)) or not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio!r}")
        super().__post_init__()
        for name in ("dim", "decoder_dim"):
            if getattr(self, name) % 4:
                raise ValueError(f"{name} must be a multiple of 4 for the 2-D sin-cos embedding, got {getattr(self, name)}")
        if self.num_keep < 1:
            raise ValueError(f"mask_ratio={self.mask_ratio} keeps no patch of {self.num_patches}; lower it")
        if self.norm_pix_loss and self.patch_dim < 2:
            raise ValueError("norm_pix_loss needs patches of at least 2 pixels (it divides by their variance)")

    @property
    def num_keep(self) -> int:
        """Visible patches per image: MAE's ``int(n (1 − mask_ratio))``."""
        return int(self.num_patches * (1 - self.mask_ratio))

    @property
    def prefix_tokens(self) -> int:
        """1 with a cls token, else 0: the offset of the first patch token."""
        return int(self.cls_token)


def encoder_spec(cfg: Config) -> CrateLayerSpec:
    """The encoder's block: a CRATE layer with MAE's initialisation."""
    return CrateLayerSpec(AttentionSpec(cfg.dim, cfg.heads, cfg.dim_head, init="xavier"), cfg.ista_step, cfg.ista_lambd)


def decoder_spec(cfg: Config) -> DecoderLayerSpec:
    return DecoderLayerSpec(AttentionSpec(cfg.decoder_dim, cfg.decoder_heads, cfg.decoder_dim_head, init="xavier"))


def mnist_small(**overrides) -> Config:
    """A CPU-sized CRATE-MAE for 28×28 MNIST: 7×7 patches of 4×4, width 64, 3 + 3 layers."""
    base = dict(image_size=28, patch_size=4, channels=1, dim=64, depth=3, heads=4, dim_head=16,
                decoder_dim=64, decoder_heads=4, decoder_dim_head=16)
    return Config(**{**base, **overrides})


PRESETS = {"mnist-small": mnist_small}


# ----------------------------------------------------------------------------------------------
# fixed position embedding


def sincos_1d(dim: int, positions) -> np.ndarray:
    """MAE's ``get_1d_sincos_pos_embed_from_grid``: (M,) positions → (M, dim) ``[sin(m ω), cos(m ω)]``.

    ``ω_i = 10000^(−i / (dim/2))`` for ``i < dim/2``: the first half holds the sines, the second
    the cosines of the same frequencies.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))  # (dim/2,)
    angles = np.asarray(positions, dtype=np.float64).reshape(-1)[:, None] * omega  # (M, dim/2)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


@functools.lru_cache(maxsize=32)
def sincos_2d(dim: int, grid_size: int, cls_token: bool = False) -> np.ndarray:
    """MAE's ``get_2d_sincos_pos_embed``: (grid², dim), or (1 + grid², dim) with a zero cls row.

    Patch ``i·grid + j`` (row ``i``, column ``j``, the order of :func:`patchify`) gets
    ``[sincos_1d(dim/2, j), sincos_1d(dim/2, i)]``: as in MAE, whose ``meshgrid(w, h)`` puts the
    column coordinate first, the first half encodes the column and the second half the row.
    Computed in float64 on the host; the array is read-only (it is cached).
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")  # (g, g) each
    emb = np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)  # (g², dim)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    emb.setflags(write=False)
    return emb


# ----------------------------------------------------------------------------------------------
# masking


class Mask(NamedTuple):
    """Which patches each image shows the encoder: indices into its ``n`` patches, sorted per row."""

    keep: object  # (B, k) int: visible patches
    masked: object  # (B, n − k) int: hidden patches, whose pixels the loss asks for


def make_mask(cfg: Config, batch: int, rng=0) -> Mask:
    """MAE's random masking: per image, uniform noise per patch, keep the ``k`` smallest.

    That is a uniformly random subset of ``k = cfg.num_keep`` patches (a random permutation's first
    ``k``), drawn from ``rng``: an integer seed (NumPy) or a NumPy or CuPy ``Generator`` (the indices
    then live on its backend). The same seed gives the same mask.
    """
    positive_int("batch", batch)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if not hasattr(rng, "random"):
        raise TypeError(f"rng must be an integer seed or a random Generator, got {type(rng).__name__}")
    noise = rng.random((batch, cfg.num_patches))  # (B, n)
    xp = array_module(noise)
    order = xp.argsort(noise, axis=1)  # (B, n): a random permutation per row
    k = cfg.num_keep
    return Mask(xp.sort(order[:, :k], axis=1), xp.sort(order[:, k:], axis=1))


def no_mask(cfg: Config, batch: int, xp=np) -> Mask:
    """Every patch visible (for features and plain autoencoding): keep = 0..n−1, nothing masked."""
    keep = xp.broadcast_to(xp.arange(cfg.num_patches), (batch, cfg.num_patches))
    return Mask(keep, xp.zeros((batch, 0), dtype=keep.dtype))


def masked_positions(mask: Mask, num_patches: int):
    """The boolean (B, n) map of hidden patches (True = masked)."""
    xp = array_module(mask.keep)
    B = mask.keep.shape[0]
    out = xp.zeros((B, num_patches), dtype=bool)
    out[xp.arange(B)[:, None], mask.masked] = True
    return out


def _check_mask(mask: Mask, cfg: Config, batch: int, xp) -> Mask:
    """The mask on ``xp``, its shapes checked; that it is a partition of 0..n-1 is checked for host masks
    only, before any transfer (a device mask would need a host sync; :func:`make_mask` builds valid ones)."""
    if not isinstance(mask, Mask):
        raise TypeError(f"mask must be a Mask (from make_mask or no_mask), got {type(mask).__name__}")
    keep, masked = xp.asarray(mask.keep), xp.asarray(mask.masked)
    n = cfg.num_patches
    if keep.ndim != 2 or masked.ndim != 2 or keep.shape[0] != batch or masked.shape[0] != batch:
        raise ValueError(f"mask.keep and mask.masked must be (batch={batch}, ·), got {keep.shape} and {masked.shape}")
    if keep.shape[1] + masked.shape[1] != n or keep.shape[1] < 1:
        raise ValueError(f"mask must split the {n} patches into >= 1 kept and the rest masked, "
                         f"got {keep.shape[1]} kept and {masked.shape[1]} masked")
    if not is_device_array(mask.keep):  # the values need the host: device masks (make_mask's) are not re-checked
        both = np.sort(np.concatenate([to_host(mask.keep), to_host(mask.masked)], axis=1), axis=1)
        if not (both == np.arange(n)).all():
            raise ValueError("mask.keep and mask.masked must together hold every patch index 0..n-1 exactly once per image")
    return Mask(keep, masked)


# ----------------------------------------------------------------------------------------------
# parameters


def describe(cfg: Config) -> dict:
    """name -> Param in the order ``init`` draws them (MAE's initialisation, see the module docstring;
    the position embeddings are fixed, not parameters)."""
    d, D, P, C, p = cfg.dim, cfg.decoder_dim, cfg.patch_dim, cfg.channels, cfg.patch_size
    tokens = normal(TOKEN_INIT_STD)
    out = {"embed.weight": Param((d, C, p, p), xavier_uniform(P, d)),  # MAE: the conv weight viewed as (d, C p p)
           "embed.bias": Param((d,), zeros)}
    if cfg.cls_token:
        out["cls_token"] = Param((1, 1, d), tokens)
    out.update(stack.shapes(crate_layer, encoder_spec(cfg), cfg.depth, "encoder."))
    out.update(layernorm(d, "encoder_norm."))
    out["decoder_embed.weight"], out["decoder_embed.bias"] = Param((D, d), xavier_uniform(d, D)), Param((D,), zeros)
    out["mask_token"] = Param((1, 1, D), tokens)
    out.update(stack.shapes(decoder_layer, decoder_spec(cfg), cfg.depth, "decoder."))
    out.update(layernorm(D, "decoder_norm."))
    out["head.weight"], out["head.bias"] = Param((P, D), xavier_uniform(D, P)), Param((P,), zeros)
    return out


shapes, num_params, init = model_parameters(describe)


def layer_subspaces(params: dict, layer: int, cfg: Config):
    """The subspace bases ``U`` (K, d, p) of encoder layer ``layer``'s MSSA."""
    return subspaces(params[f"encoder.{layer}.attn.qkv"], cfg.heads)


def layer_dictionary(params: dict, layer: int, cfg: Config):
    """The ISTA dictionary ``D`` (d, d) of encoder layer ``layer``."""
    return params[f"encoder.{layer}.ista.D"]


# ----------------------------------------------------------------------------------------------
# forward and backward


class EncoderCache(NamedTuple):
    embed: ConvEmbedCache  # the patch convolution
    gather: GatherCache  # the visible patches
    cls: ClsCache | None  # None without a cls token
    stack: stack.StackCache
    norm: LayerNormCache


class MAECache(NamedTuple):
    cfg: Config
    encoder: EncoderCache
    decoder_embed: LinearCache
    mask: Mask
    scatter: ScatterCache  # visible tokens back in place, the mask token elsewhere
    decoder_cls: ClsCache | None
    decoder: stack.StackCache
    decoder_norm: LayerNormCache
    head: LinearCache


def encode(params: dict, images, cfg: Config, keep=None, *, keep_features: bool = False):
    """The encoder on the visible patches: tokens (B, c + k, d) (c = 1 with a cls token) and its cache.

    ``keep`` (B, k) holds the visible patch indices; None shows every patch (no masking).
    """
    xp = array_module(images)
    x, embed_cache = conv_patch_embed_forward(images, params["embed.weight"], params["embed.bias"], cfg.patch_size)
    pos = xp.asarray(sincos_2d(cfg.dim, cfg.grid_size, cfg.cls_token), dtype=x.dtype)  # (c + n, d)
    x += pos[cfg.prefix_tokens:]  # (B, n, d)
    if keep is None:
        keep = no_mask(cfg, images.shape[0], xp).keep
    x, gather_cache = gather_tokens_forward(x, keep)  # (B, k, d): the visible patches
    cls_cache = None
    if cfg.cls_token:
        x, cls_cache = prepend_cls_forward(x, params["cls_token"] + pos[:1])  # (B, 1 + k, d)
    x, stack_cache = stack.forward(x, params, crate_layer, encoder_spec(cfg), cfg.depth, "encoder.", keep=keep_features)
    z, norm_cache = layernorm_forward(x, params["encoder_norm.weight"], params["encoder_norm.bias"])
    return z, EncoderCache(embed_cache, gather_cache, cls_cache, stack_cache, norm_cache)


def encode_backward(dz, cache: EncoderCache) -> dict:
    """The encoder's parameter gradients for ``dz`` (B, c + k, d)."""
    grads = {}
    dx, grads["encoder_norm.weight"], grads["encoder_norm.bias"] = layernorm_backward(dz, cache.norm)
    dx, layer_grads = stack.backward(dx, cache.stack, "encoder.")
    grads.update(layer_grads)
    if cache.cls is not None:
        dx, grads["cls_token"], _ = prepend_cls_backward(dx, cache.cls)
    dx = gather_tokens_backward(dx, cache.gather)  # (B, n, d); the fixed position embedding has no gradient
    _, grads["embed.weight"], grads["embed.bias"] = conv_patch_embed_backward(dx, cache.embed)
    return grads


def forward(params: dict, images, cfg: Config, *, mask: Mask | None = None, keep_features: bool = False):
    """Predicted pixels (B, n, patch_dim) of every patch, and the cache for :func:`backward`.

    images (B, C, H, W) float, in the parameters' dtype. ``mask`` from :func:`make_mask` (the
    encoder sees ``mask.keep``); None shows every patch (plain autoencoding, nothing masked).
    With ``keep_features=True`` the cache also holds the encoder's :func:`layer_features`.
    """
    check_images(images, cfg)
    check_params(params, shapes(cfg), images)
    xp = array_module(images)
    B = images.shape[0]
    mask = no_mask(cfg, B, xp) if mask is None else _check_mask(mask, cfg, B, xp)
    z, enc_cache = encode(params, images, cfg, mask.keep, keep_features=keep_features)  # (B, c + k, d)
    h, de_cache = linear_forward(z, params["decoder_embed.weight"], params["decoder_embed.bias"])  # (B, c + k, D)
    c = cfg.prefix_tokens
    full, scatter_cache = scatter_tokens_forward(h[:, c:], mask.keep, mask.masked, params["mask_token"])  # (B, n, D)
    cls_cache = None
    if cfg.cls_token:
        full, cls_cache = prepend_cls_forward(full, h[:, :1])  # (B, 1 + n, D): each image's own cls row
    full += xp.asarray(sincos_2d(cfg.decoder_dim, cfg.grid_size, cfg.cls_token), dtype=h.dtype)
    full, dec_cache = stack.forward(full, params, decoder_layer, decoder_spec(cfg), cfg.depth, "decoder.")
    full, norm_cache = layernorm_forward(full, params["decoder_norm.weight"], params["decoder_norm.bias"])
    pred, head_cache = linear_forward(full[:, c:], params["head.weight"], params["head.bias"])  # (B, n, P)
    return pred, MAECache(cfg, enc_cache, de_cache, mask, scatter_cache, cls_cache, dec_cache, norm_cache, head_cache)


def backward(dpred, cache: MAECache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dpred`` (B, n, P)."""
    cfg = cache.cfg
    xp = array_module(dpred)
    grads = {}
    dfull_patches, grads["head.weight"], grads["head.bias"] = linear_backward(dpred, cache.head)  # (B, n, D)
    B, c = dpred.shape[0], cfg.prefix_tokens
    dfull = xp.zeros((B, c + cfg.num_patches, cfg.decoder_dim), dtype=dpred.dtype)
    dfull[:, c:] = dfull_patches  # forward: the cls row was dropped before the head
    dfull, grads["decoder_norm.weight"], grads["decoder_norm.bias"] = layernorm_backward(dfull, cache.decoder_norm)
    dfull, layer_grads = stack.backward(dfull, cache.decoder, "decoder.")
    grads.update(layer_grads)
    # forward: full = [h_cls; scatter(h_patches, keep) + mask_token at masked] + pos
    dcls = None
    if cache.decoder_cls is not None:
        dfull, dcls, _ = prepend_cls_backward(dfull, cache.decoder_cls)  # (B, n, D), (B, 1, D)
    dh, grads["mask_token"] = scatter_tokens_backward(dfull, cache.scatter)  # (B, k, D)
    if dcls is not None:
        dh = xp.concatenate([dcls, dh], axis=1)  # (B, c + k, D)
    dz, grads["decoder_embed.weight"], grads["decoder_embed.bias"] = linear_backward(dh, cache.decoder_embed)
    grads.update(encode_backward(dz, cache.encoder))
    return grads


def layer_features(cache: MAECache) -> dict:
    """The encoder's per-layer measurements of ``forward(..., keep_features=True)`` (the keys of
    :func:`whitebox.blocks.stack.layer_features`; the tokens are the cls token and the visible patches)."""
    return stack.layer_features(cache.encoder.stack)


# ----------------------------------------------------------------------------------------------
# loss, features, reconstructions


def patch_targets(images, cfg: Config):
    """The pixels the head should predict: patchify(images) (B, n, P), per-patch normalised when
    ``cfg.norm_pix_loss`` (``(x − mean) / √(var + 1e-6)`` with MAE's unbiased variance)."""
    target = patchify(images, cfg.patch_size)  # (B, n, P)
    if cfg.norm_pix_loss:
        mean = target.mean(axis=-1, keepdims=True)
        var = target.var(axis=-1, ddof=1, keepdims=True)
        target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
    return target


def reconstruction_loss(pred, images, mask: Mask | None, cfg: Config):
    """``(loss, dpred)``: the mean over masked patches of the per-patch mean squared pixel error.

    ``loss = Σ_{b, j masked} mean_P (pred − target)² / M`` with ``M`` the number of masked
    patches in the batch; ``dpred = 2 (pred − target) / (P M)`` on masked patches, 0 elsewhere.
    With ``mask=None`` (or a mask that hides nothing) every patch counts. ``loss`` is a 0-d array on
    the predictions' module (``float()`` it to print it: on a GPU that waits for the device).
    """
    xp = array_module(pred)
    target = patch_targets(images, cfg)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)}, the images' patches are {tuple(target.shape)}")
    diff = pred - target  # (B, n, P)
    B, n, P = diff.shape
    if mask is None or mask.masked.shape[1] == 0:
        weight = xp.full((B, n), 1.0 / (B * n), dtype=diff.dtype)
    else:
        masked = masked_positions(_check_mask(mask, cfg, B, xp), n)
        weight = masked / masked.sum()  # (B, n): 1/M on masked patches
        weight = weight.astype(diff.dtype)
    loss = ((diff * diff).mean(axis=-1) * weight).sum()  # 0-d, on the device
    dpred = diff * (2.0 / P) * weight[..., None]
    return loss, dpred


def features(params: dict, images, cfg: Config, batch_size: int = 500):
    """Frozen encoder features for a linear probe: the mean of the encoder's output patch tokens
    (after its final LayerNorm, cls token excluded), with every patch visible. (B, d)."""
    xp = array_module(images)
    out = []
    for lo in range(0, images.shape[0], batch_size):
        chunk = images[lo:lo + batch_size]
        check_images(chunk, cfg)
        check_params(params, shapes(cfg), chunk)
        z, _ = encode(params, chunk, cfg)
        out.append(z[:, cfg.prefix_tokens:].mean(axis=1))
    return xp.concatenate(out, axis=0)


def reconstruct(params: dict, images, cfg: Config, mask: Mask):
    """Images (B, C, H, W) with the masked patches replaced by the model's prediction.

    With ``norm_pix_loss`` the prediction is in normalised units; it is mapped back with each
    masked patch's true mean and variance (as MAE's visualisation does), so the picture shows the
    predicted *shape* of the patch, not its brightness.
    """
    pred, _ = forward(params, images, cfg, mask=mask)  # (B, n, P)
    patches = patchify(images, cfg.patch_size)  # (B, n, P)
    if cfg.norm_pix_loss:
        mean = patches.mean(axis=-1, keepdims=True)
        var = patches.var(axis=-1, ddof=1, keepdims=True)
        pred = pred * (var + NORM_PIX_EPS) ** 0.5 + mean
    xp = array_module(images)
    rows = xp.arange(images.shape[0])[:, None]
    out = patches.copy()
    out[rows, mask.masked] = pred[rows, mask.masked]
    C, H, W = images.shape[1:]
    return unpatchify(out, cfg.patch_size, C, H, W)


def masked_images(images, cfg: Config, mask: Mask, fill: float = 0.0):
    """Images with the masked patches set to ``fill`` (what the encoder is shown)."""
    xp = array_module(images)
    patches = patchify(images, cfg.patch_size).copy()
    patches[xp.arange(images.shape[0])[:, None], mask.masked] = fill
    C, H, W = images.shape[1:]
    return unpatchify(patches, cfg.patch_size, C, H, W)
