"""``whitebox train``, ``eval``, ``reconstruct`` and ``sample``: every task through one run path
(:mod:`whitebox.train.run`).

    whitebox train --preset mnist-demo --out runs/demo         a small CRATE on MNIST
    whitebox train --resume runs/demo                          continue any run after a stop, Ctrl-C or SIGTERM
    whitebox eval runs/demo                                    the held-out figures of its checkpoint
    whitebox eval --weights crate.pth --model crate --preset mnist-demo   a checkpoint trained elsewhere
    whitebox train --init-from crate.pth --dataset fashion-mnist  fine-tune (--linear-probe: the head only)
    whitebox train --task mae --out runs/mae                   CRATE-MAE on MNIST (preset mnist-mae)
    whitebox reconstruct --checkpoint runs/mae --out grid.png  masked inputs, reconstructions, originals
    whitebox train --task lm --out runs/lm                     causal CRATE on Shakespeare
    whitebox sample --checkpoint runs/lm --prompt "ROMEO." --chars 300
    whitebox train --task mlm --out runs/mlm                   CRATE-BERT: masked characters of Shakespeare
    whitebox fill --checkpoint runs/mlm --text "To be or [MASK] to be"
    whitebox train --task genre --init-from runs/mlm           comedy, history or tragedy (--linear-probe)
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .. import figures
from ..data import DATASETS, load_dataset
from ..distributed import collective_error, communicator, is_collective
from ..data.text import MASK
from ..models import crate_lm
from ..train import (PRESETS, NonFiniteEvaluationError, NonFiniteLossError, TrainingInterrupted,
                     evaluate_checkpoint, evaluate_weights, load_run, resolve_config, resume_run, start_run)
from ..train.config import DTYPES, OPTIMIZERS, ConfigError, model_names
from .common import (PROG, CommandError, UsageError, add_device_argument, command, duration, fraction, key_value,
                     nonnegative_float, nonnegative_int, positive_float, positive_int)
from .weights import FORMATS, PRESET_RULE, add_model_arguments, eval_config

INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT
TASK_SPELLINGS = {"classification": "classification", "classify": "classification", "mae": "mae", "lm": "lm",
                  "mlm": "mlm", "genre": "genre", "dino": "dino", "simdino": "simdino"}

TRAIN_DESCRIPTION = """\
Train a white-box transformer, with a progress bar, an evaluation on the held-out split after
every epoch, and everything written to the output folder:

  config.json      the resolved settings           metrics.jsonl   one line per epoch
  checkpoint.npz   parameters, optimiser, step      curves.png      loss (and accuracy) curves

Five tasks: classification (CRATE, CRATE-alpha on MNIST, Fashion-MNIST, CIFAR-10), mae (masked
autoencoding with CRATE-MAE), lm (character language modelling with causal CRATE), mlm (masked
language modelling with CRATE-BERT; --set tokenizer=bpe --set vocab=512 for byte-pair tokens) and
genre (comedy, history or tragedy of a passage, from scratch or --init-from an mlm or lm run). A preset
(listed below) gives every setting; any option given here replaces the preset's value. A
checkpoint is written after each epoch and on Ctrl-C or SIGTERM; continue with --resume FOLDER.

examples:
  whitebox train --preset mnist-demo --out runs/demo              # 98.3% in 6-10 minutes on 2 CPU cores
  whitebox train --preset mnist-demo --epochs 2 --lr 1e-3 --set depth=4 --out runs/small
  whitebox train --preset fashion-mnist --device gpu --out runs/fmnist
  whitebox train --resume runs/demo                               # after Ctrl-C or --max-steps
  whitebox train --task mae --out runs/mae                        # CRATE-MAE on MNIST (then: whitebox reconstruct)
  whitebox train --task lm --out runs/lm                          # causal CRATE on Shakespeare (then: whitebox sample)
  whitebox train --init-from runs/demo --dataset fashion-mnist    # fine-tune a run's backbone, with a new head
  whitebox train --init-from crate.pth --set dim=384 ... --linear-probe   # train only the head of loaded weights

Fine-tuning (--init-from FILE_OR_RUN): the parameters start from a weights file (.pth, .safetensors,
.npz: see whitebox convert --help) or a run folder; the head is re-initialised for the dataset's classes
and the position embedding interpolated to its image size. The model (--model, --preset, --set) must be
the checkpoint's otherwise. --linear-probe updates only the head (head_norm, head): the rest stays bit
for bit, with no optimiser state and no weight decay. The file is read when the run starts only.

On a CPU shared with other busy processes, start with OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1):
NumPy's BLAS threads that wait on each other can make steps ten times slower.
"""

# Options that define a run: with --resume they come from the saved run and may not be given.
RUN_OPTIONS = ("task", "model", "preset", "dataset", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
               "warmup_epochs", "min_lr", "label_smoothing", "clip_grad", "augment", "model_set", "seed",
               "dtype", "eval_batch_size", "train_limit", "test_limit", "out", "overwrite", "init_from",
               "linear_probe")
SETTINGS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "warmup_epochs", "min_lr", "label_smoothing",
            "clip_grad", "augment", "seed", "dtype", "eval_batch_size", "train_limit", "test_limit", "init_from",
            "linear_probe")


def _flag(name: str) -> str:
    return "--" + {"model_set": "set", "augment": "no-augment"}.get(name, name.replace("_", "-"))


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to train")
    what.add_argument("--task", choices=tuple(TASK_SPELLINGS),
                      help="classification (default; also 'classify'), mae, lm, mlm, genre, dino or simdino "
                           "(default: the preset's)")
    what.add_argument("--model", choices=model_names(),
                      help="the model (default: the preset's); vit: the ViT baseline of a classifier, gpt: the "
                           "GPT baseline of --task lm, crate-bert and bert: the bidirectional token models of "
                           "--task mlm and genre")
    what.add_argument("--preset", choices=tuple(PRESETS), help="the recipe (default: mnist-demo, or the task's; list below)")
    what.add_argument("--dataset", choices=DATASETS,
                      help="the image dataset (default: the preset's); image size and classes follow from it")
    what.add_argument("--set", dest="model_set", type=key_value, action="append", metavar="KEY=VALUE",
                      help="change a field of the model's config or a data option of the task, e.g. --set dim=128 "
                           "--set depth=4 (repeatable)")

    start = p.add_argument_group("fine-tuning")
    start.add_argument("--init-from", metavar="FILE_OR_RUN",
                       help="start from these weights (a weights file or a run folder): backbone kept, new head")
    start.add_argument("--linear-probe", action="store_true", default=None,
                       help="with --init-from: train only the head, the backbone frozen")

    how = p.add_argument_group("how to train (defaults: the preset's)")
    how.add_argument("--epochs", metavar="N", type=positive_int, help="passes over the training set")
    how.add_argument("--batch-size", metavar="N", type=positive_int, help="examples per update")
    how.add_argument("--optimizer", choices=OPTIMIZERS, help="AdamW, Lion or SGD with Nesterov momentum 0.9")
    how.add_argument("--lr", metavar="LR", type=positive_float, help="peak learning rate (linear warmup, then cosine decay)")
    how.add_argument("--weight-decay", metavar="WD", type=nonnegative_float,
                     help="decoupled weight decay, applied to weight matrices only (not biases, norms, embeddings)")
    how.add_argument("--warmup-epochs", metavar="E", type=nonnegative_float, help="length of the linear warmup, in epochs")
    how.add_argument("--min-lr", metavar="LR", type=nonnegative_float, help="learning rate at the end of the cosine (<= --lr)")
    how.add_argument("--label-smoothing", metavar="S", type=fraction, help="label smoothing of the cross-entropy, in [0, 1)")
    how.add_argument("--clip-grad", type=positive_float, metavar="NORM", help="cap the global gradient norm")
    how.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                     help="no random crops or flips")
    how.add_argument("--seed", metavar="N", type=nonnegative_int,
                     help="seeds the initialisation, batch order and augmentation (default 0)")

    where = p.add_argument_group("where and how to run")
    add_device_argument(where, "$WHITEBOX_DEVICE or cpu, or the resumed run's")
    where.add_argument("--dtype", choices=DTYPES, help="float32 (default) or float64 (for exact checks)")
    where.add_argument("--out", metavar="FOLDER", help="output folder (default: runs/MODEL-PRESET[-DATASET])")
    where.add_argument("--overwrite", action="store_true", default=None,
                       help="replace a run already in the output folder (its files stay until the new run is ready)")
    where.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")
    where.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    where.add_argument("--eval-batch-size", metavar="N", type=positive_int, help="test images per forward pass")
    where.add_argument("--train-limit", type=positive_int, metavar="N", help="use only the first N training images")
    where.add_argument("--test-limit", type=positive_int, metavar="N", help="use only the first N test images")

    stop = p.add_argument_group("stopping and resuming")
    stop.add_argument("--resume", metavar="FOLDER", help="continue the run saved in FOLDER with its own settings")
    stop.add_argument("--max-steps", type=positive_int, metavar="N",
                      help="stop after N updates in all (the schedule still spans --epochs); resume later")
    stop.add_argument("--reshard", action="store_true",
                      help="with --resume: continue on another number of ranks than the run trained on")

    ranks = p.add_argument_group("more than one process (launch with mpiexec -n N python -m whitebox train ...)")
    add_distributed_argument(ranks)


def add_distributed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distributed", choices=("mpi", "nccl"),
                   help="data parallel over the ranks of mpiexec: mpi (CPUs, mpi4py) or nccl (one GPU per rank, "
                        "CuPy); --batch-size stays the global batch")


def on_every_rank(comm, run: Callable[[], int]) -> int:
    """``run()`` on one rank of ``comm``: an error raised on this rank alone (not on all of them together,
    :func:`whitebox.distributed.is_collective`) is printed and stops every rank, so that none waits for ever."""
    try:
        return run()
    except Exception as e:
        if comm.size > 1 and not is_collective(e):
            print(f"{PROG}: error: rank {comm.rank} of {comm.size}: {' '.join(str(e).split())}; stopping every rank",
                  file=sys.stderr, flush=True)
            comm.abort(1)
        raise


def preset_table() -> str:
    """The presets, one entry each, for ``whitebox train --help``."""
    lines = ["presets:"]
    for name, p in PRESETS.items():
        shape = " ".join(f"{k} {v}" for k, v in p.model.items())
        data = f"{p.dataset}; " if p.dataset else ""
        lines.append(f"  {name:<17} ({p.task}, {p.model_name}) {p.description}\n  {'':<17} {data}{shape}; {p.epochs} "
                     f"epochs of batch {p.batch_size}; {p.optimizer} lr {p.lr:g}, weight decay {p.weight_decay:g}")
    return "\n".join(lines)


def train_config(args: argparse.Namespace):
    """The :class:`whitebox.train.RunConfig` of ``whitebox train`` arguments."""
    try:
        return resolve_config(args.model, args.preset, task=TASK_SPELLINGS[args.task] if args.task else None,
                              dataset=args.dataset, model_overrides=dict(args.model_set or []),
                              **{name: getattr(args, name) for name in SETTINGS})
    except ConfigError as e:
        raise UsageError(str(e)) from None


@command("train", "train a model: classification (CRATE, CRATE-alpha), masked autoencoding, character LM",
         TRAIN_DESCRIPTION + "\n" + preset_table(), add_train_arguments)
def train(args: argparse.Namespace) -> int:
    comm = communicator(args.distributed)
    options = dict(device=args.device, data_dir=args.data_dir, max_steps=args.max_steps, quiet=args.quiet,
                   curves=figures.plot_curves, comm=comm)

    def arguments():
        if args.resume is not None:
            given = [name for name in RUN_OPTIONS if getattr(args, name) is not None]
            if given:
                raise UsageError(f"--resume continues the saved run with its own settings; drop "
                                 f"{', '.join(_flag(n) for n in given)}")
            return lambda: resume_run(args.resume, reshard=args.reshard, **options)
        if args.reshard:
            raise UsageError("--reshard goes with --resume")
        config = train_config(args)
        out = args.out or "runs/" + "-".join(filter(None, (config.model, config.preset, config.dataset)))
        return lambda: start_run(config, out, overwrite=bool(args.overwrite), **options)

    def work():
        with comm.together("reading the arguments"):
            run = arguments()
        return report_training(run, comm.is_root)

    return on_every_rank(comm, work)


def report_training(run: Callable, prints: bool = True) -> int:
    """Run ``run()`` (a start or a resume) and print its summary (if ``prints``: rank 0 of several);
    Ctrl-C and divergence as one message."""
    try:
        result = run()
    except TrainingInterrupted as stop:
        print(f"\n{stop}\nresume with: python -m whitebox train --resume {stop.checkpoint.parent}", file=sys.stderr)
        return INTERRUPTED
    except (NonFiniteLossError, NonFiniteEvaluationError) as e:
        raise collective_error(CommandError(f"{e} Resuming would repeat this step exactly (the run is deterministic): start "
                             "again with a lower --lr or with --clip-grad NORM (--overwrite reuses the folder)."
                                            )) from None  # every rank sees the same reduced loss, stops at the same step
    if prints:
        print(training_summary(result))
    return 0


def _figures(r: dict, prefix: str) -> str:
    """``accuracy 98.10% (loss 0.5234)``, ``loss 1.2345, 1.781 bits per character``, or the masked task's
    ``masked-token accuracy 45.10%, 2.345 bits per masked character (unigram 4.567)``."""
    if prefix + "unigram_bpc" in r:
        return (f"masked-token accuracy {r[prefix + 'accuracy']:.2%}, {r[prefix + 'bpc']:.3f} bits per masked "
                f"character (unigram {r[prefix + 'unigram_bpc']:.3f})")
    if prefix + "accuracy" in r:
        return f"accuracy {r[prefix + 'accuracy']:.2%} (loss {r[prefix + 'loss']:.4f})"
    bpc = f", {r[prefix + 'bpc']:.3f} bits per character" if prefix + "bpc" in r else ""
    knn = f", k-NN accuracy {r[prefix + 'knn_accuracy']:.2%}" if prefix + "knn_accuracy" in r else ""
    return f"loss {r[prefix + 'loss']:.4f}{bpc}{knn}"


def training_summary(result) -> str:
    """The closing lines of ``whitebox train``: held-out figures, times, size, and where the files are."""
    lines = []
    if result.record is not None:
        r = result.record
        lines.append(f"test {_figures(r, 'test_')} after epoch {r['epoch']} of {result.config.epochs} (step {r['step']})")
    if not result.finished:
        lines.append(f"stopped at step {result.step} of {result.total_steps}; continue with: "
                     f"python -m whitebox train --resume {result.paths.out}")
    lines.append(f"wall time {duration(result.wall_time)} (training and evaluation over all sessions: "
                 f"{duration(result.train_time)}); {result.num_params:,} parameters")
    for label, path in (("metrics", result.paths.metrics), ("curves", result.paths.curves),
                        ("checkpoint", result.paths.checkpoint), ("config", result.paths.config)):
        lines.append(f"  {label:<11} {path}")
    return "\n".join(lines)


# -- whitebox eval ----------------------------------------------------------------------------

WEIGHTS_OPTIONS = ("model", "preset", "dataset", "model_set", "test_limit")
EVAL_DESCRIPTION = f"""\
Evaluate a checkpoint on its run's held-out split (same data, dtype and test examples as in training),
or, with --weights FILE, a weights file that was not trained here on the test split of --dataset.

With --weights: {PRESET_RULE[0].lower() + PRESET_RULE[1:]}
The dataset (default: the training preset's, mnist for a model preset) fixes the image size, channels and
classes, as in whitebox train; the loss is the plain cross-entropy.

{FORMATS}

examples:
  whitebox eval runs/demo
  whitebox eval --weights mnist_crate.pth --model crate --preset mnist-demo
  whitebox eval --weights crate_cifar.safetensors --model crate --preset tiny --set patch_size=4 --dataset cifar10
"""


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", nargs="?", help="a run folder (uses its checkpoint.npz) or a checkpoint file")
    add_device_argument(p, "the device the run trained on, or $WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")
    p.add_argument("--batch-size", metavar="N", type=positive_int, help="test images per forward pass (default: the run's)")
    weights = p.add_argument_group("a weights file not trained here (instead of RUN)")
    weights.add_argument("--weights", metavar="FILE", help="a .pth / .pt / .pth.tar, .safetensors or .npz file")
    add_model_arguments(weights, required=False)
    weights.add_argument("--dataset", choices=DATASETS, help="the test split to use (see the description)")
    weights.add_argument("--test-limit", type=positive_int, metavar="N", help="use only the first N test images")


@command("eval", "held-out figures of a saved checkpoint (test accuracy, loss, bits per character)",
         EVAL_DESCRIPTION, add_eval_arguments)
def evaluate(args: argparse.Namespace) -> int:
    if args.weights is not None:
        return evaluate_weights_file(args)
    given = [name for name in WEIGHTS_OPTIONS if getattr(args, name) is not None]
    if args.run is None or given:
        raise UsageError(f"{', '.join(_flag(n) for n in given)}: only with --weights FILE (a weights file not "
                         "trained here); a run folder has its own model and data"
                         if given else "give a run folder RUN, or --weights FILE with --model and --preset")
    result = evaluate_checkpoint(args.run, device=args.device, data_dir=args.data_dir, eval_batch_size=args.batch_size)
    config = result["config"]
    if config.task == "classification":
        print(f"test {_figures(result, '')} on {result['n']} {config.dataset} test images; {config.model} "
              f"({config.preset}) at step {result['step']}, {result['path']}")
    else:
        print(f"held-out {_figures(result, '')} ({config.model}, {config.preset}) at step {result['step']}, "
              f"{result['path']}")
    return 0


def evaluate_weights_file(args: argparse.Namespace) -> int:
    """``whitebox eval --weights FILE``: test accuracy of a weights file on the dataset's test split."""
    if args.run is not None:
        raise UsageError(f"give either a run folder ({args.run}) or --weights {args.weights}, not both")
    missing = [flag for flag, value in (("--model", args.model), ("--preset", args.preset)) if value is None]
    if missing:
        raise UsageError(f"--weights needs {' and '.join(missing)}: the model the file holds")
    config = eval_config(args)
    result = evaluate_weights(args.weights, config, device=args.device, data_dir=args.data_dir)
    print(f"test {_figures(result, '')} on {result['n']} {config.dataset} test images; {config.model} "
          f"({args.preset}) weights from {result['path']}")
    return 0


def _load_task_run(path, task: str, device):
    run = load_run(path, device=device)
    if run.config.task != task:
        raise CommandError(f"{run.path} is a checkpoint of the {run.config.task} task, not of {task}; "
                           f"train one with: whitebox train --task {task}")
    return run


# -- whitebox reconstruct ---------------------------------------------------------------------

def add_reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a CRATE-MAE run folder (its checkpoint.npz) or checkpoint file")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the image grid")
    p.add_argument("--count", type=positive_int, default=8, metavar="N", help="test images to show (default 8)")
    p.add_argument("--first", type=nonnegative_int, default=0, metavar="I", help="index of the first test image (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="seeds the random masks (default 0)")
    add_device_argument(p, "the device the run trained on")


@command("reconstruct", "PNG grid of masked test images, CRATE-MAE reconstructions and originals",
         "Show what a CRATE-MAE checkpoint (whitebox train --task mae) fills in: for a few test images, the "
         "masked input, the reconstruction and the original.", add_reconstruct_arguments)
def reconstruct(args: argparse.Namespace) -> int:
    run = _load_task_run(args.checkpoint, "mae", args.device)
    dataset = run.config.dataset
    images = load_dataset(dataset, "test")[0][args.first:args.first + args.count]
    if len(images) == 0:
        raise CommandError(f"--first {args.first} is past the end of the {dataset} test split")
    path = figures.reconstruction_grid(run.params, run.cfg, images, args.out, seed=args.seed,
                                       dtype=next(iter(run.params.values())).dtype)
    print(f"wrote {path}: {len(images)} {dataset} test images (masked input, reconstruction, original)")
    return 0


# -- whitebox sample --------------------------------------------------------------------------

def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a causal CRATE (--task lm) run folder or checkpoint file")
    p.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    p.add_argument("--chars", type=nonnegative_int, default=300, metavar="N", help="characters to generate (default 300)")
    p.add_argument("--temperature", type=positive_float, default=0.8, metavar="T", help="softmax temperature (default 0.8)")
    p.add_argument("--top-k", type=positive_int, metavar="K", help="sample among the K likeliest characters (1: greedy)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="seeds the draws (default 0)")
    add_device_argument(p, "the device the run trained on")


@command("sample", "print text sampled from a causal CRATE checkpoint",
         "Continue a prompt with a character model trained by whitebox train --task lm (temperature, top-k).",
         add_sample_arguments)
def sample(args: argparse.Namespace) -> int:
    if not args.prompt:
        raise UsageError("--prompt must not be empty")
    run = _load_task_run(args.checkpoint, "lm", args.device)
    try:
        text = crate_lm.sample(run.params, run.cfg, args.prompt, args.chars, args.temperature, args.top_k, args.seed,
                               tokenizer=run.tokenizer())
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(args.prompt + text)
    return 0



# -- whitebox fill ----------------------------------------------------------------------------

def add_fill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="a CRATE-BERT (--task mlm) run folder or checkpoint")
    p.add_argument("--text", required=True, help=f"the text, with {MASK} where a token is to be filled in")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="predictions shown per mask (default 5)")
    add_device_argument(p, "the device the run trained on")


@command("fill", "the likeliest tokens at each [MASK] of a text under a CRATE-BERT checkpoint",
         f"Show what a masked language model (whitebox train --task mlm) predicts at every {MASK} of --text: "
         "the top-k tokens with their probabilities, all masks filled in one pass.", add_fill_arguments)
def fill(args: argparse.Namespace) -> int:
    run = _load_task_run(args.checkpoint, "mlm", args.device)
    tokenizer = run.tokenizer()
    try:
        ids = tokenizer.encode(args.text)
        if len(ids) > run.cfg.block_size:
            raise ValueError(f"the text is {len(ids)} tokens long, more than the model's context of "
                             f"{run.cfg.block_size}")
        predictions = crate_lm.fill_masks(run.params, run.cfg, ids, tokenizer.special_id(MASK), args.top_k)
    except ValueError as e:
        raise UsageError(f"--text: {e}") from None
    print(args.text)
    for number, (position, top, probs) in enumerate(predictions, 1):
        shown = ", ".join(f"{tokenizer.decode([t])!r} {p:.1%}" for t, p in zip(top.tolist(), probs.tolist()))
        print(f"{MASK} {number} (token {position}): {shown}")
    return 0
