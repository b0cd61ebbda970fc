"""Attention maps and feature PCA: the "emergence of segmentation" pictures, at small scale.

Two pictures per image (docs/reference.md §7, after the published CRATE visualisation code):

* **cls-token attention.** In layer ``ℓ``, head ``k`` attends with ``softmax(s P_k P_kᵀ)``
  (rows are queries, softmax over keys). Row 0 is the cls token's query; its entries on the
  ``n`` patch keys, reshaped to the ``(H/P, W/P)`` patch grid, say where the cls token — the one
  the classifier reads — takes its information from. :func:`cls_attention` returns them;
  :func:`upsample` enlarges them to the image (nearest or bilinear, in NumPy) for an overlay.
* **PCA of patch features.** The ``qkv`` features ``LN_attn^ℓ(Z^ℓ) W_qkvᵀ = [P_1 … P_K]`` of the
  patch tokens (cls excluded) of all the images shown are pooled, centred, and projected on their
  top three principal components; each component is min-max scaled per image and the three are
  shown as RGB (:func:`pca_rgb`). Patches of the same part of an object get similar colours when
  the features separate object from background. For the standard transformer block (ViT) the
  features are the layer's keys ``LN_attn^ℓ(Z^ℓ) W_kᵀ + b_k`` (those DINO's and MaskCut's pictures
  use); CRATE's ``qkv`` features are its keys too, since its queries, keys and values coincide.
  The cls attention of a transformer block is ``softmax(s Q_k K_kᵀ)``, read the same way.

:func:`whitebox.figures.plot_attention_grid` draws rows of images with columns: the image, one
overlay per head, and the PCA picture; :func:`attention_checkpoint` computes what ``whitebox
attention`` draws.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import numpy as np

from ..backend import array_module, to_host
from ..data import dataset_info
from ..models.checks import is_transformer
from .layerwise import attention_input, forward_stages, load_trained, model_of, test_images

UPSAMPLE_MODES = ("nearest", "bilinear")


def _layer_index(layer: int, depth: int) -> int:
    index = layer + depth if layer < 0 else layer
    if not 0 <= index < depth:
        raise ValueError(f"layer must be in [{-depth}, {depth - 1}] for a model of depth {depth}, got {layer}")
    return index


def patch_grid(cfg) -> tuple[int, int]:
    """``(H/P, W/P)``: the patch grid of the model's (square) images."""
    g = cfg.image_size // cfg.patch_size
    return g, g


def cls_attention(params: dict, images, cfg, layer: int = -1, model: ModuleType | None = None) -> np.ndarray:
    """The cls token's attention over the patches: (B, heads, H/P, W/P), on the host.

    ``layer`` counts from 0 (negative values from the end). Each head's map is the softmax row of
    the cls query restricted to the patch keys, so it sums to ``1 −`` (the weight on the cls key).
    """
    model = model or model_of(cfg)
    ell = _layer_index(layer, cfg.depth)
    _, cache = model.forward(params, images, cfg, keep_features=True)
    attn = model.layer_features(cache)["attention"][ell]  # (B, K, N, N)
    row = to_host(attn[:, :, 0, 1:])  # (B, K, n): cls query, patch keys
    return row.reshape(row.shape[:2] + patch_grid(cfg))


def patch_qkv_features(params: dict, images, cfg, layer: int = -1, model: ModuleType | None = None) -> np.ndarray:
    """The keys of the patch tokens of layer ``ℓ``: (B, n, K p), on the host, float64 (CRATE: its
    ``qkv`` features; the transformer block: the keys, the middle third of its fused projection)."""
    ell = _layer_index(layer, cfg.depth)
    Z, _ = forward_stages(params, images, cfg, model)
    X = attention_input(Z[2 * ell], params, ell, cfg)  # (B, N, d)
    if is_transformer(cfg):
        W, b = params[f"layers.{ell}.attn.qkv.weight"], params[f"layers.{ell}.attn.qkv.bias"]  # [W_q; W_k; W_v]
        inner = W.shape[0] // 3
        keys = X @ W[inner:2 * inner].T + b[inner:2 * inner]  # (B, N, K p)
    else:
        keys = X @ params[f"layers.{ell}.attn.qkv"].T  # (B, N, K p): q = k = v
    return to_host(keys[:, 1:]).astype(np.float64)


def pca_rgb(features: np.ndarray, grid: tuple[int, int], components: int = 3) -> np.ndarray:
    """Top principal components of patch features as colours: (B, n, f) → (B, gh, gw, components) in [0, 1].

    The PCA is fitted on the tokens of all ``B`` images together; each component's sign is fixed
    so that its largest loading is positive, and each is min-max scaled per image.
    """
    B, n, f = features.shape
    flat = features.reshape(B * n, f)
    flat = flat - flat.mean(axis=0)
    _, _, Vt = np.linalg.svd(flat, full_matrices=False)
    basis = Vt[:components]  # (c, f)
    basis *= np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])[:, None]
    scores = (flat @ basis.T).reshape(B, n, -1)  # (B, n, c)
    lo, hi = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    scaled = (scores - lo) / np.where(hi > lo, hi - lo, 1.0)
    return scaled.reshape(B, *grid, -1)


def object_patches(raw_images: np.ndarray, patch: int, threshold: float = 0.1) -> np.ndarray:
    """Patches whose mean intensity (in [0, 1], over pixels and channels) exceeds ``threshold``:
    (B, C, H, W) → (B, H/P, W/P) bool. A crude object mask for dark-background images (MNIST,
    Fashion-MNIST), not for natural images."""
    x = displayable(raw_images)  # (B, H, W) or (B, H, W, 3)
    if x.ndim == 4:
        x = x.mean(axis=-1)
    B, H, W = x.shape
    blocks = x.reshape(B, H // patch, patch, W // patch, patch).mean(axis=(2, 4))  # (B, gh, gw)
    return blocks > threshold


def attention_on_object(attention: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of each head's patch attention that falls on the object: (B, K, gh, gw), (B, gh, gw) → (B, K).

    Uniform attention scores ``mask.mean()``; a head that looks at the object scores more.
    """
    total = attention.sum(axis=(-2, -1))  # (B, K)
    on = (attention * mask[:, None]).sum(axis=(-2, -1))  # (B, K)
    return on / total


def upsample(maps: np.ndarray, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """Resize the last two axes of ``maps`` (..., h, w) to ``size = (H, W)``.

    ``"nearest"``: each patch value fills its block (``H`` a multiple of ``h`` not required).
    ``"bilinear"``: pixel centres ``(i + ½) h/H − ½`` interpolated between the nearest patch
    centres, clamped at the border (PyTorch's ``align_corners=False``).
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    maps = np.asarray(maps, dtype=np.float64)
    out = maps
    for axis, (small, big) in zip((-2, -1), zip(maps.shape[-2:], size)):
        if mode == "nearest":
            index = np.minimum((np.arange(big) * small) // big, small - 1)
            out = np.take(out, index, axis=axis)
        else:
            pos = np.clip((np.arange(big) + 0.5) * small / big - 0.5, 0, small - 1)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, small - 1)
            w = (pos - lo).reshape((-1, 1) if axis == -2 else (-1,))
            out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out


def displayable(raw: np.ndarray) -> np.ndarray:
    """(B, C, H, W) → (B, H, W) for one channel, (B, H, W, 3) for three; floats in [0, 1]."""
    raw = np.asarray(raw)
    x = raw.astype(np.float64) / 255 if raw.dtype == np.uint8 else raw.astype(np.float64)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


class AttentionPicture(NamedTuple):
    """What ``whitebox attention`` draws (:func:`whitebox.figures.plot_attention_grid`) and reports."""

    raw: np.ndarray  # (B, C, H, W) uint8 test images
    attention: np.ndarray  # (B, K, gh, gw) cls attention of layer ``layer``
    pca: np.ndarray | None  # (B, gh, gw, 3) RGB PCA of layer ``pca_layer``'s qkv features
    labels: list  # class names
    title: str
    layer_names: tuple  # ("layer ℓ", "layer ℓ'")
    object_share: np.ndarray  # (K,) share of each head's patch attention on object patches
    object_fraction: float  # share of object patches among all patches


def attention_checkpoint(path, *, n_images: int = 4, layer: int = -1, pca_layer: int = -1,
                         dataset: str | None = None, pca: bool = True, device: str | None = None,
                         data_dir=None, first: int = 0) -> AttentionPicture:
    """The attention maps of test images ``first … first + n_images − 1`` of a checkpoint, with how much
    of each head's attention falls on the object (:func:`attention_on_object`)."""
    run = load_trained(path, device=device)
    ell, pca_ell = _layer_index(layer, run.cfg.depth), _layer_index(pca_layer, run.cfg.depth)
    dataset = dataset or run.config.dataset
    images, raw, labels = test_images(dataset, first + n_images, run.cfg, xp=array_module(*run.params.values()),
                                      dtype=np.dtype(run.config.dtype).type, data_dir=data_dir)
    images, raw, labels = images[first:], raw[first:], labels[first:]
    if len(raw) == 0:
        raise ValueError(f"--first {first} is past the end of the {dataset} test split")
    attention = cls_attention(run.params, images, run.cfg, layer, run.model)
    colours = None
    if pca:
        features = patch_qkv_features(run.params, images, run.cfg, pca_layer, run.model)
        colours = pca_rgb(features, patch_grid(run.cfg))
    names = dataset_info(dataset).class_names
    mask = object_patches(raw, run.cfg.patch_size)
    features = "keys" if is_transformer(run.cfg) else "qkv features"
    title = f"{run.config.model} on {dataset} (step {run.step}): cls attention of layer {ell}, " \
            f"PCA of layer {pca_ell}'s {features}"
    return AttentionPicture(raw, attention, colours, [names[int(y)] for y in labels], title,
                            (f"layer {ell}", f"layer {pca_ell}"), attention_on_object(attention, mask).mean(axis=0),
                            float(mask.mean()))
