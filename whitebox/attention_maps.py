"""Attention maps and feature PCA: the "emergence of segmentation" pictures, at small scale.

Two pictures per image (REFERENCE §7, after the published CRATE visualisation code):

* **cls-token attention.** In layer ``ℓ``, head ``k`` attends with ``softmax(s P_k P_kᵀ)``
  (rows are queries, softmax over keys). Row 0 is the cls token's query; its entries on the
  ``n`` patch keys, reshaped to the ``(H/P, W/P)`` patch grid, say where the cls token — the one
  the classifier reads — takes its information from. :func:`cls_attention` returns them;
  :func:`upsample` enlarges them to the image (nearest or bilinear, in NumPy) for an overlay.
* **PCA of patch features.** The ``qkv`` features ``LN_attn^ℓ(Z^ℓ) W_qkvᵀ = [P_1 … P_K]`` of the
  patch tokens (cls excluded) of all the images shown are pooled, centred, and projected on their
  top three principal components; each component is min-max scaled per image and the three are
  shown as RGB (:func:`pca_rgb`). Patches of the same part of an object get similar colours when
  the features separate object from background.

:func:`plot_attention_grid` draws rows of images with columns: the image, one overlay per head,
and the PCA picture; :func:`attention_checkpoint` is ``whitebox attention``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from .backend import array_module, to_host
from .measure import attention_input, forward_stages, load_trained, model_of, test_images

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
    """The ``qkv`` features of the patch tokens of layer ``ℓ``: (B, n, K p), on the host, float64."""
    ell = _layer_index(layer, cfg.depth)
    Z, _ = forward_stages(params, images, cfg, model)
    X = attention_input(Z[2 * ell], params, ell, cfg)  # (B, N, d)
    qkv = X @ params[f"layers.{ell}.attn.qkv"].T  # (B, N, K p)
    return to_host(qkv[:, 1:]).astype(np.float64)


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
    x = _displayable(raw_images)  # (B, H, W) or (B, H, W, 3)
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


def plot_attention_grid(raw_images: np.ndarray, attention: np.ndarray, path, *, pca: np.ndarray | None = None,
                        mode: str = "nearest", labels=None, title: str = "", layer_names=("", "")) -> Path:
    """A PNG grid: one row per image; columns the image, each head's cls attention overlaid, and
    (when ``pca`` is given) the RGB PCA picture.

    raw_images (B, C, H, W) uint8 (or floats in [0, 1]); attention (B, K, gh, gw); pca (B, gh, gw, 3).
    Each head's map is min-max scaled per image for display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .train.files import atomic_write

    B, K = attention.shape[:2]
    H, W = raw_images.shape[-2:]
    shown = _displayable(raw_images)  # (B, H, W) or (B, H, W, 3)
    heat = upsample(attention, (H, W), mode)  # (B, K, H, W)
    lo, hi = heat.min(axis=(-2, -1), keepdims=True), heat.max(axis=(-2, -1), keepdims=True)
    heat = (heat - lo) / np.where(hi > lo, hi - lo, 1.0)
    cols = 1 + K + (pca is not None)
    fig = Figure(figsize=(1.35 * cols, 1.4 * B + (0.4 if title else 0.1)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(B, cols, squeeze=False)
    gray = shown.ndim == 3
    for i in range(B):
        axes[i, 0].imshow(shown[i], cmap="gray" if gray else None)
        if labels is not None:
            axes[i, 0].set_ylabel(str(labels[i]), fontsize=8)
        for k in range(K):
            axes[i, 1 + k].imshow(shown[i], cmap="gray" if gray else None)
            axes[i, 1 + k].imshow(heat[i, k], cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        if pca is not None:
            axes[i, -1].imshow(upsample(np.moveaxis(pca[i], -1, 0), (H, W), "nearest").transpose(1, 2, 0))
    names = ["image"] + [f"head {k}" for k in range(K)] + (["PCA (RGB)"] if pca is not None else [])
    attn_name, pca_name = layer_names
    for j, name in enumerate(names):
        suffix = attn_name if 0 < j <= K else (pca_name if j > K else "")
        axes[0, j].set_title(name + (f"\n{suffix}" if suffix else ""), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=80))


def _displayable(raw: np.ndarray) -> np.ndarray:
    """(B, C, H, W) → (B, H, W) for one channel, (B, H, W, 3) for three; floats in [0, 1]."""
    raw = np.asarray(raw)
    x = raw.astype(np.float64) / 255 if raw.dtype == np.uint8 else raw.astype(np.float64)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def attention_checkpoint(path, *, out, n_images: int = 4, layer: int = -1, pca_layer: int = -1,
                         dataset: str | None = None, mode: str = "nearest", pca: bool = True, device: str | None = None,
                         data_dir=None, first: int = 0, echo=print) -> Path:
    """``whitebox attention``: the grid for test images ``first … first + n_images − 1`` of a checkpoint.

    Also reports (through ``echo``) how much of each head's attention falls on the object
    (:func:`attention_on_object`), against the share of object patches.
    """
    from .data import dataset_info

    run = load_trained(path, device=device)
    dataset = dataset or run.config.dataset
    images, raw, labels = test_images(dataset, first + n_images, run.cfg, xp=array_module(*run.params.values()),
                                      dtype=np.dtype(run.config.dtype).type, data_dir=data_dir)
    images, raw, labels = images[first:], raw[first:], labels[first:]
    attention = cls_attention(run.params, images, run.cfg, layer, run.model)
    colours = None
    if pca:
        features = patch_qkv_features(run.params, images, run.cfg, pca_layer, run.model)
        colours = pca_rgb(features, patch_grid(run.cfg))
    names = dataset_info(dataset).class_names
    mask = object_patches(raw, run.cfg.patch_size)
    share = attention_on_object(attention, mask).mean(axis=0)  # (K,)
    echo(f"share of the cls token's patch attention on object patches (patch mean intensity > 0.1), per head: "
         f"{', '.join(f'{v:.1%}' for v in share)}; object patches are {mask.mean():.1%} of all patches")
    ell, pca_ell = _layer_index(layer, run.cfg.depth), _layer_index(pca_layer, run.cfg.depth)
    title = f"{run.config.model} on {dataset} (step {run.step}): cls attention of layer {ell}, " \
            f"PCA of layer {pca_ell}'s qkv features"
    return plot_attention_grid(raw, attention, out, pca=colours, mode=mode, labels=[names[int(y)] for y in labels],
                               title=title, layer_names=(f"layer {ell}", f"layer {pca_ell}"))


ATTENTION_DESCRIPTION = """\
Draw where the cls token looks, head by head, in one layer of a trained model, for a few test
images, next to the PCA of the patch tokens' qkv features shown as RGB (the "emergence of
segmentation" pictures of CRATE, at small scale). Rows: images; columns: the image, one
overlay per head (cls-token attention row reshaped to the patch grid and upsampled), PCA.

example:
  whitebox attention --checkpoint runs/demo --images 6 --layer -1 --out grid.png
"""


def add_attention_arguments(p) -> None:
    from .cli import nonnegative_int, positive_int
    from .data import DATASETS

    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the grid")
    p.add_argument("--images", type=positive_int, default=4, metavar="N", help="test images, one per row (default 4)")
    p.add_argument("--first", type=nonnegative_int, default=0, metavar="I",
                   help="index of the first test image (default 0)")
    p.add_argument("--layer", type=int, default=-1, metavar="L",
                   help="layer whose attention is shown, from 0; negative counts from the end (default -1, the last)")
    p.add_argument("--pca-layer", type=int, default=-1, metavar="L",
                   help="layer of the PCA features (default -1, the last)")
    p.add_argument("--no-pca", dest="pca", action="store_false", help="leave out the PCA column")
    p.add_argument("--upsample", choices=UPSAMPLE_MODES, default="nearest",
                   help="patch grid to pixels (default nearest)")
    p.add_argument("--dataset", choices=DATASETS, help="test images to use (default: the run's dataset)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: $WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")


def attention_command(args) -> int:
    """``whitebox attention``."""
    from .cli import CommandError

    try:
        path = attention_checkpoint(args.checkpoint, out=args.out, n_images=args.images, layer=args.layer,
                                    pca_layer=args.pca_layer, dataset=args.dataset, mode=args.upsample, pca=args.pca,
                                    device=args.device, data_dir=args.data_dir, first=args.first)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(f"wrote {path}")
    return 0
