#!/usr/bin/env python
"""The language experiment of issue 18: CRATE-BERT vs BERT, causal CRATE vs GPT, and what their features are worth.

Every model trains through ``whitebox train``'s code (:func:`whitebox.train.start_run`) with the
same data (Shakespeare, :mod:`whitebox.data.text`), tokens (characters), width, depth, context,
budget (steps of the same batch) and recipe (the presets ``shakespeare-mlm`` and
``shakespeare-char``: AdamW lr 1e-3, β₂ 0.95, wd 0.1, clip 1.0, warmup then cosine); only the
block differs (``crate`` against ``transformer``, :data:`whitebox.models.registry.VARIANTS`):

1. masked language modelling, ``crate-bert`` vs ``bert``: masked-token accuracy and bits per
   masked character on the validation windows (the same masks for every model), against the
   unigram baseline on the same positions;
2. next-character modelling, ``crate-lm`` vs ``gpt``: bits per character on the validation
   windows, against the add-one-smoothed character bigram of the training text on the same
   positions;
3. the downstream task (``--task genre``, comedy / history / tragedy of a passage as long as the
   context, the last 20% of every play held out): for each block, fine-tuned and linear probe
   from the masked model, from scratch, and fine-tuned and linear probe from the causal model's
   features; with the majority-class baseline.

Each for every seed of ``--seeds`` (default three); the tables give mean ± standard deviation over
the seeds. ``--results FILE`` replaces (or appends) the section :data:`SECTION` of a Markdown file
(``benchmarks/RESULTS.md``) with the tables, the date, the command and the CPU time. ``--smoke``
shrinks everything to a run of seconds (the test suite runs it).

Budget (defaults): width 64, 3 layers of 4 heads, context 64, batch 32, 500 steps per pretrained
model, 150 steps per downstream run. Estimated about 34 CPU-minutes on one core for the three
seeds (:func:`estimate`; measured on this machine, 2026-12-02: about 0.17 CPU-seconds per step of
either block at this size, CRATE 84k parameters, the transformer 160k); the wall time is longer
on a loaded machine.

    python benchmarks/language_experiment.py --results benchmarks/RESULTS.md
    python benchmarks/language_experiment.py --smoke --seeds 0
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: a BLAS waiting on busy cores is slower than none

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whitebox.data.plays import genre_passages, majority_accuracy  # noqa: E402
from whitebox.data.text import load_shakespeare, sequential_windows, split_text  # noqa: E402
from whitebox.train import load_run, resolve_config, start_run  # noqa: E402

SECTION = "## Language: CRATE-BERT vs BERT, causal CRATE vs GPT (issue 18)"
BLOCKS = {"crate": ("crate-bert", "crate-lm"), "transformer": ("bert", "gpt")}  # block -> (masked, causal) model
GENRE_STARTS = ("mlm fine-tuned", "mlm linear probe", "scratch", "causal fine-tuned", "causal linear probe")
SMOKE = dict(dim=16, depth=1, heads=2, context=16, batch_size=4, steps=3, genre_steps=2, eval_windows=8,
             genre_test=16)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_fields(args) -> dict:
    return dict(block_size=args.context, dim=args.dim, depth=args.depth, heads=args.heads,
                dim_head=args.dim // args.heads)


def pretrain(args, model: str, task: str, seed: int, out: Path) -> dict:
    """One pretrained model: ``steps`` updates of batch ``batch_size``, one epoch of the preset's schedule."""
    preset = "shakespeare-mlm" if task == "mlm" else "shakespeare-char"
    config = resolve_config(model, preset, task=task, epochs=1, batch_size=args.batch_size, seed=seed,
                            model_overrides=model_fields(args),
                            data_overrides=dict(steps_per_epoch=args.steps, eval_windows=args.eval_windows))
    began = time.process_time()
    result = start_run(config, out, device="cpu", quiet=True)
    return {"record": result.record, "num_params": result.num_params, "cpu_seconds": time.process_time() - began}


def genre(args, start: str, block: str, seed: int, runs: dict, out: Path) -> dict:
    """One downstream run: ``start`` is one of :data:`GENRE_STARTS`."""
    masked, causal = BLOCKS[block]
    options = dict(epochs=1, batch_size=args.batch_size, seed=seed, train_limit=args.genre_steps * args.batch_size,
                   test_limit=args.genre_test)
    if start == "scratch":
        config = resolve_config(masked, "shakespeare-genre", model_overrides=model_fields(args), **options)
    else:
        source = runs[(masked if start.startswith("mlm") else causal, seed)]
        config = resolve_config(masked, "shakespeare-genre", init_from=source,
                                linear_probe=start.endswith("probe") or None, **options)
    began = time.process_time()
    result = start_run(config, out, device="cpu", quiet=True)
    return {"accuracy": result.record["test_accuracy"], "cpu_seconds": time.process_time() - began}


def bigram_bits_on_windows(train_ids, val_ids, vocab_size: int, context: int, windows: int) -> float:
    """Bits per character of the training text's add-one-smoothed character bigram on the positions the
    causal models are scored on (the targets of :func:`sequential_windows`, each after its predecessor)."""
    counts = np.ones((vocab_size, vocab_size))
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    p = counts / counts.sum(axis=1, keepdims=True)
    x, y = sequential_windows(val_ids, context, windows)
    return float(-np.log2(p[x, y]).mean())


def run(args) -> dict:
    began = time.process_time()
    report = {"settings": {k: v for k, v in vars(args).items() if k not in ("results", "out_dir")},
              "mlm": {}, "lm": {}, "genre": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out_dir or tmp)
        runs = {}
        for seed in args.seeds:
            for block, (masked, causal) in BLOCKS.items():
                for model, task in ((masked, "mlm"), (causal, "lm")):
                    log(f"[seed {seed}] {model}: {args.steps} steps of --task {task} ...")
                    out = folder / f"{model}-{seed}"
                    report[task].setdefault(model, []).append(pretrain(args, model, task, seed, out))
                    runs[(model, seed)] = out
            for block in BLOCKS:
                for start in GENRE_STARTS:
                    log(f"[seed {seed}] genre, {block} block, {start} ...")
                    out = folder / f"genre-{block}-{start.replace(' ', '-')}-{seed}"
                    report["genre"].setdefault(f"{block}: {start}", []).append(genre(args, start, block, seed, runs, out))
        lm_run = load_run(runs[(BLOCKS["crate"][1], args.seeds[0])])
        tokenizer = lm_run.tokenizer()
    train_text, val_text = split_text(load_shakespeare())
    report["bigram_bpc"] = bigram_bits_on_windows(tokenizer.encode(train_text), tokenizer.encode(val_text),
                                                  tokenizer.vocab_size, args.context, args.eval_windows)
    (_, train_y), (_, test_y) = genre_passages(tokenizer.encode, args.context)
    report["majority_accuracy"] = majority_accuracy(train_y, test_y)
    report["cpu_seconds"] = time.process_time() - began
    return report


def mean_std(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def markdown(report: dict, command: str) -> str:
    s = report["settings"]
    seeds = len(s["seeds"])
    lines = [SECTION, "",
             f"{datetime.date.today().isoformat()}: `{command}` ({report['cpu_seconds'] / 60:.1f} CPU-minutes, "
             f"one BLAS thread; seeds {', '.join(map(str, s['seeds']))}; width {s['dim']}, {s['depth']} layers of "
             f"{s['heads']} heads, context {s['context']} characters, batch {s['batch_size']}, {s['steps']} steps per "
             f"pretrained model, {s['genre_steps']} steps per downstream run; mean ± std over {seeds} seed(s)).", "",
             f"Masked language modelling ({s['eval_windows']} validation windows, the same masks for every model):", "",
             "| model | parameters | masked-token accuracy | bits per masked character | unigram, same positions |",
             "|---|---|---|---|---|"]
    for model, rows in report["mlm"].items():
        lines.append(f"| {model} | {rows[0]['num_params']:,} | {mean_std([r['record']['test_accuracy'] for r in rows])} | "
                     f"{mean_std([r['record']['test_bpc'] for r in rows])} | "
                     f"{mean_std([r['record']['test_unigram_bpc'] for r in rows])} |")
    lines += ["", f"Next-character modelling ({s['eval_windows']} validation windows):", "",
              "| model | parameters | bits per character | bigram, same positions |", "|---|---|---|---|"]
    for model, rows in report["lm"].items():
        lines.append(f"| {model} | {rows[0]['num_params']:,} | {mean_std([r['record']['test_bpc'] for r in rows])} | "
                     f"{report['bigram_bpc']:.3f} |")
    lines += ["", f"Genre of a {s['context']}-character passage (comedy, history or tragedy; {s['genre_test']} held-out "
              f"passages; majority class {report['majority_accuracy']:.3f}):", "",
              "| block: start | test accuracy |", "|---|---|"]
    for name, rows in report["genre"].items():
        lines.append(f"| {name} | {mean_std([r['accuracy'] for r in rows])} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace the section :data:`SECTION` of ``path`` (up to the next ``## ``) by ``text``, or append it."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Results\n"
    pattern = re.compile(re.escape(SECTION) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new, encoding="utf-8")


def estimate(args, crate_step: float = 0.17, transformer_step: float = 0.17) -> float:
    """CPU-minutes the settings should take on one free core (the step times: width 64, context 64, batch 32)."""
    per_seed = (crate_step + transformer_step) * (2 * args.steps + len(GENRE_STARTS) * args.genre_steps)
    return 1.15 * per_seed * len(args.seeds) / 60  # + 15% for evaluations and data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=64, help="tokens per window and per passage")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=500, help="updates of each pretrained model")
    p.add_argument("--genre-steps", type=int, default=150, help="updates of each downstream run")
    p.add_argument("--eval-windows", type=int, default=256, help="validation windows scored")
    p.add_argument("--genre-test", type=int, default=2000, help="held-out passages scored")
    p.add_argument("--smoke", action="store_true", help=f"a run of seconds: {SMOKE}")
    p.add_argument("--results", metavar="MD", help="write the section into this Markdown file (RESULTS.md)")
    p.add_argument("--out-dir", metavar="DIR", help="keep the runs here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    log(f"estimated {estimate(args):.1f} CPU-minutes on one free core")
    report = run(args)
    command = "python benchmarks/language_experiment.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(report, command.strip())
    if args.results:
        write_section(Path(args.results), text)
    print(json.dumps({k: v for k, v in report.items() if k != "settings"}, indent=2, default=float))
    print(text)
    return 0 if all(math.isfinite(r["accuracy"]) for rows in report["genre"].values() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
