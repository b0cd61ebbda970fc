"""The ``whitebox`` command line: one subcommand per task, registered in :data:`COMMANDS`.

    whitebox train --preset mnist-demo --out runs/demo     train a small CRATE on MNIST
    whitebox train --resume runs/demo                      continue it after a stop or Ctrl-C
    whitebox eval runs/demo                                test accuracy of its checkpoint

A subcommand is a pair of small functions, one adding its arguments to a parser and one running
it with the parsed arguments and returning the exit status, registered with :func:`command`.
A run function raises :class:`UsageError` for a bad combination of arguments (reported like
argparse's own errors, exit status 2) and :class:`CommandError` for a failure to report without
a traceback (exit status 1).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from typing import Callable

PROG = "whitebox"
INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT


class UsageError(Exception):
    """Arguments that do not make sense together; reported as a usage error."""


class CommandError(Exception):
    """A failure the user can fix (missing data, no GPU, an existing run ...): message, no traceback."""


@dataclass(frozen=True)
class Command:
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated ``run(args) -> int`` as subcommand ``name``."""
    def register(run):
        COMMANDS[name] = Command(help, description, add_arguments, run)
        return run

    return register


# -- argument types ---------------------------------------------------------------------------

def _number(kind, minimum, *, strict: bool, below: float | None = None):
    condition = f"{'>' if strict else '>='} {minimum}" + (f" and < {below}" if below is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} "
                                             f"{condition}, got {text!r}") from None
        if not ((value > minimum if strict else value >= minimum) and (below is None or value < below)):
            raise argparse.ArgumentTypeError(f"must be {condition}, got {text}")
        return value

    return parse


positive_int = _number(int, 0, strict=True)
nonnegative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0, strict=True)
nonnegative_float = _number(float, 0, strict=False)
fraction = _number(float, 0, strict=False, below=1)


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (``dim=128``, ``pool=mean``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


# -- whitebox train ---------------------------------------------------------------------------

TRAIN_DESCRIPTION = """\
Train a white-box transformer on an image dataset, with a progress bar, an evaluation on the test
split after every epoch, and everything written to the output folder:

  config.json      the resolved settings           metrics.jsonl   one line per epoch
  checkpoint.npz   parameters, optimiser, step      curves.png      loss and accuracy curves

A preset (listed below) gives every setting; any option given here replaces the preset's value.
A checkpoint is written after each epoch and on Ctrl-C; continue with --resume FOLDER.

examples:
  whitebox train --preset mnist-demo --out runs/demo              # 98.3% in 6-10 minutes on 2 CPU cores
  whitebox train --preset mnist-demo --epochs 2 --lr 1e-3 --set depth=4 --out runs/small
  whitebox train --preset fashion-mnist --device gpu --out runs/fmnist
  whitebox train --resume runs/demo                               # after Ctrl-C or --max-steps
  whitebox train --task mae --out runs/mae                        # CRATE-MAE on MNIST (then: whitebox reconstruct)
  whitebox train --task lm --out runs/lm                          # causal CRATE on Shakespeare (then: whitebox sample)

On a CPU shared with other busy processes, start with OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1):
NumPy's BLAS threads that wait on each other can make steps ten times slower.
"""

# Options that define a run: with --resume they come from the saved run and may not be given.
RUN_OPTIONS = ("model", "preset", "dataset", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
               "warmup_epochs", "min_lr", "label_smoothing", "clip_grad", "augment", "model_set", "seed",
               "dtype", "eval_batch_size", "train_limit", "test_limit", "out", "overwrite")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS
    from .models.registry import available_models
    from .train.config import DTYPES, OPTIMIZERS
    from .train.presets import PRESETS

    what = p.add_argument_group("what to train")
    what.add_argument("--model", choices=available_models(), help="the architecture (default: crate)")
    from .train.task_cli import TASK_HELP, TASK_PRESETS, TASKS

    what.add_argument("--task", choices=("classify", *TASKS), help=TASK_HELP)
    what.add_argument("--preset", choices=(*PRESETS, *TASK_PRESETS),
                      help="the recipe (default: mnist-demo, or the task's; list above)")
    what.add_argument("--dataset", choices=DATASETS,
                      help="the dataset (default: the preset's); image size and classes follow from it")
    what.add_argument("--set", dest="model_set", type=key_value, action="append", metavar="KEY=VALUE",
                      help="change a field of the model's config, e.g. --set dim=128 --set depth=4 (repeatable)")

    how = p.add_argument_group("how to train (defaults: the preset's)")
    how.add_argument("--epochs", metavar="N", type=positive_int, help="passes over the training set")
    how.add_argument("--batch-size", metavar="N", type=positive_int, help="images per update")
    how.add_argument("--optimizer", choices=OPTIMIZERS, help="AdamW, Lion or SGD with Nesterov momentum 0.9")
    how.add_argument("--lr", metavar="LR", type=positive_float, help="peak learning rate (linear warmup, then cosine decay)")
    how.add_argument("--weight-decay", metavar="WD", type=nonnegative_float,
                     help="decoupled weight decay, applied to weight matrices only (not biases, norms, embeddings)")
    how.add_argument("--warmup-epochs", metavar="E", type=nonnegative_float, help="length of the linear warmup, in epochs")
    how.add_argument("--min-lr", metavar="LR", type=nonnegative_float, help="learning rate at the end of the cosine")
    how.add_argument("--label-smoothing", metavar="S", type=fraction, help="label smoothing of the cross-entropy, in [0, 1)")
    how.add_argument("--clip-grad", type=positive_float, metavar="NORM", help="cap the global gradient norm")
    how.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                     help="no random crops or flips")
    how.add_argument("--seed", metavar="N", type=nonnegative_int, help="seeds the initialisation, batch order and augmentation (default 0)")

    where = p.add_argument_group("where and how to run")
    where.add_argument("--device", choices=("cpu", "gpu"),
                       help="cpu (NumPy) or gpu (CuPy); default $WHITEBOX_DEVICE or cpu, or the resumed run's")
    where.add_argument("--dtype", choices=DTYPES, help="float32 (default) or float64 (for exact checks)")
    where.add_argument("--out", metavar="FOLDER", help="output folder (default: runs/MODEL-PRESET-DATASET)")
    where.add_argument("--overwrite", action="store_true", default=None,
                       help="delete a run already in the output folder and start over")
    where.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")
    where.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    where.add_argument("--eval-batch-size", metavar="N", type=positive_int, help="test images per forward pass (default 500)")
    where.add_argument("--train-limit", type=positive_int, metavar="N", help="use only the first N training images")
    where.add_argument("--test-limit", type=positive_int, metavar="N", help="use only the first N test images")

    stop = p.add_argument_group("stopping and resuming")
    stop.add_argument("--resume", metavar="FOLDER", help="continue the run saved in FOLDER with its own settings")
    stop.add_argument("--max-steps", type=positive_int, metavar="N",
                      help="stop after N updates in all (the schedule still spans --epochs); resume later")


def preset_table() -> str:
    """The presets, one line each, for ``whitebox train --help``."""
    from .train.presets import PRESETS

    lines = ["presets:"]
    for name, p in PRESETS.items():
        shape = " ".join(f"{k} {v}" for k, v in p.model.items())
        lines.append(f"  {name:<14} {p.description}\n  {'':<14} {p.dataset}; {shape}; {p.epochs} epochs of batch "
                     f"{p.batch_size}; {p.optimizer} lr {p.lr:g}, weight decay {p.weight_decay:g}")
    from .train.task_cli import preset_lines

    lines += preset_lines()
    return "\n".join(lines)


@command("train", "train a model (CRATE, CRATE-alpha) on MNIST, Fashion-MNIST or CIFAR-10",
         TRAIN_DESCRIPTION + "\n" + preset_table(), add_train_arguments)
def train(args: argparse.Namespace) -> int:
    from .train import resume_run, start_run
    from .train.task_cli import generative, train_task

    if generative(args):
        return train_task(args)
    args.task = None  # "classify", the default

    options = dict(device=args.device, data_dir=args.data_dir, max_steps=args.max_steps, quiet=args.quiet)
    if args.resume is not None:
        given = [name for name in RUN_OPTIONS if getattr(args, name) is not None]
        if given:
            flags = ", ".join("--" + ("set" if n == "model_set" else n.replace("_", "-")) for n in given)
            raise UsageError(f"--resume continues the saved run with its own settings; drop {flags}")
        run = lambda: resume_run(args.resume, **options)  # noqa: E731
    else:
        config = _train_config(args)
        out = args.out or f"runs/{config.model}-{config.preset}-{config.dataset}"
        run = lambda: start_run(config, out, overwrite=bool(args.overwrite), **options)  # noqa: E731
    return _report_training(run)


def _train_config(args: argparse.Namespace):
    from .train.config import ConfigError, resolve_config

    try:
        return resolve_config(
            args.model or "crate", args.preset or "mnist-demo", dataset=args.dataset,
            model_overrides=dict(args.model_set or []),
            **{name: getattr(args, name) for name in (
                "epochs", "batch_size", "optimizer", "lr", "weight_decay", "warmup_epochs", "min_lr",
                "label_smoothing", "clip_grad", "augment", "seed", "dtype", "eval_batch_size",
                "train_limit", "test_limit")},
        )
    except ConfigError as e:
        raise UsageError(str(e)) from None


def _report_training(run: Callable) -> int:
    from .train import NonFiniteLossError, TrainingInterrupted

    try:
        result = run()
    except TrainingInterrupted as stop:
        print(f"\n{stop}\nresume with: python -m whitebox train --resume {stop.checkpoint.parent}", file=sys.stderr)
        return INTERRUPTED
    except NonFiniteLossError as e:
        raise CommandError(f"{e}\nResuming would repeat this step exactly (the run is deterministic): start "
                           "again with a lower --lr or with --clip-grad NORM (--overwrite reuses the folder).") from None
    print(training_summary(result))
    return 0


def training_summary(result) -> str:
    """The closing lines of ``whitebox train``: accuracy, times, size, and where the files are."""
    lines = []
    if result.record is not None:
        r = result.record
        lines.append(f"test accuracy {r['test_accuracy']:.2%} (loss {r['test_loss']:.4f}) "
                     f"after epoch {r['epoch']} of {result.config.epochs} (step {r['step']})")
    if not result.finished:
        lines.append(f"stopped at step {result.step} of {result.total_steps}; continue with: "
                     f"python -m whitebox train --resume {result.paths.out}")
    lines.append(f"wall time {_duration(result.wall_time)} (training and evaluation over all sessions: "
                 f"{_duration(result.train_time)}); {result.num_params:,} parameters")
    for label, path in (("metrics", result.paths.metrics), ("curves", result.paths.curves),
                        ("checkpoint", result.paths.checkpoint), ("config", result.paths.config)):
        lines.append(f"  {label:<11} {path}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


# -- whitebox eval ----------------------------------------------------------------------------

def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder (uses its checkpoint.npz) or a checkpoint file")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: the device the run trained on")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")
    p.add_argument("--batch-size", metavar="N", type=positive_int, help="test images per forward pass (default: the run's)")


@command("eval", "test accuracy of a saved checkpoint",
         "Evaluate a checkpoint on its run's test split (same dataset, dtype and test images as in training).",
         add_eval_arguments)
def evaluate(args: argparse.Namespace) -> int:
    from .train import evaluate_checkpoint
    from .train.run import checkpoint_path
    from .train.task_cli import TASKS, evaluate_task
    from .train.task_runs import task_of

    path = checkpoint_path(args.run)
    task = task_of(path)
    if task in TASKS:  # a generative run (whitebox.train.task_cli)
        return evaluate_task(path, task, args.device)
    result = evaluate_checkpoint(path, device=args.device, data_dir=args.data_dir, eval_batch_size=args.batch_size)
    config = result["config"]
    print(f"test accuracy {result['accuracy']:.2%} (loss {result['loss']:.4f}) on {result['n']} {config.dataset} "
          f"test images; {config.model} ({config.preset}) at step {result['step']}, {path}")
    return 0


# -- whitebox reconstruct, whitebox sample (the generative tasks, whitebox.train.task_cli) -------

def _register_task_commands() -> None:
    from .train import task_cli

    command("reconstruct", "PNG grid of masked test images, CRATE-MAE reconstructions and originals",
            "Show what a CRATE-MAE checkpoint (whitebox train --task mae) fills in: for a few test images, the "
            "masked input, the reconstruction and the original.", task_cli.add_reconstruct_arguments)(task_cli.reconstruct)
    command("sample", "print text sampled from a causal CRATE checkpoint",
            "Continue a prompt with a character model trained by whitebox train --task lm (temperature, top-k).",
            task_cli.add_sample_arguments)(task_cli.sample)


_register_task_commands()


# -- whitebox measure, attention, experiment (seeing inside: measure, attention_maps, experiments) --

def _register_inside_commands() -> None:
    from . import attention_maps, measure
    from .experiments import ablation

    command("measure", "layer-by-layer Rc, R, sparse rate reduction and sparsity of a checkpoint, init vs trained",
            measure.MEASURE_DESCRIPTION, measure.add_measure_arguments)(measure.measure_command)
    command("attention", "PNG grid of per-head cls-token attention and feature PCA for a few test images",
            attention_maps.ATTENTION_DESCRIPTION, attention_maps.add_attention_arguments)(attention_maps.attention_command)
    command("experiment", "train and compare several models (ablation: CRATE, +O, +O+D, +O+D+R)",
            ablation.EXPERIMENT_DESCRIPTION, ablation.add_arguments)(ablation.command)


_register_inside_commands()


# -- the entry point --------------------------------------------------------------------------

def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The top-level parser and its subparsers by name."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="White-box transformers (CRATE, CRATE-alpha) in NumPy/CuPy.",
        epilog=f"run '{PROG} COMMAND --help' for the options of a command")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers = {}
    for name, cmd in COMMANDS.items():
        sub = commands.add_parser(name, help=cmd.help, description=cmd.description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(sub)
        subparsers[name] = sub
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit status."""
    from .backend import DeviceUnavailableError
    from .data import DatasetNotFoundError
    from .train import RunExistsError
    from .train.run import NoCheckpointError

    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except UsageError as e:
        subparsers[args.command].error(str(e))
    except (CommandError, DeviceUnavailableError, DatasetNotFoundError, RunExistsError, NoCheckpointError) as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
