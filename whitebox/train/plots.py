"""Learning curves as a PNG: one panel per metric (loss, accuracy), training and test per epoch.

Drawn with Matplotlib's object interface on an Agg canvas: no ``pyplot``, so nothing global
changes (a notebook keeps its own backend) and no display is needed.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import atomic_write

SPLITS = {"train": "train (mean over the epoch's batches)", "test": "test (at the end of the epoch)"}
PANELS = {"loss": "loss", "accuracy": "accuracy"}


def plot_curves(records: list[dict], path, title: str = "") -> Path:
    """Write ``train_<metric>`` and ``test_<metric>`` against the epoch, for loss and accuracy."""
    panels = [m for m in PANELS if any(f"{split}_{m}" in r for r in records for split in SPLITS)]
    fig = Figure(figsize=(5 * max(len(panels), 1), 4), layout="constrained")
    FigureCanvasAgg(fig)
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
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
