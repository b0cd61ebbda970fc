"""``whitebox measure``: a checkpoint measured layer by layer, at initialisation and trained, and the
approximation checks on its trained layers; the tables as files (the figures: :mod:`whitebox.figures`).

A classifier is measured on the first test images of a dataset; a token model (a causal or
masked language model, or a genre classifier: :mod:`whitebox.models.crate_lm`) on windows of its
own held-out text (:func:`token_inputs`), uncorrupted, its tokens playing the part of patches.

For the standard transformer block (ViT) the approximation checks are not run: they compare a
layer's compression step with the gradient step on ``Rc`` against its subspaces ``U`` and its sparse
step with the LASSO of its dictionary ``D``, and that block has neither (``sweep`` and ``lasso``
are empty, and the tables say so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import array_module
from ..io import atomic_write_text
from ..data.plays import evenly
from ..data.text import sequential_windows
from ..models.checks import is_transformer
from ..train import LoadedRun
from ..train.build import build_task
from ..train.config import TEXT_TASKS
from . import approximations
from .layerwise import CONVENTIONS, load_trained, measure_layerwise, test_images
from .within_layer import within_layer_compression

SWEEP_IMAGES = 16
NOT_DEFINED = "Not defined for the transformer block: it has no subspaces U and no dictionary D.\n"


@dataclass(frozen=True)
class CheckpointMeasurement:
    """What ``whitebox measure`` finds: ``results[convention]["init" | "trained"]`` are
    :class:`~whitebox.analysis.layerwise.LayerwiseMeasurement`; ``sweep`` and ``lasso`` the rows of
    :func:`approximations.sweep_layer` (layer ``sweep_layer``) and :func:`approximations.lasso_through_layers`;
    ``within["init" | "trained"]`` the :class:`~whitebox.analysis.within_layer.WithinLayerCompression`."""

    run: LoadedRun
    dataset: str
    results: dict
    sweep_layer: int
    sweep: list
    lasso: list
    within: dict

    @property
    def what(self) -> str:
        return f"{self.run.config.model} on {self.dataset}, step {self.run.step}"

    def to_dict(self) -> dict:
        return {"checkpoint": str(self.run.path), "model": self.run.config.model, "dataset": self.dataset,
                "step": self.run.step, "within_layer": {k: w.to_dict() for k, w in self.within.items()},
                **{c: {k: m.to_dict() for k, m in pair.items()} for c, pair in self.results.items()}}

    def to_markdown(self) -> str:
        text = [f"# Layer-by-layer measurement: {self.what}\n",
                "## Within each layer: Rc before and after its compression step, against its own subspaces\n"]
        text += [w.to_markdown() for w in self.within.values()]
        for convention, pair in self.results.items():
            for m in pair.values():
                text.append(f"## {convention}: {m.label}\n\n{m.to_markdown()}")
        text.append(f"## Approximations of the compression step (layer {self.sweep_layer}, {SWEEP_IMAGES} images)\n\n"
                    + (approximations.table_markdown(self.sweep) if self.sweep else NOT_DEFINED))
        text.append("## LASSO objective through the proximal steps\n\n"
                    + (approximations.table_markdown(self.lasso) if self.lasso else NOT_DEFINED))
        return "\n".join(text)

    def write_tables(self, out) -> list[Path]:
        """``measure.json`` and ``measure.md`` in ``out``."""
        out = Path(out)
        return [atomic_write_text(out / "measure.json", json.dumps(self.to_dict(), indent=2) + "\n"),
                atomic_write_text(out / "measure.md", self.to_markdown())]


HELD_OUT_TEXT = "Shakespeare (held-out text)"


def token_inputs(run: LoadedRun, n: int, xp=np):
    """``n`` windows (n, block_size) of a token model's held-out text, on ``xp``: evenly spaced windows of
    the validation text (lm, mlm; no masks) or evenly spaced test passages (genre)."""
    task, _, _ = build_task(run.config, xp, tokenizer=run.tokenizer(), train=False)
    if hasattr(task, "test_tokens"):
        windows = task.test_tokens[evenly(len(task.test_tokens), n)]
    else:
        windows, _ = sequential_windows(task.val_tokens, run.cfg.block_size, n)
    return xp.asarray(windows)


def measure_checkpoint(path, *, dataset: str | None = None, n_images: int = 256, eps: float | None = None,
                       lambd: float | None = None, device: str | None = None, data_dir=None,
                       sweep_layer: int | None = None) -> CheckpointMeasurement:
    """Both conventions, at initialisation and trained, on the first ``n_images`` test images (a token
    model: ``n_images`` windows of its held-out text), and the approximation checks (the sweep on layer
    ``sweep_layer``, default the middle one)."""
    run = load_trained(path, device=device, tokens=True)
    depth = run.cfg.depth
    sweep_layer = depth // 2 if sweep_layer is None else sweep_layer
    if not 0 <= sweep_layer < depth:
        raise ValueError(f"--sweep-layer must be a layer of the model, 0 to {depth - 1}, got {sweep_layer}")
    xp = array_module(*run.params.values())
    if run.config.task in TEXT_TASKS:
        if dataset is not None:
            raise ValueError(f"a {run.config.task} run is measured on its own held-out text; drop --dataset {dataset}")
        dataset, images = HELD_OUT_TEXT, token_inputs(run, n_images, xp)
    else:
        dataset = dataset or run.config.dataset
        images, _, _ = test_images(dataset, n_images, run.cfg, xp=xp, dtype=np.dtype(run.config.dtype).type,
                                   data_dir=data_dir)
    init = run.initial_params()
    results = {}
    for convention in CONVENTIONS:
        e = eps if convention == "whitebox" else None
        results[convention] = {
            "init": measure_layerwise(init, images, run.cfg, model=run.model, convention=convention, eps=e,
                                      lambd=lambd, label="initialisation"),
            "trained": measure_layerwise(run.params, images, run.cfg, model=run.model, convention=convention,
                                         eps=e, lambd=lambd, label=f"trained (step {run.step})"),
        }
    sweep, lasso = [], []
    if not is_transformer(run.cfg):
        sweep = approximations.sweep_layer(run.params, images[:SWEEP_IMAGES], run.cfg, sweep_layer, model=run.model)
        lasso = approximations.lasso_through_layers(run.params, images, run.cfg, model=run.model)
    within = {"init": within_layer_compression(init, images, run.cfg, model=run.model, label="initialisation"),
              "trained": within_layer_compression(run.params, images, run.cfg, model=run.model,
                                                  label=f"trained (step {run.step})")}
    return CheckpointMeasurement(run, dataset, results, sweep_layer, sweep, lasso, within)
