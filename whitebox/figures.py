"""Every drawing of whitebox, as PNG files: one Matplotlib set-up, imported only when a figure is drawn.

==========================  ===================================================================
:func:`plot_curves`         a run's learning curves (``curves.png``, after every epoch)
:func:`plot_layerwise`      ``whitebox measure``: each quantity against depth, init vs trained
:func:`plot_sweep`          ``whitebox measure``: the approximations of the compression step
:func:`plot_measurement`    ``whitebox measure --out``: the three figures above for a checkpoint
:func:`plot_attention_grid` ``whitebox attention``: cls attention per head and the feature PCA
:func:`plot_ablation`       ``whitebox experiment ablation``: loss per step and test accuracy
:func:`reconstruction_grid` ``whitebox reconstruct``: masked input, CRATE-MAE reconstruction, original
:func:`plot_segmentation`   ``whitebox segment``: images, true masks, MaskCut and attention masks
:func:`plot_segmentation_experiment`  ``benchmarks/segmentation_experiment.py``: mIoU and k-NN per row
==========================  ===================================================================

Each draws on a figure of :func:`_figure` (Matplotlib's object interface on an Agg canvas, never
``pyplot``) and writes it atomically (:func:`whitebox.io.atomic_write`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .analysis.ablation import AblationResult, smooth
from .analysis.approximations import METHODS
from .analysis.attention_maps import AttentionPicture, displayable, upsample
from .analysis.layerwise import LABELS, PUBLISHED_EPS, LayerwiseMeasurement
from .analysis.measure import CheckpointMeasurement
from .analysis.segmentation import Segmentation, upsample_masks
from .analysis.within_layer import WithinLayerCompression
from .backend import array_module, to_device, to_host
from .io import atomic_write
from .models import crate_mae
from .train.mae_task import pixels

def _figure(figsize):
    """A Matplotlib figure on its own Agg canvas: no ``pyplot``, so no global backend changes (a notebook
    keeps its own) and no display is needed. Matplotlib is imported here, when a figure is drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi: int) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


SPLITS = {"train": "train (mean over the epoch's batches)", "test": "test (at the end of the epoch)"}
PANELS = {"loss": "loss", "accuracy": "accuracy"}


def plot_curves(records: list[dict], path, title: str = "") -> Path:
    """Write ``train_<metric>`` and ``test_<metric>`` against the epoch, for loss and accuracy."""
    from matplotlib.ticker import MaxNLocator

    panels = [m for m in PANELS if any(f"{split}_{m}" in r for r in records for split in SPLITS)]
    fig = _figure((5 * max(len(panels), 1), 4))
    for i, metric in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for split, label in SPLITS.items():
            points = [(r["epoch"], r[f"{split}_{metric}"]) for r in records if f"{split}_{metric}" in r]
            if points:
                epochs, values = zip(*points)
                ax.plot(epochs, values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(PANELS[metric])
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path, 100)


PLOTTED = ("rc", "r", "srr", "sparsity")


def plot_layerwise(measure_init: LayerwiseMeasurement | None, measure_trained: LayerwiseMeasurement | None,
                   path, title: str = "") -> Path:
    """Each quantity against depth, at initialisation (dashed) and after training (solid), one PNG.

    One panel per quantity of :data:`PLOTTED` that either measurement defines; the band is ± one
    standard deviation over images. Integer depths are the stages ``Z^ℓ``, half-integers the
    midpoints ``Z^{ℓ+½}`` (hollow markers).
    """
    runs = [(m, style) for m, style in ((measure_init, dict(ls="--", color="tab:gray", label="initialisation")),
                                        (measure_trained, dict(ls="-", color="tab:blue", label="trained")))
            if m is not None]
    if not runs:
        raise ValueError("plot_layerwise needs at least one measurement")
    panels = [q for q in PLOTTED if any(not math.isnan(v) for m, _ in runs for v in m.values[q])]
    fig = _figure(figsize=(3.6 * len(panels), 3.3))
    for j, q in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for m, style in runs:
            t = np.asarray(m.depth)
            v, s = np.asarray(m.values[q]), np.asarray(m.stds[q])
            ok = ~np.isnan(v)
            ax.plot(t[ok], v[ok], ls=style["ls"], color=style["color"], label=m.label or style["label"])
            ax.fill_between(t[ok], (v - s)[ok], (v + s)[ok], color=style["color"], alpha=0.15, lw=0)
            whole = ok & (t == np.floor(t))
            ax.plot(t[whole], v[whole], "o", color=style["color"], ms=4)
            ax.plot(t[ok & ~whole], v[ok & ~whole], "o", mfc="white", color=style["color"], ms=4)
        ax.set_title(LABELS[q], fontsize=9)
        ax.set_xlabel("depth (stage Z^t)")
        ax.set_xticks(range(int(max(max(m.depth) for m, _ in runs)) + 1))
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    m = runs[-1][0]
    fig.suptitle(title or f"{m.convention} convention, ε = {m.eps:g}, {m.n_images} test images", fontsize=10)
    return _save(fig, path, 90)


def plot_measurement(m: CheckpointMeasurement, out) -> list[Path]:
    """``layerwise.png`` (whitebox convention), ``layerwise_published.png`` and ``approximations.png`` in ``out``."""
    out = Path(out)
    whitebox, published = m.results["whitebox"], m.results["published"]
    return [
        plot_layerwise(whitebox["init"], whitebox["trained"], out / "layerwise.png",
                       title=f"whitebox convention (LN'd features, ε = {whitebox['trained'].eps:g}): {m.what}"),
        plot_layerwise(published["init"], published["trained"], out / "layerwise_published.png",
                       title=f"published convention (unit-norm qkv features, ε = {PUBLISHED_EPS:g}): {m.what}"),
        *([plot_sweep(m.sweep, out / "approximations.png", title=f"layer {m.sweep_layer} of {m.what}")]
          if m.sweep else []),  # no sweep for the transformer block
        plot_within_layer(m.within["init"], m.within["trained"], out / "within_layer.png", title=m.what),
    ]


def plot_within_layer(init: WithinLayerCompression | None, trained: WithinLayerCompression, path,
                      title: str = "") -> Path:
    """Bars of ``Rc`` before and after each layer's compression step (raw and orthonormalised ``U^ℓ``),
    at initialisation and trained, and the sparsity of the codes per layer. For the transformer block
    (no ``U``) the bars are ``R`` before and after each attention step."""
    rates = ((("rc_", "", "Rc before/after each compression step, raw $U^\\ell$"),
              ("rc_", "_orth", "Rc before/after each compression step, orthonormalised $U^\\ell$"))
             if trained.defines_rc else (("r_", "", "R before/after each attention step (no $U$ in this block)"),))
    fig = _figure(figsize=(4.3 * (len(rates) + 1), 3.4))
    axes = fig.subplots(1, len(rates) + 1)
    layers = np.arange(trained.depth)
    shown = [("init", init, ("lightgray", "gray")), ("trained", trained, ("lightskyblue", "tab:blue"))]
    shown = [(label, m, colors) for label, m, colors in shown if m is not None]
    width = 0.8 / (2 * len(shown))
    for ax, (prefix, suffix, name) in zip(axes, rates):
        low = []
        for i, (label, m, colors) in enumerate(shown):
            for j, (side, color) in enumerate(zip(("before", "after"), colors)):
                values = getattr(m, f"{prefix}{side}{suffix}")
                ax.bar(layers + (2 * i + j - len(shown) + 0.5) * width, values, width, color=color,
                       label=f"{label}, {side}")
                low.append(min(values))
        ax.set_ylim(0.8 * min(low), None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_xticks(layers)
    axes[0].legend(fontsize=7)
    for label, m, colors in shown:
        axes[-1].plot(layers, m.sparsity, "o-", color=colors[1], label=label)
    axes[-1].set_title("inactive units (≤ 0) in the codes", fontsize=9)
    axes[-1].set_xlabel("layer")
    axes[-1].set_xticks(layers)
    axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(f"{title} (ε = {trained.eps:g}, {trained.n_images} images, tokens LayerNorm'ed without affine)",
                     fontsize=9)
    return _save(fig, path, 90)


SWEEP_COLORS = {"exact": "black", "neumann": "tab:orange", "tied": "tab:green", "published": "tab:purple"}


def plot_sweep(rows: list[dict], path, title: str = "") -> Path:
    """One column per ε: the relative change of Rc against κ (top) and the distance of each
    approximation to the exact step (bottom), one line per method."""
    epss = sorted({r["eps"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig = _figure(figsize=(3.4 * len(epss), 5.6))
    axes = fig.subplots(2, len(epss), squeeze=False)
    for j, eps in enumerate(epss):
        top, bottom = axes[0, j], axes[1, j]
        for m in methods:
            sel = sorted((r for r in rows if r["eps"] == eps and r["method"] == m), key=lambda r: r["kappa"])
            kappa = [r["kappa"] for r in sel]
            top.plot(kappa, [r["rc_change"] for r in sel], "o-", ms=3, color=SWEEP_COLORS[m], label=m)
            if m != "exact":
                bottom.plot(kappa, [max(r["dist_exact"], 1e-12) for r in sel], "o-", ms=3, color=SWEEP_COLORS[m], label=m)
        top.set_xscale("log")
        top.set_yscale("symlog", linthresh=1e-3)
        top.axhline(0, color="gray", lw=0.8)
        top.set_title(f"ε = {eps:g}", fontsize=9)
        top.set_ylabel("Rc(Z⁺)/Rc(Z) − 1" if j == 0 else "")
        bottom.set_xscale("log")
        bottom.set_yscale("log")
        bottom.set_xlabel("κ")
        bottom.set_ylabel("‖Z⁺ − Z⁺_exact‖ / ‖Z⁺_exact − Z‖" if j == 0 else "", fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, 90)


def plot_attention_grid(raw_images: np.ndarray, attention: np.ndarray, path, *, pca: np.ndarray | None = None,
                        mode: str = "nearest", labels=None, title: str = "", layer_names=("", "")) -> Path:
    """A PNG grid: one row per image; columns the image, each head's cls attention overlaid, and
    (when ``pca`` is given) the RGB PCA picture.

    raw_images (B, C, H, W) uint8 (or floats in [0, 1]); attention (B, K, gh, gw); pca (B, gh, gw, 3).
    Each head's map is min-max scaled per image for display.
    """
    B, K = attention.shape[:2]
    H, W = raw_images.shape[-2:]
    shown = displayable(raw_images)  # (B, H, W) or (B, H, W, 3)
    heat = upsample(attention, (H, W), mode)  # (B, K, H, W)
    lo, hi = heat.min(axis=(-2, -1), keepdims=True), heat.max(axis=(-2, -1), keepdims=True)
    heat = (heat - lo) / np.where(hi > lo, hi - lo, 1.0)
    cols = 1 + K + (pca is not None)
    fig = _figure(figsize=(1.35 * cols, 1.4 * B + (0.4 if title else 0.1)))
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
    return _save(fig, path, 80)


def plot_attention_picture(picture: AttentionPicture, path, mode: str = "nearest") -> Path:
    """:func:`plot_attention_grid` of what :func:`whitebox.analysis.attention_maps.attention_checkpoint` found."""
    return plot_attention_grid(picture.raw, picture.attention, path, pca=picture.pca, mode=mode, labels=picture.labels,
                               title=picture.title, layer_names=picture.layer_names)


ABLATION_COLORS = {"crate": "tab:gray", "+O": "tab:orange", "+O+D": "tab:green", "+O+D+R": "tab:blue"}


def plot_ablation(result: AblationResult, path) -> Path:
    """Left: training loss per step (smoothed; mean over seeds, band min to max). Right: test accuracy."""
    fig = _figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    summary = result.summary()
    for j, row in enumerate(summary):
        runs = [r for r in result.runs if r["variant"] == row["variant"]]
        steps = min(len(r["losses"]) for r in runs)
        window = max(1, steps // 20)
        curves = np.stack([smooth(r["losses"][:steps], window) for r in runs])  # (seeds, steps)
        x = np.arange(1, steps + 1)
        color = ABLATION_COLORS[row["variant"]]
        left.plot(x, curves.mean(axis=0), color=color, label=row["name"])
        left.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2, lw=0)
        right.errorbar([j], [row["accuracy_mean"]], yerr=[row["accuracy_std"]], fmt="o", color=color, capsize=4)
        right.plot([j] * len(row["accuracies"]), row["accuracies"], ".", color=color, alpha=0.5)
    left.set_xlabel("training step")
    left.set_ylabel("training loss (label-smoothed CE, smoothed)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_xticks(range(len(summary)), [r["variant"] for r in summary], fontsize=8)
    right.set_ylabel("test accuracy")
    right.set_title("mean ± std; dots: seeds", fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(f"CRATE-alpha ablation on {result.dataset} ({result.budget} budget, {len(result.seeds)} seeds)",
                 fontsize=10)
    return _save(fig, path, 90)


def reconstruction_grid(params: dict, cfg, images, path, *, seed: int = 0, dtype=np.float32) -> Path:
    """A PNG of three rows for uint8 ``images`` (B, C, H, W): masked input, reconstruction, original.

    The mask of each image is drawn from ``seed``; masked patches show as mid grey in the first
    row, and in the second row are the model's prediction (the visible patches are the input's).
    """
    xp = array_module(*params.values())
    x = pixels(to_device(images, xp), dtype)
    mask = crate_mae.make_mask(cfg, len(x), seed)
    mask = crate_mae.Mask(to_device(mask.keep, xp), to_device(mask.masked, xp))
    rows = {
        "masked input": crate_mae.masked_images(x, cfg, mask, fill=0.5),
        "reconstruction": crate_mae.reconstruct(params, x, cfg, mask),
        "original": x,
    }
    count = len(x)
    fig = _figure(figsize=(1.2 * count, 1.3 * len(rows)))
    for r, (label, batch) in enumerate(rows.items()):
        batch = np.clip(to_host(batch), 0.0, 1.0)
        for i in range(count):
            ax = fig.add_subplot(len(rows), count, r * count + i + 1)
            image = batch[i].transpose(1, 2, 0)  # H, W, C
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"CRATE-MAE: {cfg.mask_ratio:.0%} of the patches masked", fontsize=9)
    return _save(fig, path, 100)


def plot_segmentation(seg: Segmentation, path, n_images: int = 6) -> Path:
    """Columns of the first ``n_images`` images: the image, its true mask, then each method's patch mask
    over the image (its mIoU at pixel resolution in the row title)."""
    n = min(n_images, len(seg.raw))
    rows = ["image", "true mask"] + list(seg.predicted)
    fig = _figure(figsize=(1.6 * n + 0.8, 1.7 * len(rows)))
    axes = np.asarray(fig.subplots(len(rows), n, squeeze=False))
    images = displayable(seg.raw[:n])
    for j in range(n):
        axes[0, j].imshow(images[j], cmap="gray" if images.ndim == 3 else None)
        axes[1, j].imshow(seg.masks[j], cmap="gray", vmin=0, vmax=1)
        for i, method in enumerate(seg.predicted, start=2):
            mask = upsample_masks(seg.predicted[method][j:j + 1], seg.patch)[0]
            axes[i, j].imshow(images[j], cmap="gray" if images.ndim == 3 else None)
            axes[i, j].imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.55, vmin=0, vmax=1)
    for i, name in enumerate(rows):
        label = f"{name}\nmIoU {seg.miou[name]['pixel']:.2f}" if name in seg.miou else name
        axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(seg.title, fontsize=9)
    return _save(fig, path, 100)


def plot_segmentation_experiment(rows: list[dict], path, title: str = "", references: dict | None = None) -> Path:
    """Left: segmentation mIoU (pixel) of MaskCut and of the attention threshold per (model, training);
    right: k-NN accuracy. ``rows``: dicts with ``name``, ``maskcut``, ``attention``, ``knn`` (lists over
    seeds; ``knn`` may be empty); ``references``: label -> mIoU, each drawn as a horizontal line."""
    fig = _figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    x = np.arange(len(rows))
    for offset, key, color in ((-0.18, "maskcut", "tab:blue"), (0.18, "attention", "tab:orange")):
        values = [r[key] for r in rows]
        left.bar(x + offset, [np.mean(v) for v in values], width=0.34, color=color, label=key,
                 yerr=[np.std(v) for v in values], capsize=3)
        for xi, v in zip(x, values):
            left.plot([xi + offset] * len(v), v, "k.", ms=3)
    for (label, value), style in zip((references or {}).items(), ("--", ":", "-.")):
        left.axhline(value, color="gray", ls=style, lw=1, label=label)
    left.set_xticks(x, [r["name"] for r in rows], fontsize=7, rotation=20)
    left.set_ylabel("mIoU (pixel resolution)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3, axis="y")
    knn = [(i, r["knn"]) for i, r in enumerate(rows) if len(r["knn"])]
    right.bar([i for i, _ in knn], [np.mean(v) for _, v in knn], yerr=[np.std(v) for _, v in knn], capsize=3,
              color="tab:green")
    right.set_xticks(x, [r["name"] for r in rows], fontsize=7, rotation=20)
    right.set_ylabel("k-NN accuracy (k = 20)")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path, 100)
