"""The command-line side of the generative tasks: ``whitebox train --task mae|lm``, ``whitebox
reconstruct`` and ``whitebox sample``. :mod:`whitebox.cli` registers these functions; they take the
parsed arguments and return the exit status.

    whitebox train --task mae --out runs/mae                   CRATE-MAE on MNIST (preset mnist-mae)
    whitebox train --task lm --max-steps 300 --out runs/lm     causal CRATE on Shakespeare
    whitebox train --resume runs/lm                            continue either, like any run
    whitebox reconstruct --checkpoint runs/mae --out grid.png  masked inputs, reconstructions, originals
    whitebox sample --checkpoint runs/lm --prompt "ROMEO." --chars 300
"""

from __future__ import annotations

import argparse
import dataclasses

from .task_runs import DATA_OPTIONS, MODELS, TASK_PRESETS, TASKS

# options of `whitebox train` that a generative task does not use, by task
UNUSED = {
    "mae": ("model", "label_smoothing", "augment"),
    "lm": ("model", "label_smoothing", "augment", "dataset", "train_limit", "test_limit", "eval_batch_size",
           "data_dir"),
}
RUN_OPTIONS = ("preset", "dataset", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "warmup_epochs",
               "min_lr", "clip_grad", "model_set", "seed", "dtype", "eval_batch_size", "train_limit", "test_limit",
               "out", "overwrite", "model", "label_smoothing", "augment")

TASK_HELP = ("classify (default): image classification; mae: masked autoencoding with CRATE-MAE; "
             "lm: character language modelling with causal CRATE")


def generative(args: argparse.Namespace) -> bool:
    """Whether ``whitebox train`` arguments ask for a generative task (setting ``args.task`` if so):
    ``--task mae|lm``, a generative preset, or ``--resume`` of a generative run."""
    from ..cli import UsageError
    from .task_runs import task_of

    if args.task == "classify" and args.preset in TASK_PRESETS:
        raise UsageError(f"--preset {args.preset} is a preset of --task {TASK_PRESETS[args.preset].task}")
    if args.task is None and args.preset in TASK_PRESETS:
        args.task = TASK_PRESETS[args.preset].task
    if args.task is None and args.resume is not None:
        args.task = task_of(args.resume)
    return args.task in TASKS


def train_task(args: argparse.Namespace) -> int:
    """``whitebox train`` for a generative task: a new run (``--task``) or ``--resume`` of one."""
    from ..cli import UsageError, _duration
    from ..train import NonFiniteLossError, TrainingInterrupted
    from .task_runs import resume_task_run, start_task_run

    options = dict(device=args.device, data_dir=args.data_dir, max_steps=args.max_steps, quiet=args.quiet)
    if args.resume is not None:
        given = [name for name in RUN_OPTIONS if name != "task" and getattr(args, name, None) is not None]
        if given:
            flags = ", ".join("--" + ("set" if n == "model_set" else n.replace("_", "-")) for n in given)
            raise UsageError(f"--resume continues the saved run with its own settings; drop {flags}")
        run = lambda: resume_task_run(args.resume, **options)  # noqa: E731
    else:
        config = task_config(args)
        out = args.out or f"runs/{config.model}-{config.preset}"
        run = lambda: start_task_run(config, out, overwrite=bool(args.overwrite), **options)  # noqa: E731
    try:
        result = run()
    except TrainingInterrupted as stop:
        import sys

        print(f"\n{stop}\nresume with: python -m whitebox train --resume {stop.checkpoint.parent}", file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        from ..cli import CommandError

        raise CommandError(str(e)) from None
    print(task_summary(result, _duration))
    return 0


def task_config(args: argparse.Namespace):
    """The :class:`TaskRunConfig` of ``whitebox train --task ...`` arguments."""
    from ..cli import UsageError
    from .config import ConfigError
    from .task_runs import resolve_task_config

    task = args.task
    unused = [name for name in UNUSED[task] if getattr(args, name, None) is not None]
    if unused:
        flags = ", ".join("--" + {"augment": "no-augment"}.get(n, n.replace("_", "-")) for n in unused)
        raise UsageError(f"--task {task} does not use {flags}")
    model_fields = {f.name for f in dataclasses.fields(MODELS[task].Config)}
    model_set, data_set = {}, {}
    for key, value in args.model_set or []:
        if key in model_fields:
            model_set[key] = value
        elif key in DATA_OPTIONS[task]:
            data_set[key] = value
        else:
            raise UsageError(f"--set {key}=...: {key!r} is neither a field of {sorted(model_fields)} "
                             f"nor a data option of task {task} {sorted(DATA_OPTIONS[task])}")
    if task == "mae":
        for name in ("dataset", "eval_batch_size", "train_limit", "test_limit"):
            if getattr(args, name, None) is not None:
                data_set[name] = getattr(args, name)
    try:
        return resolve_task_config(
            task, args.preset, model_overrides=model_set, data_overrides=data_set,
            **{name: getattr(args, name) for name in ("epochs", "batch_size", "optimizer", "lr", "weight_decay",
                                                       "warmup_epochs", "min_lr", "clip_grad", "seed", "dtype")})
    except ConfigError as e:
        raise UsageError(str(e)) from None


def task_summary(result, duration) -> str:
    """The closing lines of ``whitebox train`` for a generative run."""
    lines = []
    r = result.record
    if r is not None:
        bpc = f", {r['test_bpc']:.3f} bits per character" if "test_bpc" in r else ""
        lines.append(f"test loss {r['test_loss']:.4f}{bpc} after epoch {r['epoch']} of {result.config.epochs} "
                     f"(step {r['step']})")
    if not result.finished:
        lines.append(f"stopped at step {result.step} of {result.total_steps}; continue with: "
                     f"python -m whitebox train --resume {result.paths.out}")
    lines.append(f"wall time {duration(result.wall_time)} (training and evaluation over all sessions: "
                 f"{duration(result.train_time)}); {result.num_params:,} parameters")
    for label, path in (("metrics", result.paths.metrics), ("curves", result.paths.curves),
                        ("checkpoint", result.paths.checkpoint), ("config", result.paths.config)):
        lines.append(f"  {label:<11} {path}")
    return "\n".join(lines)


def preset_lines() -> list[str]:
    """The generative presets, for ``whitebox train --help``."""
    lines = []
    for name, p in TASK_PRESETS.items():
        shape = " ".join(f"{k} {v}" for k, v in p.model.items())
        lines.append(f"  {name:<14} (--task {p.task}) {p.description}\n  {'':<14} {shape}; {p.epochs} epochs of "
                     f"batch {p.batch_size}; {p.optimizer} lr {p.lr:g}, weight decay {p.weight_decay:g}")
    return lines


# -- whitebox reconstruct ---------------------------------------------------------------------

def add_reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import nonnegative_int, positive_int

    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a CRATE-MAE run folder (its checkpoint.npz) or checkpoint file")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the image grid")
    p.add_argument("--count", type=positive_int, default=8, metavar="N", help="test images to show (default 8)")
    p.add_argument("--first", type=nonnegative_int, default=0, metavar="I", help="index of the first test image (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="seeds the random masks (default 0)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: the device the run trained on")


def reconstruct(args: argparse.Namespace) -> int:
    """``whitebox reconstruct``: a PNG of masked test images, their reconstructions and the originals."""
    from ..cli import CommandError
    from ..data import load_dataset
    from .mae_task import reconstruction_grid
    from .task_runs import load_task_checkpoint

    try:
        config, cfg, params, _ = load_task_checkpoint(args.checkpoint, "mae", device=args.device)
    except ValueError as e:
        raise CommandError(str(e)) from None
    images = load_dataset(config.data["dataset"], "test")[0][args.first:args.first + args.count]
    if len(images) == 0:
        raise CommandError(f"--first {args.first} is past the end of the {config.data['dataset']} test split")
    path = reconstruction_grid(params, cfg, images, args.out, seed=args.seed, dtype=next(iter(params.values())).dtype)
    print(f"wrote {path}: {len(images)} {config.data['dataset']} test images (masked input, reconstruction, original)")
    return 0


# -- whitebox sample --------------------------------------------------------------------------

def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import nonnegative_int, positive_float, positive_int

    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a causal CRATE (--task lm) run folder or checkpoint file")
    p.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    p.add_argument("--chars", type=nonnegative_int, default=300, metavar="N", help="characters to generate (default 300)")
    p.add_argument("--temperature", type=positive_float, default=0.8, metavar="T", help="softmax temperature (default 0.8)")
    p.add_argument("--top-k", type=positive_int, metavar="K", help="sample among the K likeliest characters (1: greedy)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="seeds the draws (default 0)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: the device the run trained on")


def sample(args: argparse.Namespace) -> int:
    """``whitebox sample``: print the prompt and its continuation."""
    from ..cli import CommandError, UsageError
    from ..data.text import CharTokenizer
    from ..models import crate_lm
    from .task_runs import load_task_checkpoint

    try:
        _, cfg, params, meta = load_task_checkpoint(args.checkpoint, "lm", device=args.device)
    except ValueError as e:
        raise CommandError(str(e)) from None
    tokenizer = CharTokenizer.from_json(meta["tokenizer"])
    if not args.prompt:
        raise UsageError("--prompt must not be empty")
    try:
        text = crate_lm.sample(params, cfg, args.prompt, args.chars, args.temperature, args.top_k, args.seed,
                               tokenizer=tokenizer)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(args.prompt + text)
    return 0


def evaluate_task(path, task: str, device: str | None = None) -> int:
    """``whitebox eval`` of a generative run: its held-out loss (and bits per character)."""
    from ..data.text import CharTokenizer
    from ..backend import array_module
    from .task_runs import build_task, load_task_checkpoint

    config, _, params, meta = load_task_checkpoint(path, task, device=device)
    tokenizer = CharTokenizer.from_json(meta["tokenizer"]) if "tokenizer" in meta else None
    built, _, _ = build_task(config, array_module(*params.values()), tokenizer=tokenizer)
    result = built.evaluate(params)
    bpc = f", {result['bpc']:.3f} bits per character" if "bpc" in result else ""
    print(f"held-out loss {result['loss']:.4f}{bpc} ({config.model}, {config.preset}) at step {meta['step']}, {path}")
    return 0


__all__ = ["TASKS", "add_reconstruct_arguments", "add_sample_arguments", "evaluate_task", "generative",
           "preset_lines", "reconstruct", "sample", "train_task"]
