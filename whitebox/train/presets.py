"""Named training recipes: a model shape, an optimiser, a schedule, a length, a batch size.

The image size, channels and number of classes are not part of a preset: they come from the
dataset (:func:`whitebox.data.dataset_info`). Every field can be overridden on the command line
(``--lr``, ``--epochs`` ..., and ``--set dim=128`` for a model field).

==================  =========================================================================
``mnist-demo``      ``make demo``: 98.3% on MNIST after 6 epochs, about 6 CPU-minutes (measured below)
``mnist``           the benchmark recipe for MNIST (target >= 99.0% test accuracy)
``fashion-mnist``   the benchmark recipe for Fashion-MNIST (target >= 90% test accuracy)
==================  =========================================================================

The recipes follow the published CRATE training (REFERENCE §5: AdamW, weight decay on matrices,
label smoothing 0.1, linear warmup then cosine, random crops), scaled down to 28 x 28 images.

Measured (``mnist-demo``, float32, seed 0, 2-core x86 machine shared with other jobs, load 5-6,
``OPENBLAS_NUM_THREADS=1``): test accuracy 93.3, 95.5, 97.0, 97.6, 98.1, 98.3% after epochs 1-6;
9 min 25 s of wall time for 6 min 12 s of CPU time, i.e. about 6 minutes on an idle core. The
benchmark recipes (``benchmarks/accuracy.py``) train a wider model for 12 epochs; their results
are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """A training recipe; ``model`` holds fields of the model's Config (dim, depth, heads ...)."""

    description: str
    dataset: str
    model: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # linear warmup, then cosine to min_lr at the last step
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    clip_grad: float | None = None  # cap on the global gradient norm
    augment: bool = True  # the dataset's default augmentation (random crops; flips where they make sense)


PRESETS = {
    "mnist-demo": Preset(
        "a small CRATE for MNIST on a laptop CPU (make demo)",
        dataset="mnist",
        model=dict(patch_size=7, dim=96, depth=6, heads=4, dim_head=24),
        epochs=6, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=0.5,
    ),
    "mnist": Preset(
        "the MNIST benchmark recipe (target: >= 99.0% test accuracy)",
        dataset="mnist",
        model=dict(patch_size=7, dim=128, depth=6, heads=4, dim_head=32),
        epochs=12, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=1,
    ),
    "fashion-mnist": Preset(
        "the Fashion-MNIST benchmark recipe (target: >= 90% test accuracy)",
        dataset="fashion-mnist",
        model=dict(patch_size=7, dim=128, depth=6, heads=4, dim_head=32),
        epochs=12, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=1,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset ``name``; ``ValueError`` naming the presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)}")
    return PRESETS[name]
