#!/usr/bin/env python
"""Beyond classification: CRATE-MAE on MNIST and a causal CRATE on Shakespeare, measured on the CPU.

Both models train through the shared loop (``whitebox.train.start_run``, the code
behind ``whitebox train --task mae|lm``) in a temporary run folder, then the script measures:

**CRATE-MAE** (preset ``mnist-mae``: 7×7 patches of 4×4, width 64, 3 encoder + 3 decoder layers,
75% of the patches masked; pixels in [0, 1]):

* masked-patch reconstruction MSE on the 10,000 test images (per masked patch, the mean squared
  pixel error; masks fixed by the seed, the same for every row), against the trivial baseline
  that predicts, for every masked patch, the mean training image's pixels at that position, and
  against the untrained model;
* a linear probe: ridge regression onto one-hot labels (hand-written closed form, features
  standardised with training statistics, bias unpenalised), fitted on the first ``--probe-train``
  training images (default 20,000; the ridge λ is picked on the last quarter of them, then the
  probe is refitted on all of them), test accuracy on the 10,000 test images, for features of
  the frozen encoder (mean of its output patch tokens, no masking) of the trained and of the
  untrained model, and for the raw 784 pixels.

**Causal CRATE** (preset ``shakespeare-char`` made CPU-sized, see ``--lm-*``): validation loss
in bits per character over the *whole* validation text (the last 10% of the characters, read as
consecutive windows of the context length), against the unigram baseline (the cross-entropy, in
bits, of the training text's character frequencies evaluated on the validation text) and, for
reference, add-one smoothed character bigram counts; then a sample.

Results go to stdout as JSON (default) or Markdown; progress to stderr. Default budgets: about
two minutes of training per model on one free CPU core, five on a busy one (``--threads 1``: on a
shared machine a multi-threaded BLAS spends its time waiting for cores).

Examples::

    python benchmarks/beyond_classification.py                       # both, JSON
    python benchmarks/beyond_classification.py --part lm --format markdown
    python benchmarks/beyond_classification.py --part mae --mae-epochs 1 --threads 2
"""

from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import early_threads  # noqa: E402

THREADS = early_threads(sys.argv[1:])

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whitebox.layers.embedding import patchify  # noqa: E402
from whitebox.models import crate_lm, crate_mae  # noqa: E402
from whitebox.train import load_run, resolve_config, start_run  # noqa: E402

RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # λ / n_train candidates


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- CRATE-MAE ----------------------------------------------------------------------------------

def ridge_fit(X, Y, lam):
    """``W`` (f + 1, c) minimising ``‖[X 1] W − Y‖² + lam · n ‖W[:f]‖²`` (bias unpenalised)."""
    n, f = X.shape
    Xb = np.concatenate([X, np.ones((n, 1))], axis=1)
    gram = Xb.T @ Xb
    gram[np.arange(f), np.arange(f)] += lam * n
    return np.linalg.solve(gram, Xb.T @ Y)


def ridge_predict(X, W):
    return (X @ W[:-1] + W[-1]).argmax(axis=1)


def linear_probe(train_x, train_y, test_x, test_y) -> dict:
    """Ridge regression onto one-hot labels; λ chosen on the last quarter of the training rows."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std < 1e-8] = 1.0
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    onehot = np.eye(10)[train_y]
    held = len(train_x) // 4
    fit_x, val_x = train_x[:-held], train_x[-held:]
    scores = {lam: (ridge_predict(val_x, ridge_fit(fit_x, onehot[:-held], lam)) == train_y[-held:]).mean()
              for lam in RIDGE_GRID}
    best = max(scores, key=scores.get)
    W = ridge_fit(train_x, onehot, best)
    return {"test_accuracy": float((ridge_predict(test_x, W) == test_y).mean()),
            "ridge_lambda": best, "validation_accuracy": float(scores[best]), "features": int(train_x.shape[1])}


def masked_mse(params, cfg, images, seed, batch=1000) -> float:
    """The task's evaluation: masked-patch MSE with the seed's fixed masks."""
    from whitebox.train.mae_task import MAETask

    task = MAETask(cfg, images[:1], images, batch_size=1, seed=seed, dtype=np.float32, eval_batch_size=batch)
    return task.evaluate(params)["loss"]


def mean_patch_mse(cfg, train_images, test_images, seed, batch=1000) -> float:
    """Predict every masked patch by the mean training image at its position; same masks as the model."""
    from whitebox.train.mae_task import eval_mask, pixels

    mean_image = pixels(train_images, np.float64).mean(axis=0, keepdims=True)  # 1, C, H, W
    mean_patches = patchify(mean_image, cfg.patch_size)[0]  # n, P
    total = 0.0
    for lo in range(0, len(test_images), batch):
        x = pixels(test_images[lo:lo + batch], np.float64)
        mask = eval_mask(cfg, len(x), seed, lo)
        target = patchify(x, cfg.patch_size)  # b, n, P
        rows = np.arange(len(x))[:, None]
        err = (target[rows, mask.masked] - mean_patches[mask.masked]) ** 2  # b, m, P
        total += float(err.mean()) * len(x)
    return total / len(test_images)


def encoder_features(params, cfg, images, batch=1000):
    from whitebox.train.mae_task import pixels

    return np.concatenate([crate_mae.features(params, pixels(images[lo:lo + batch], np.float32), cfg, batch)
                           for lo in range(0, len(images), batch)])


def run_mae(args, folder: Path) -> dict:
    from whitebox.data import load_dataset

    config = resolve_config(preset="mnist-mae", epochs=args.mae_epochs, batch_size=args.mae_batch_size,
                            seed=args.seed)
    log(f"[mae] training {config.model} for {config.epochs} epochs of batch {config.batch_size} ...")
    began = time.perf_counter()
    result = start_run(config, folder / "mae", device="cpu", quiet=True)
    train_seconds = time.perf_counter() - began
    run = load_run(result.paths.checkpoint, device="cpu")
    cfg, params = run.cfg, run.params
    untrained = crate_mae.init(cfg, seed=config.seed)
    train_images, train_labels = load_dataset("mnist", "train")
    test_images, test_labels = load_dataset("mnist", "test")
    probe_images, probe_labels = train_images[:args.probe_train], train_labels[:args.probe_train]

    log("[mae] reconstruction MSE on the test split ...")
    began = time.perf_counter()
    mse = {"model": masked_mse(params, cfg, test_images, config.seed),
           "untrained_model": masked_mse(untrained, cfg, test_images, config.seed),
           "mean_patch_baseline": mean_patch_mse(cfg, train_images, test_images, config.seed)}
    log("[mae] linear probes ...")
    probes = {}
    for name, p in (("trained_encoder", params), ("untrained_encoder", untrained)):
        probes[name] = linear_probe(encoder_features(p, cfg, probe_images), probe_labels,
                                    encoder_features(p, cfg, test_images), test_labels)
    flat = lambda im: im.reshape(len(im), -1) / 255.0  # noqa: E731
    probes["raw_pixels"] = linear_probe(flat(probe_images), probe_labels, flat(test_images), test_labels)
    return {
        "config": result.config.to_dict(), "num_params": result.num_params, "steps": result.step,
        "probe_train_images": len(probe_images),
        "train_seconds": round(train_seconds, 1), "measure_seconds": round(time.perf_counter() - began, 1),
        "final_train_loss": result.record.get("train_loss"),
        "masked_patch_mse": mse, "linear_probe": probes,
    }


# -- causal CRATE -------------------------------------------------------------------------------

def unigram_bits(train_text: str, val_text: str) -> float:
    """Cross-entropy (bits per character) of the training character frequencies on the validation text."""
    counts = Counter(train_text)
    total = sum(counts.values())
    return -sum(n * math.log2(counts[c] / total) for c, n in Counter(val_text).items()) / len(val_text)


def bigram_bits(train_ids, val_ids, vocab_size: int) -> float:
    """Cross-entropy (bits per character) on the validation text of the training text's character
    bigrams, add-one smoothed: a reference for how much a model gains from more than one character."""
    counts = np.ones((vocab_size, vocab_size))
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log2(p[val_ids[:-1], val_ids[1:]]).mean())


def run_lm(args, folder: Path) -> dict:
    from whitebox.data.text import load_shakespeare, split_text
    from whitebox.train.lm_task import evaluate_tokens

    config = resolve_config(
        preset="shakespeare-char", epochs=args.lm_epochs, batch_size=args.lm_batch_size, lr=args.lm_lr,
        seed=args.seed, warmup_epochs=0.1,
        model_overrides=dict(block_size=args.lm_context, dim=args.lm_dim, depth=args.lm_depth,
                             heads=args.lm_heads, dim_head=args.lm_dim // args.lm_heads),
        data_overrides=dict(steps_per_epoch=args.lm_steps_per_epoch, eval_windows=64))
    log(f"[lm] training for {config.epochs} x {args.lm_steps_per_epoch} steps of batch {config.batch_size} ...")
    began = time.perf_counter()
    result = start_run(config, folder / "lm", device="cpu", quiet=True)
    train_seconds = time.perf_counter() - began
    run = load_run(result.paths.checkpoint, device="cpu")
    cfg, params, tokenizer = run.cfg, run.params, run.tokenizer()
    train_text, val_text = split_text(load_shakespeare(), config.data["val_fraction"])

    log("[lm] bits per character on the whole validation text ...")
    began = time.perf_counter()
    val = evaluate_tokens(params, cfg, tokenizer.encode(val_text), batch_size=64)
    untrained = evaluate_tokens(crate_lm.init(cfg, seed=config.seed), cfg, tokenizer.encode(val_text),
                                batch_size=64, max_windows=256)
    sample = crate_lm.sample(params, cfg, args.prompt, args.sample_chars, temperature=0.8, top_k=10,
                             seed=args.seed, tokenizer=tokenizer)
    return {
        "config": result.config.to_dict(), "num_params": result.num_params, "steps": result.step,
        "tokens_seen": result.step * config.batch_size * cfg.block_size,
        "train_seconds": round(train_seconds, 1), "measure_seconds": round(time.perf_counter() - began, 1),
        "vocab_size": tokenizer.vocab_size, "train_chars": len(train_text), "validation_chars": len(val_text),
        "validation_chars_scored": val["n"],
        "validation_bpc": val["bpc"], "untrained_bpc_256_windows": untrained["bpc"],
        "unigram_baseline_bpc": unigram_bits(train_text, val_text),
        "bigram_reference_bpc": bigram_bits(tokenizer.encode(train_text), tokenizer.encode(val_text),
                                            tokenizer.vocab_size),
        "final_train_bpc": result.record.get("train_bpc"),
        "sample": {"prompt": args.prompt, "temperature": 0.8, "top_k": 10, "seed": args.seed, "text": sample},
    }


# -- report -------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    lines = [f"# Beyond classification (CPU, {report['environment']['threads']} BLAS thread(s))", ""]
    if "mae" in report:
        m = report["mae"]
        mse, probe = m["masked_patch_mse"], m["linear_probe"]
        lines += [
            f"## CRATE-MAE on MNIST ({m['num_params']:,} parameters, {m['steps']} steps, "
            f"{m['train_seconds']:.0f} s training)", "",
            "| masked-patch MSE (test, pixels in [0, 1]) | value |", "| --- | --- |",
            f"| CRATE-MAE | {mse['model']:.5f} |",
            f"| mean training patch (baseline) | {mse['mean_patch_baseline']:.5f} |",
            f"| untrained CRATE-MAE | {mse['untrained_model']:.5f} |", "",
            f"| linear probe (ridge on {m['probe_train_images']:,} training images; test accuracy) | features "
            "| accuracy |", "| --- | --- | --- |",
        ]
        for name in ("trained_encoder", "untrained_encoder", "raw_pixels"):
            lines.append(f"| {name.replace('_', ' ')} | {probe[name]['features']} | {probe[name]['test_accuracy']:.2%} |")
        lines.append("")
    if "lm" in report:
        r = report["lm"]
        lines += [
            f"## Causal CRATE on Shakespeare ({r['num_params']:,} parameters, {r['steps']} steps, "
            f"{r['tokens_seen']:,} tokens, {r['train_seconds']:.0f} s training)", "",
            "| validation bits per character | value |", "| --- | --- |",
            f"| causal CRATE ({r['validation_chars_scored']:,} characters) | {r['validation_bpc']:.3f} |",
            f"| unigram baseline | {r['unigram_baseline_bpc']:.3f} |",
            f"| bigram counts (reference) | {r['bigram_reference_bpc']:.3f} |",
            f"| untrained model | {r['untrained_bpc_256_windows']:.3f} |", "",
            f"Sample (temperature 0.8, top-k 10, seed {r['sample']['seed']}):", "", "```",
            r["sample"]["prompt"] + r["sample"]["text"], "```", "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring for details.")
    p.add_argument("--part", choices=("all", "mae", "lm"), default="all", help="which model to train and measure")
    p.add_argument("--format", choices=("json", "markdown"), default="json", help="stdout format (default json)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads, set before NumPy loads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation, batches, masks, samples")
    p.add_argument("--out-dir", help="keep the run folders here (default: a temporary folder, deleted)")
    p.add_argument("--mae-epochs", type=int, default=2, help="MNIST epochs for CRATE-MAE (default 2, 938 steps)")
    p.add_argument("--mae-batch-size", type=int, default=128)
    p.add_argument("--probe-train", type=int, default=20_000, help="training images of the linear probes")
    p.add_argument("--lm-epochs", type=int, default=3, help="character-model 'epochs' (default 3: 1500 steps)")
    p.add_argument("--lm-steps-per-epoch", type=int, default=500, help="steps per epoch (default 500)")
    p.add_argument("--lm-batch-size", type=int, default=32)
    p.add_argument("--lm-context", type=int, default=64, help="context length (block_size, default 64)")
    p.add_argument("--lm-dim", type=int, default=64)
    p.add_argument("--lm-depth", type=int, default=3)
    p.add_argument("--lm-heads", type=int, default=4)
    p.add_argument("--lm-lr", type=float, default=2e-3)
    p.add_argument("--prompt", default="ROMEO.\n", help="the sample's prompt")
    p.add_argument("--sample-chars", type=int, default=300)
    args = p.parse_args(argv)

    report = {"environment": {"threads": THREADS, "python": platform.python_version(), "numpy": np.__version__,
                              "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out_dir or tmp)
        if args.part in ("all", "mae"):
            report["mae"] = run_mae(args, folder)
        if args.part in ("all", "lm"):
            report["lm"] = run_lm(args, folder)
    report["total_seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=2) if args.format == "json" else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
