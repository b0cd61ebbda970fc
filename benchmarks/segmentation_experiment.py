#!/usr/bin/env python
"""Do CRATE's features segment objects and a ViT's not? CRATE vs ViT on the scenes (issue 17 item 6).

The claim (CRATE segmentation paper, CRATE-alpha §4.4, docs/reference.md §9): the last layer of a
supervised CRATE segments objects without mask supervision — MaskCut on its patch features finds
them — while a supervised ViT's does not. Here, at small scale, on the scenes dataset
(:mod:`whitebox.data.scenes`: MNIST digits tinted on crops of photographs, 32 × 32 RGB, patch 4,
the true masks known), for each backbone (``crate``, ``vit``: the same embedding, width, depth,
heads and head, the block the only difference) and each training (supervised ``classification``;
``dino`` and ``simdino`` where ``whitebox train --task`` offers them), with the same data, epochs
and seeds, the script

1. trains through the shared loop (``whitebox.train.start_run``, the code of ``whitebox train``),
   one run folder per (model, training, seed) under ``--out``;
2. measures segmentation (:func:`whitebox.analysis.segmentation.segment_images`, the code of
   ``whitebox segment``) on the first ``--test-limit`` test scenes: MaskCut on the last layer's
   patch features and the cls-attention threshold, mIoU at pixel resolution;
3. measures the frozen features by k-NN accuracy (k = 20, cosine, temperature-weighted votes)
   when ``whitebox knn`` exists (issue 17 item 4), and the supervised runs' test accuracy;
4. adds three references: the same models at initialisation (no training), MaskCut on each
   patch's raw pixels (the bar that learned features must clear to beat colour alone), and the
   true masks at the patch grid (about the best mIoU a patch mask can reach at pixel resolution);
5. writes a section into ``--results`` (``benchmarks/RESULTS.md``) with the date, the command and
   its CPU time, a Markdown table (mean ± std over seeds) and the figure ``--figure``.

Budget knobs: ``--epochs``, ``--max-steps``, ``--train-limit``, ``--test-limit``, ``--seeds``,
``--only`` (rows by model, training or ``model-training``). The default budget (1,200 training
scenes, 3 epochs, 3 seeds, 500 test scenes) is sized for about 35 minutes on one idle core. Measured
on the shared 2-core machine under a load of 6-8 (2026-12-02, 1,500 training and 1,000 test scenes):
a supervised CRATE run took 50 s and a CRATE-DINO run 394 s (multi-crop, the teacher, the k-NN bank
and the per-epoch evaluation), measurements included; scaled to the default budget that is about
35 s and 280 s, so 6 supervised and 12 self-supervised runs take about an hour on that busy
machine and, at the 2x speed of an idle core, about 30-35 minutes. At this budget the supervised
models are still close to chance on the scenes (15% test accuracy after 564 updates in a
calibration run): the CPU table measures barely trained features, and ``--device gpu`` with
``--train-limit 20000 --epochs 30`` is the budget at which the claim can really be tested.

Examples::

    python benchmarks/segmentation_experiment.py                              # the recorded run
    python benchmarks/segmentation_experiment.py --only classification --seeds 1 --epochs 1
    python benchmarks/segmentation_experiment.py --device gpu --train-limit 20000 --epochs 30
"""

from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import early_threads  # noqa: E402

if __name__ == "__main__":
    early_threads(sys.argv[1:])

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whitebox.analysis.maskcut import maskcut_batch  # noqa: E402
from whitebox.analysis.segmentation import (  # noqa: E402
    backbone,
    mean_iou,
    patch_masks,
    pixel_features,
    segment_images,
)
from whitebox.data import load_scenes  # noqa: E402
from whitebox.figures import plot_segmentation_experiment  # noqa: E402
from whitebox.io import atomic_write_text  # noqa: E402
from whitebox.train import load_run, resolve_config, start_run  # noqa: E402
from whitebox.train.config import DEFAULT_PRESETS, TASKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("crate", "vit")
TRAININGS = ("classification", "dino", "simdino")
TRAINING_NAMES = {"classification": "supervised", "dino": "DINO", "simdino": "SimDINO", "init": "at init"}
MODEL = dict(patch_size=4, dim=64, depth=4, heads=4, dim_head=16)  # the scenes preset's model
SECTION = "## Segmentation without masks: CRATE vs ViT (issue 17)"
HAS_KNN = importlib.util.find_spec("whitebox.analysis.knn") is not None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/segmentation", help="run folders go here (default runs/segmentation)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of every training (default 3)")
    p.add_argument("--max-steps", type=int, help="stop every training after this many updates")
    p.add_argument("--train-limit", type=int, default=1200, help="training scenes (default 1200)")
    p.add_argument("--test-limit", type=int, default=500, help="test scenes measured (default 500)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    p.add_argument("--only", help="comma-separated rows to run: a model (crate), a training (dino) or both "
                                  "(vit-simdino); default all")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--data-dir", help="look for MNIST (and cache the scenes) here first")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"),
                   help="the Markdown file whose section is (re)written (default benchmarks/RESULTS.md)")
    p.add_argument("--figure", default=str(ROOT / "benchmarks" / "figures" / "segmentation.png"))
    return p.parse_args(argv)


def planned_rows(only: str | None) -> list[tuple[str, str]]:
    """(model, training) pairs to run: those ``--only`` names whose training ``whitebox train`` offers."""
    rows = [(m, t) for t in TRAININGS for m in MODELS]
    if only:
        tokens = {t.strip() for t in only.split(",") if t.strip()}
        unknown = tokens - set(MODELS) - set(TRAININGS) - {f"{m}-{t}" for m, t in rows}
        if unknown:
            raise SystemExit(f"--only: unknown row(s) {sorted(unknown)}; use models {MODELS}, trainings "
                             f"{TRAININGS} or model-training")
        rows = [(m, t) for m, t in rows if tokens & {m, t, f"{m}-{t}"}]
    missing = sorted({t for _, t in rows if t not in TASKS})
    if missing:
        log(f"skipping {missing}: whitebox train has no such task yet (issue 17 items 2-3)")
    return [(m, t) for m, t in rows if t in TASKS]


def train_one(model: str, training: str, seed: int, args):
    """The :class:`whitebox.train.RunResult` of one training (its folder ``--out``/model-training-seedS)."""
    out = Path(args.out) / f"{model}-{training}-seed{seed}"
    preset = "scenes" if training == "classification" else DEFAULT_PRESETS[training]
    config = resolve_config(model, preset, task=training, dataset="scenes", model_overrides=MODEL, seed=seed,
                            epochs=args.epochs, batch_size=args.batch_size, train_limit=args.train_limit,
                            test_limit=args.test_limit)
    return start_run(config, out, device=args.device, data_dir=args.data_dir, overwrite=True,
                     max_steps=args.max_steps, quiet=True)


def knn_accuracy(run_dir: Path, args) -> float | None:
    """The k-NN accuracy of a run's frozen features (None until ``whitebox knn`` exists)."""
    if not HAS_KNN:
        return None
    from whitebox.analysis.knn import knn_checkpoint

    return knn_checkpoint(run_dir, device=args.device, data_dir=args.data_dir, train_limit=args.train_limit,
                          test_limit=args.test_limit).accuracy


def measure(model, params, cfg, scenes) -> dict:
    seg = segment_images(model, params, cfg, scenes.images, scenes.masks)
    return {m: s["pixel"] for m, s in seg.miou.items()}


def references(scenes) -> dict:
    """mIoU (pixel) of MaskCut on raw pixels, and of the true patch masks (about the best a patch mask can score)."""
    P = MODEL["patch_size"]
    grid = (scenes.images.shape[-1] // P,) * 2
    return {"pixels": mean_iou(maskcut_batch(pixel_features(scenes.images, P), grid), scenes.masks, P)["pixel"],
            "oracle": mean_iou(patch_masks(scenes.masks, P), scenes.masks, P)["pixel"]}


def run_rows(args) -> tuple[list[dict], dict]:
    scenes = load_scenes("test", args.data_dir)
    scenes = type(scenes)(*(a[:args.test_limit] for a in scenes))
    refs = references(scenes)
    log(f"MaskCut on raw pixels: mIoU {refs['pixels']:.3f}; true patch masks: {refs['oracle']:.3f}")
    rows = []
    plan = planned_rows(args.only)
    for model in sorted({m for m, _ in plan}, key=MODELS.index):
        row = dict(model=model, training="init", maskcut=[], attention=[], knn=[], accuracy=[], seconds=[])
        for seed in range(args.seeds):
            cfg_run = resolve_config(model, "scenes", dataset="scenes", model_overrides=MODEL, seed=seed)
            module, cfg = cfg_run.model_module(), cfg_run.model_cfg()
            scores = measure(module, module.init(cfg, seed=seed, dtype=np.float32), cfg, scenes)
            row["maskcut"].append(scores["maskcut"])
            row["attention"].append(scores["attention"])
        rows.append(row)
    for model, training in plan:
        row = dict(model=model, training=training, maskcut=[], attention=[], knn=[], accuracy=[], seconds=[])
        for seed in range(args.seeds):
            began = time.perf_counter()
            result = train_one(model, training, seed, args)
            out = result.paths.out
            run = load_run(out, device="cpu")
            scores = measure(*backbone(run), scenes)
            row["maskcut"].append(scores["maskcut"])
            row["attention"].append(scores["attention"])
            knn = knn_accuracy(out, args)
            if knn is not None:
                row["knn"].append(knn)
            if result.record and "test_accuracy" in result.record:  # no record when stopped within the first epoch
                row["accuracy"].append(result.record["test_accuracy"])
            row["seconds"].append(time.perf_counter() - began)
            log(f"{model} {training} seed {seed}: MaskCut {scores['maskcut']:.3f}, attention "
                f"{scores['attention']:.3f}, k-NN {knn}, {row['seconds'][-1]:.0f} s")
        rows.append(row)
    return rows, refs


def _cell(values, percent: bool = False) -> str:
    if not values:
        return "—"
    scale, unit = (100, "%") if percent else (1, "")
    mean, std = scale * float(np.mean(values)), scale * float(np.std(values))
    return f"{mean:.1f}{unit} ± {std:.1f}" if percent else f"{mean:.3f} ± {std:.3f}"


def table(rows: list[dict], refs: dict) -> str:
    lines = ["| model | training | MaskCut mIoU | attention mIoU | k-NN accuracy | test accuracy | seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {TRAINING_NAMES[r['training']]} | {_cell(r['maskcut'])} | "
                     f"{_cell(r['attention'])} | {_cell(r['knn'], True)} | {_cell(r['accuracy'], True)} | "
                     f"{len(r['maskcut'])} |")
    lines.append(f"| MaskCut on raw pixels | — | {refs['pixels']:.3f} | — | — | — | — |")
    lines.append(f"| true masks at the patch grid (about the best score) | — | {refs['oracle']:.3f} | — | — | — "
                 "| — |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> list[str]:
    """CRATE minus ViT, MaskCut mIoU, per training: the claim's test."""
    by = {(r["model"], r["training"]): r for r in rows}
    out = []
    for training in ("init",) + TRAININGS:
        if ("crate", training) in by and ("vit", training) in by:
            c, v = by[("crate", training)]["maskcut"], by[("vit", training)]["maskcut"]
            diff = float(np.mean(c) - np.mean(v))
            out.append(f"- {TRAINING_NAMES[training]}: CRATE − ViT MaskCut mIoU = {diff:+.3f} (std over seeds: "
                       f"CRATE {np.std(c):.3f}, ViT {np.std(v):.3f}; {len(c)} and {len(v)} seeds)")
    return out


def write_section(path: Path, text: str) -> None:
    """Replace the section :data:`SECTION` of ``path`` (up to the next ``## `` heading) or append it."""
    old = path.read_text() if path.is_file() else "# Results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    atomic_write_text(path, new if new.endswith("\n") else new + "\n")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    began = time.perf_counter()
    rows, refs = run_rows(args)
    seconds = time.perf_counter() - began
    figure = Path(args.figure)
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_segmentation_experiment(
        [dict(name=f"{r['model']} {TRAINING_NAMES[r['training']]}", maskcut=r["maskcut"], attention=r["attention"],
              knn=r["knn"]) for r in rows], figure,
        title=f"scenes, {args.train_limit} training images, {args.epochs} epochs, {args.seeds} seeds",
        references={"MaskCut on raw pixels": refs["pixels"], "true masks at the patch grid": refs["oracle"]})
    command = "python benchmarks/segmentation_experiment.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = Path(args.results)
    try:
        shown = figure.resolve().relative_to(results.resolve().parent)
    except ValueError:
        shown = figure
    knn_note = "" if HAS_KNN else " k-NN: not measured (no `whitebox knn` in this checkout)."
    text = "\n".join([
        SECTION, "",
        f"{datetime.date.today().isoformat()}, `{command.strip()}` ({args.device}, {args.threads} BLAS thread(s), "
        f"{platform.machine()}; {seconds / 60:.1f} minutes in all). Scenes (digits on photographs, 32 × 32, patch 4: "
        f"8 × 8 patches), {args.train_limit} training images, {args.epochs} epochs"
        f"{f' (at most {args.max_steps} steps)' if args.max_steps else ''}, batch {args.batch_size}, width "
        f"{MODEL['dim']}, depth {MODEL['depth']}, {MODEL['heads']} heads; mIoU over the first {args.test_limit} "
        f"test scenes at pixel resolution (patch masks upsampled), mean ± std over seeds.{knn_note}", "",
        table(rows, refs), "", *verdict(rows), "", f"![segmentation]({shown})", "",
    ])
    write_section(results, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
