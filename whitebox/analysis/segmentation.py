"""Segmentation without mask supervision, scored: MaskCut and cls attention against the scenes' masks.

What ``whitebox segment`` reports (issue 17 item 5). A trained backbone sees the test images of a
dataset with object masks (:mod:`whitebox.data.scenes`); from one forward pass it gives, per
image, its last layer's

* **patch features** for MaskCut (:func:`last_layer_features`): the projections that the
  attention compares, of the patch tokens. CRATE and CRATE-alpha: ``U^T LN(z) = LN(z) W_qkvᵀ``
  (query, key and value at once, the paper's choice); a ViT: its keys ``LN(z) W_kᵀ + b_k``;
* **cls attention** (B, heads, gh, gw) for the threshold baseline.

:mod:`whitebox.analysis.maskcut` turns them into patch masks (B, gh, gw), and each is scored by
its **IoU** with the ground truth, ``|P ∧ G| / |P ∨ G|`` per image, averaged over the images
(mIoU), at two resolutions:

* ``pixel`` (the headline number): the patch mask upsampled to the image (each patch fills its
  P × P pixels) against the pixel mask. A perfect patch mask scores less than 1 here (a patch is
  all object or all background), the same for every method;
* ``patch``: against the ground truth at the patch grid, where a patch is object if at least
  half its pixels are (:func:`patch_masks`).

:func:`pixel_features` gives MaskCut the raw pixels of each patch instead of learned features: the
bar that a backbone's features must clear to say they segment better than colour alone.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import NamedTuple

import numpy as np

from ..backend import array_module, resolve_device, to_host
from ..data import dataset_info, load_scenes, normalize
from ..train import load_run
from .attention_maps import patch_grid
from .maskcut import ATTENTION_MASS, MASKCUT_TAU, attention_masks, maskcut_batch

METHODS = ("maskcut", "attention")
RESOLUTIONS = ("pixel", "patch")
MASK_DATASETS = ("scenes",)  # the datasets with ground-truth object masks
SEGMENT_TASKS = ("classification", "dino", "simdino")  # runs whose backbone sees images
_CHUNK = 200  # images per forward pass


def patch_masks(masks: np.ndarray, patch: int, fraction: float = 0.5) -> np.ndarray:
    """(B, H, W) bool → (B, H/P, W/P): a patch is set when at least ``fraction`` of its pixels are."""
    B, H, W = masks.shape
    if H % patch or W % patch:
        raise ValueError(f"patch {patch} does not divide the {H} x {W} masks")
    share = masks.reshape(B, H // patch, patch, W // patch, patch).mean(axis=(2, 4))  # B,gh,gw
    return share >= fraction


def upsample_masks(masks: np.ndarray, patch: int) -> np.ndarray:
    """(B, gh, gw) → (B, gh P, gw P): each patch fills its P × P pixels."""
    return masks.repeat(patch, axis=1).repeat(patch, axis=2)


def iou(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|P ∧ G| / |P ∨ G|`` per image: two (B, ...) bool arrays → (B,); 1 where both are empty."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted masks {predicted.shape} and true masks {truth.shape} differ in shape")
    axes = tuple(range(1, predicted.ndim))
    inter = (predicted & truth).sum(axis=axes)
    union = (predicted | truth).sum(axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mean_iou(predicted: np.ndarray, truth_pixels: np.ndarray, patch: int) -> dict:
    """mIoU of patch masks (B, gh, gw) against pixel masks (B, H, W): ``{"pixel": …, "patch": …}``."""
    return {"pixel": float(iou(upsample_masks(predicted, patch), truth_pixels).mean()),
            "patch": float(iou(predicted, patch_masks(truth_pixels, patch)).mean())}


def pixel_features(raw: np.ndarray, patch: int) -> np.ndarray:
    """The pixels of each patch as its feature, centred per image: (B, C, H, W) uint8 → (B, n, C P P)."""
    x = raw.astype(np.float64) / 255
    B, C, H, W = x.shape
    patches = x.reshape(B, C, H // patch, patch, W // patch, patch).transpose(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(B, (H // patch) * (W // patch), C * patch * patch)  # B,n,C P P
    return patches - patches.mean(axis=1, keepdims=True)


def key_projection(params: dict, layer: int):
    """``(W, b)``: the map from layer ``ℓ``'s normalised tokens to the features MaskCut compares.

    CRATE and CRATE-alpha: ``W = W_qkv`` (its rows the ``U_k``), no bias. A ViT
    (:mod:`whitebox.blocks.transformer_layer`): the key block of its ``[W_q; W_k; W_v]`` and bias.
    """
    pre = f"layers.{layer}.attn.qkv"
    if pre in params:
        return params[pre], None
    weight, bias = params[pre + ".weight"], params[pre + ".bias"]
    inner = weight.shape[0] // 3
    return weight[inner:2 * inner], bias[inner:2 * inner]


def last_layer_features(model: ModuleType, params: dict, images, cfg) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass: the last layer's patch features (B, n, f) and cls attention (B, K, gh, gw), on the host."""
    _, cache = model.forward(params, images, cfg, keep_features=True)
    feats = model.layer_features(cache)
    x = feats["attention_inputs"][-1][:, 1:]  # B,n,d: LN(z) of the patch tokens
    weight, bias = key_projection(params, cfg.depth - 1)
    keys = x @ weight.T if bias is None else x @ weight.T + bias  # B,n,f
    cls = feats["attention"][-1][:, :, 0, 1:]  # B,K,n: the cls query on the patch keys
    return to_host(keys).astype(np.float64), to_host(cls).reshape(cls.shape[:2] + patch_grid(cfg))


class Segmentation(NamedTuple):
    """What ``whitebox segment`` reports and draws (:func:`whitebox.figures.plot_segmentation`)."""

    raw: np.ndarray  # (B, 3, H, W) uint8 test images
    masks: np.ndarray  # (B, H, W) bool, the true object masks
    predicted: dict  # method -> (B, gh, gw) bool
    miou: dict  # method -> {"pixel": mIoU, "patch": mIoU}
    patch: int  # P
    title: str


def segment_images(model: ModuleType, params: dict, cfg, raw: np.ndarray, masks: np.ndarray, *,
                   methods=METHODS, tau: float = MASKCUT_TAU, mass: float = ATTENTION_MASS,
                   dataset: str = "scenes", dtype=np.float32, title: str = "") -> Segmentation:
    """Masks of every method for images ``raw`` (B, C, H, W) uint8, scored against ``masks`` (B, H, W)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be some of {METHODS}, got {tuple(methods)}")
    info = dataset_info(dataset)
    xp = array_module(*params.values())
    keys, attention = [], []
    for lo in range(0, len(raw), _CHUNK):
        part = raw[lo:lo + _CHUNK]
        x = normalize(xp.asarray(part) if xp is not np else part, info.mean, info.std, dtype=dtype)
        k, a = last_layer_features(model, params, x, cfg)
        keys.append(k)
        attention.append(a)
    grid = patch_grid(cfg)
    predicted = {}
    if "maskcut" in methods:
        predicted["maskcut"] = maskcut_batch(np.concatenate(keys), grid, tau=tau)
    if "attention" in methods:
        predicted["attention"] = attention_masks(np.concatenate(attention), mass)
    miou = {m: mean_iou(p, masks, cfg.patch_size) for m, p in predicted.items()}
    return Segmentation(raw, masks, predicted, miou, cfg.patch_size, title)


def backbone_params(model: ModuleType, params: dict, cfg) -> tuple[dict, object]:
    """``(params, cfg)`` that ``model.forward`` takes, from a backbone's parameters.

    A self-supervised run keeps no classifier (and keeps its projection head, ``dino_head.*``,
    which is dropped): the identity stands in for the classifier, whose output nothing here reads.
    """
    if "head.weight" not in params:
        xp, d = array_module(*params.values()), cfg.dim
        dtype = params["cls_token"].dtype
        cfg = dataclasses.replace(cfg, num_classes=d)
        params = {**params, "head.weight": xp.eye(d, dtype=dtype), "head.bias": xp.zeros(d, dtype=dtype)}
    names = model.shapes(cfg)
    return {k: v for k, v in params.items() if k in names}, cfg


def backbone(run) -> tuple[ModuleType, dict, object]:
    """``(model, params, cfg)`` of the network that sees the images in a loaded run."""
    if run.config.task not in SEGMENT_TASKS:
        raise ValueError(f"{run.path} is a {run.config.task!r} run; segment needs an image backbone "
                         f"trained for one of {SEGMENT_TASKS}")
    return (run.model, *backbone_params(run.model, run.params, run.cfg))


def segment_checkpoint(path, *, dataset: str | None = None, test_limit: int | None = None, methods=METHODS,
                       tau: float = MASKCUT_TAU, mass: float = ATTENTION_MASS, device: str | None = None,
                       data_dir=None) -> Segmentation:
    """MaskCut and attention masks of a run's backbone on the first ``test_limit`` test images of ``dataset``
    (default: the run's own, which must have masks)."""
    run = load_run(path, device=resolve_device(device))
    model, params, cfg = backbone(run)
    dataset = dataset or run.config.dataset
    if dataset not in MASK_DATASETS:
        raise ValueError(f"{dataset!r} has no object masks; pass --dataset with one of {MASK_DATASETS}")
    info = dataset_info(dataset)
    if (info.channels, info.image_size) != (cfg.channels, cfg.image_size):
        raise ValueError(f"{dataset} images are {info.channels}x{info.image_size}x{info.image_size}, the model "
                         f"expects {cfg.channels}x{cfg.image_size}x{cfg.image_size}")
    if test_limit is not None and (isinstance(test_limit, bool) or int(test_limit) != test_limit or test_limit < 1):
        raise ValueError(f"test_limit must be an integer >= 1, got {test_limit!r}")
    scenes = load_scenes("test", data_dir)
    raw, masks = scenes.images[:test_limit], scenes.masks[:test_limit]
    title = f"{run.config.model} ({run.config.task}, step {run.step}) on {dataset}"
    return segment_images(model, params, cfg, raw, masks, methods=methods, tau=tau, mass=mass, dataset=dataset,
                          dtype=np.dtype(run.config.dtype).type, title=title)
