"""``whitebox report``: the white-box report of a trained classifier, in a few seconds.

What the derivation claims, measured on the run's own test images: each layer's compression step
lowers ``Rc`` against its own subspaces (:mod:`.within_layer`, at initialisation and trained), the
sparse-coding step zeroes codes, and the cls token's attention falls on the object
(:mod:`.attention_maps`). ``make demo`` ends with it; ``whitebox measure`` is the full version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import array_module
from ..io import atomic_write_text
from ..train import LoadedRun
from .attention_maps import AttentionPicture, attention_checkpoint
from .layerwise import load_trained, test_images
from .within_layer import within_layer_compression


@dataclass(frozen=True)
class Report:
    """``within["init" | "trained"]``: :class:`~.within_layer.WithinLayerCompression`; ``attention``: the
    cls-token attention of the last layer on a few test images."""

    run: LoadedRun
    dataset: str
    within: dict
    attention: AttentionPicture

    def summary(self) -> str:
        shares = ", ".join(f"{v:.0%}" for v in self.attention.object_share)
        return "\n".join([f"white-box report of {self.run.config.model} on {self.dataset} (step {self.run.step}):",
                          *(f"  {w.summary()}" for w in self.within.values()),
                          f"  cls attention of the last layer on object patches, per head: {shares} "
                          f"(uniform attention: {self.attention.object_fraction:.0%})"])

    def to_markdown(self) -> str:
        return "\n".join([f"# White-box report: {self.run.config.model} on {self.dataset}, step {self.run.step}\n",
                          "## Rc before and after each layer's compression step, against its own subspaces\n",
                          *(w.to_markdown() for w in self.within.values()),
                          "## Attention of the cls token (last layer) on object patches\n",
                          "| head | share on object patches |", "|---|---|",
                          *(f"| {k} | {v:.3f} |" for k, v in enumerate(self.attention.object_share)),
                          f"\nObject patches (mean intensity > 0.1) are {self.attention.object_fraction:.3f} "
                          "of all patches: the share of uniform attention.\n"])

    def write_tables(self, out) -> list[Path]:
        """``report.md`` and ``report.json`` in ``out``."""
        out = Path(out)
        data = {"checkpoint": str(self.run.path), "model": self.run.config.model, "dataset": self.dataset,
                "step": self.run.step, "within_layer": {k: w.to_dict() for k, w in self.within.items()},
                "attention_object_share": [float(v) for v in self.attention.object_share],
                "object_fraction": self.attention.object_fraction}
        return [atomic_write_text(out / "report.json", json.dumps(data, indent=2) + "\n"),
                atomic_write_text(out / "report.md", self.to_markdown())]


def report_checkpoint(path, *, n_images: int = 256, attention_images: int = 4, device: str | None = None,
                      data_dir=None) -> Report:
    """The report of the classifier saved at ``path`` (a run folder or its checkpoint)."""
    run = load_trained(path, device=device)
    dataset = run.config.dataset
    images, _, _ = test_images(dataset, n_images, run.cfg, xp=array_module(*run.params.values()),
                               dtype=np.dtype(run.config.dtype).type, data_dir=data_dir)
    within = {"init": within_layer_compression(run.initial_params(), images, run.cfg, model=run.model,
                                               label="initialisation"),
              "trained": within_layer_compression(run.params, images, run.cfg, model=run.model,
                                                  label=f"trained (step {run.step})")}
    attention = attention_checkpoint(path, n_images=attention_images, device=device, data_dir=data_dir)
    return Report(run, dataset, within, attention)
