"""A training run in a folder: start one, resume one, load one, evaluate it. One path for every task.

These are what ``whitebox train``, ``eval``, ``measure``, ``attention``, ``reconstruct``,
``sample`` and the ablation experiment call; they tie a :class:`RunConfig` to the generic loop
(:func:`whitebox.train.loop.fit`), to the task builders (:mod:`whitebox.train.build`) and to the
run folder (:class:`whitebox.io.RunPaths`).

* :func:`start_run` refuses a folder that holds a run unless ``overwrite``; even then the old
  run's files stay until the new run has loaded its data and built its model, so a failure on the
  way (missing data, a bad device) loses nothing.
* :func:`load_run` reads a checkpoint (a run folder or its ``checkpoint.npz``) and refuses one
  whose parameters do not fit its config, or whose config is not the run folder's ``config.json``.
* A run with ``init_from`` (fine-tuning) starts from the parameters of a weights file
  (:func:`whitebox.weights.finetuning_params_from_file`) or of another run
  (:func:`whitebox.weights.params_for_finetuning`): backbone kept, head re-initialised from the
  run's seed, positions interpolated to the new image size. The run may be a classifier's or a
  self-supervised one (DINO, SimDINO), whose backbone is the same model's without a classifier. The file is read only when the run
  starts; ``resume_run`` continues from the run's own checkpoint.
* :func:`evaluate_weights` evaluates a weights file that was not trained here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

from .. import __version__
from ..backend import array_module, get_xp, resolve_device
from ..data.bpe import tokenizer_from_json
from ..data.text import Tokenizer
from ..distributed import SINGLE, Communicator, DistributedError, broadcast_tree
from ..models.common import BACKBONE_EXCLUDED, backbone_shapes
from ..io import CHECKPOINT_NAME, RunPaths, atomic_write_text, remove_stale_temporaries
from ..weights import finetuning_params_from_file, load_model_weights, params_for_finetuning
from .build import build_task, init_params, make_optimizer, make_schedule, run_shapes, trained_names
from .checkpoint import Checkpoint, CheckpointError, NoCheckpointError, load_checkpoint
from .config import SELF_SUPERVISED, TEXT_TASKS, ConfigError, RunConfig
from .loop import fit, say, trained_params
from .metrics import read_metrics
from .state import TrainState, restore_state


class RunExistsError(FileExistsError):
    """The output folder already holds a run."""


class RunFolderError(OSError):
    """The output folder cannot be used (it is a file, or not writable)."""


@dataclass(frozen=True)
class RunResult:
    paths: RunPaths
    config: RunConfig
    step: int  # updates taken
    total_steps: int
    record: dict | None  # the last line of metrics.jsonl
    num_params: int
    wall_time: float  # seconds of this session, data loading included
    train_time: float  # seconds of steps and evaluations over all sessions

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


@dataclass(frozen=True)
class LoadedRun:
    """A checkpoint ready to use: its config, the model, the parameters on the device, the metadata."""

    config: RunConfig
    model: ModuleType  # the model's module (forward, init, ...)
    cfg: object  # the model's Config
    params: dict  # on the device, in the run's dtype
    meta: dict  # the checkpoint's metadata (step, tokenizer ...)
    path: Path  # the checkpoint file

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    def tokenizer(self) -> Tokenizer | None:
        """The vocabulary of a token model's run (characters or byte-pair merges), None otherwise."""
        return tokenizer_from_json(self.meta["tokenizer"]) if "tokenizer" in self.meta else None

    def initial_params(self) -> dict:
        """The parameters this run started from (:func:`starting_params`), on the same device."""
        return starting_params(self.config, "cpu" if array_module(*self.params.values()) is np else "gpu")


def _is_run(path: Path) -> bool:
    """A run folder, or a whitebox checkpoint file (a zip with a ``meta`` entry), rather than a weights file."""
    if path.is_dir():
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return "meta.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _fitted_weights(path, load: Callable) -> dict:
    """``load()``, with a weights file that cannot be read, or does not fit the config, as :class:`ConfigError`."""
    try:
        return load()
    except ValueError as e:  # WeightsFileError (it names the file), or a weight the config does not fit
        message = str(e)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def starting_params(config: RunConfig, device: str) -> dict:
    """The parameters a run of ``config`` starts from, on ``device``: ``init`` with its seed and dtype, or
    with ``init_from`` the backbone of that weights file or run, a new head and positions resized."""
    if config.init_from is None:
        return init_params(config, device)
    path, cfg, dtype = Path(config.init_from), config.model_cfg(), np.dtype(config.dtype).type
    if not _is_run(path):
        return _fitted_weights(path, lambda: finetuning_params_from_file(path, cfg, config.seed, dtype=dtype,
                                                                         device=device))
    run = load_run(path, device="cpu")
    if run.config.task not in ("classification", *SELF_SUPERVISED) and config.task not in TEXT_TASKS:  # text: when built
        raise ConfigError(f"init_from {path}: a {run.config.task} run has no classifier to fine-tune")
    old = run.params
    if run.config.task in SELF_SUPERVISED:  # no classifier but a projection head: the backbone, a placeholder head
        backbone = {name: run.params[name] for name in backbone_shapes(run.cfg)}
        placeholder = run.model.init(run.cfg, seed=config.seed, dtype=backbone["head_norm.weight"].dtype)  # replaced
        old = {**{name: placeholder[name] for name in BACKBONE_EXCLUDED}, **backbone}
    params = _fitted_weights(run.path, lambda: params_for_finetuning(old, run.cfg, cfg, config.seed, device="cpu"))
    xp = get_xp(device)
    return {name: xp.asarray(value, dtype=dtype) for name, value in params.items()}


def _usable_folder(paths: RunPaths) -> None:
    out = paths.out
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot create the run folder {out} ({e.strerror}); choose another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"the run folder {out} is not writable; choose another --out")


def start_run(config: RunConfig, out, *, device: str | None = None, data_dir=None, overwrite: bool = False,
              max_steps: int | None = None, quiet: bool = False, echo=say, curves: Callable | None = None,
              on_step: Callable | None = None, comm: Communicator = SINGLE) -> RunResult:
    """Train a new run of ``config`` in the folder ``out``.

    Refuses a folder that holds a checkpoint already, unless ``overwrite``, which deletes that
    run's files only once the new run's data, model and optimiser are ready; ``resume_run``
    continues such a run instead. ``curves``, ``on_step``: see :func:`whitebox.train.loop.fit`.
    ``comm``: the ranks of a data-parallel run (:mod:`whitebox.distributed`), which every rank
    starts with the same arguments; a set-up that fails on one rank fails on all of them.
    """
    began = time.perf_counter()
    paths = RunPaths(out)
    comm.agree(json.dumps([config.to_dict(), str(paths.out.resolve()), device, overwrite, max_steps]),
               "the run's config and options")
    with comm.together("setting up the run"):
        if paths.checkpoint.exists() and not overwrite:
            raise RunExistsError(f"{paths.out} already holds a run ({paths.checkpoint.name}); continue it with "
                                 f"--resume {paths.out}, or start over with --overwrite")
        _usable_folder(paths)
        device = resolve_device(device)
        task, config, extra = build_task(config, get_xp(device), data_dir=data_dir)
        _check_shares(config, task, comm)
        params = starting_params(config, device)
        trained = trained_params(params, trained_names(config))
        optimizer = make_optimizer(config, trained)
        state = TrainState(params, optimizer.init(trained))
        if comm.is_root:
            for old in paths.files():  # only once all the above worked
                old.unlink(missing_ok=True)
            remove_stale_temporaries(paths.out, [p.name for p in paths.files()])
            atomic_write_text(paths.config, json.dumps(_described(config, task, device), indent=2) + "\n")
    return _train(config, task, extra, optimizer, state, paths, device, None, began, max_steps, quiet, echo, curves,
                  on_step, comm)


def resume_run(out, *, device: str | None = None, data_dir=None, max_steps: int | None = None,
               quiet: bool = False, echo=say, curves: Callable | None = None, on_step: Callable | None = None,
               comm: Communicator = SINGLE, reshard: bool = False) -> RunResult:
    """Continue the run in ``out`` (its folder or its ``checkpoint.npz``) with the config saved there.

    ``device`` defaults to the device the run was on; a run may move between CPU and GPU. A run
    continues on as many ranks (``comm``) as it trained on, or on another number with
    ``reshard`` (the same mathematics; only the rounding of the sums differs).
    """
    began = time.perf_counter()
    paths = RunPaths.of(out)
    comm.agree(json.dumps([str(paths.checkpoint.resolve()), device, max_steps, reshard]), "the resumed run and options")
    with comm.together("loading the run to resume"):
        if not paths.checkpoint.exists():
            raise NoCheckpointError(f"no checkpoint to resume: {paths.checkpoint} does not exist")
        checkpoint = load_checkpoint(paths.checkpoint)
        config = _checked_config(checkpoint, paths.checkpoint)
        ranks = checkpoint.meta.get("ranks", 1)
        if ranks != comm.size and not reshard:
            raise DistributedError(
                f"{paths.checkpoint} was trained on {ranks} rank(s) but this launch has {comm.size}: resume it with "
                f"{'mpiexec -n ' + str(ranks) + ' ' if ranks > 1 else ''}python -m whitebox train --resume {paths.out}"
                f"{' --distributed ' + checkpoint.meta.get('backend', 'mpi') if ranks > 1 else ''}, or add --reshard "
                f"to continue on {comm.size} (same mathematics, different rounding)")
        _usable_folder(paths)
        device = resolve_device(device or checkpoint.meta.get("device"))
        xp = get_xp(device)
        tokenizer = tokenizer_from_json(checkpoint.meta["tokenizer"]) if "tokenizer" in checkpoint.meta else None
        task, config, extra = build_task(config, xp, data_dir=data_dir, tokenizer=tokenizer)
        _check_shares(config, task, comm)
        _check_fits(config, checkpoint.params, paths.checkpoint)
        optimizer = make_optimizer(config, trained_params(checkpoint.params, trained_names(config)))
        state = restore_state(checkpoint, optimizer, xp, np.dtype(config.dtype).type)
        if hasattr(task, "load_state"):
            task.load_state(checkpoint.task)
        if comm.is_root:
            remove_stale_temporaries(paths.out, [p.name for p in paths.files()])
    comm.agree(config.to_json() + json.dumps(checkpoint.meta["step"]), "the checkpoint they read")
    return _train(config, task, extra, optimizer, state, paths, device, state.step, began, max_steps, quiet, echo,
                  curves, on_step, comm)


def _check_shares(config: RunConfig, task, comm: Communicator) -> None:
    """:class:`DistributedError` unless every batch splits over the ranks: the global batch evenly, a
    partial last batch of an epoch into shares of at least one example."""
    if comm.size == 1:
        return
    if config.batch_size % comm.size:
        raise DistributedError(f"--batch-size {config.batch_size} (the global batch) does not split evenly over "
                               f"{comm.size} ranks; give a multiple of {comm.size}")
    examples = task.train_labels if hasattr(task, "train_labels") else getattr(task, "train_images", ())
    last = len(examples) % config.batch_size  # classification, genre and mae; the lm tasks have no partial batch
    if 0 < last < comm.size:
        raise DistributedError(f"the last batch of an epoch holds {last} example(s), fewer than the {comm.size} "
                               "ranks; change --train-limit or --batch-size")


def _train(config, task, extra, optimizer, state, paths, device, saved_step, began, max_steps, quiet, echo,
           curves, on_step, comm) -> RunResult:
    title = f"{config.model} ({config.preset})" + (f" on {config.dataset}" if config.dataset else "")
    meta = {"task": config.task, "config": config.to_dict(), "device": device, **extra, "title": title,
            "ranks": comm.size, "backend": comm.backend}
    num_params = count_params(config)
    broadcast_tree(comm, state.params)  # every rank starts from rank 0's parameters
    quiet = quiet or not comm.is_root
    if not quiet:
        steps = task.steps_per_epoch
        ranks = f" over {comm.size} ranks ({comm.backend})" if comm.size > 1 else ""
        echo(f"{title}: {num_params:,} parameters; {config.epochs} epochs of {steps} steps (batch "
             f"{config.batch_size}{ranks}), {config.optimizer} lr {config.lr:g}; {device} {config.dtype}; "
             f"writing to {paths.out}")
        if saved_step is not None:
            echo(f"resuming at step {state.step} (epoch {state.step // steps + 1}, batch {state.step % steps + 1} of {steps})")
    fit(task, state, optimizer, make_schedule(config, task.steps_per_epoch), epochs=config.epochs,
        seed=config.seed, paths=paths, meta=meta, clip_grad=config.clip_grad, max_steps=max_steps,
        saved_step=saved_step, quiet=quiet, echo=echo, curves=curves, on_step=on_step,
        trained=trained_names(config), comm=comm)
    records = read_metrics(paths.metrics)
    return RunResult(paths, config, state.step, config.epochs * task.steps_per_epoch,
                     records[-1] if records else None, num_params, time.perf_counter() - began, state.train_time)


def count_params(config: RunConfig) -> int:
    """The number of scalar parameters a run of ``config`` trains and saves (:func:`run_shapes`)."""
    return int(sum(math.prod(shape) for shape in run_shapes(config).values()))


def _described(config: RunConfig, task, device: str) -> dict:
    """config.json: the config, and facts derived from it (for the reader; not read back)."""
    steps = task.steps_per_epoch
    sizes = {"train_size": len(task.train_labels), "test_size": len(task.test_labels)} \
        if hasattr(task, "train_labels") else {}
    return {
        **config.to_dict(),
        "derived": {
            "num_params": count_params(config), **sizes,
            "steps_per_epoch": steps, "total_steps": config.epochs * steps,
            "warmup_steps": make_schedule(config, steps).keywords["warmup_steps"],
            "device": device, "whitebox": __version__, "numpy": np.__version__,
        },
    }


def _checked_config(checkpoint: Checkpoint, file: Path) -> RunConfig:
    """The checkpoint's config; :class:`CheckpointError` if it is not one, or if the run folder's
    ``config.json`` describes another run (another model, task or setting), naming the difference."""
    try:
        config = RunConfig.from_dict(checkpoint.meta["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{file} does not hold a usable run config ({e})") from None
    paths = RunPaths(file.parent)
    if file.name == CHECKPOINT_NAME and paths.config.is_file():
        try:
            folder = RunConfig.from_dict(json.loads(paths.config.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{paths.config} is not a readable run config ({e}); restore it, or start over "
                                  "with --overwrite") from None
        ours, theirs = config.to_dict(), folder.to_dict()
        ours["model_config"].pop("vocab_size", None), theirs["model_config"].pop("vocab_size", None)
        differences = _differences(theirs, ours)
        if differences:
            raise CheckpointError(f"{paths.checkpoint} belongs to another run than {paths.config}: "
                                  f"{'; '.join(differences[:4])}. Use the checkpoint's own folder, or start over "
                                  "with --overwrite")
    return config


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key} is {x!r} in config.json but {y!r} in the checkpoint")
    return out


def _check_fits(config: RunConfig, params: dict, path) -> None:
    """:class:`CheckpointError` unless ``params`` are exactly the names and shapes of the config's model."""
    expected = run_shapes(config)
    missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    wrong = [f"{k} {tuple(params[k].shape)} (expected {tuple(expected[k])})" for k in expected
             if k in params and tuple(params[k].shape) != tuple(expected[k])]
    if missing or extra or wrong:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                 f"wrong shapes {wrong[:3]}" if wrong else ""]
        raise CheckpointError(f"{path}: the parameters do not fit the {config.model} config saved with them "
                              f"({', '.join(p for p in parts if p)})")


def load_run(path, *, device: str | None = None) -> LoadedRun:
    """The checkpoint of a run folder (or the ``.npz`` itself), checked, its parameters on ``device``
    (default: the device the run trained on) in the run's dtype."""
    file = RunPaths(path).checkpoint if Path(path).is_dir() else Path(path)
    checkpoint = load_checkpoint(file)
    config = _checked_config(checkpoint, file)
    if config.task in TEXT_TASKS and "tokenizer" not in checkpoint.meta:
        raise CheckpointError(f"{file} is a language-model checkpoint without its vocabulary (meta 'tokenizer')")
    _check_fits(config, checkpoint.params, file)
    xp = get_xp(resolve_device(device or checkpoint.meta.get("device")))
    dtype = np.dtype(config.dtype).type
    params = {k: xp.asarray(v, dtype=dtype) for k, v in checkpoint.params.items()}
    return LoadedRun(config, config.model_module(), config.model_cfg(), params, checkpoint.meta, file)


def evaluate_checkpoint(path, *, device: str | None = None, data_dir=None, eval_batch_size: int | None = None) -> dict:
    """The held-out metrics of a checkpoint (a run folder or a ``.npz``), on its run's held-out split.

    Returns the task's metrics (classification: ``loss``, ``accuracy``, ``n``; MAE: ``loss``;
    language model: ``loss``, ``bpc``) with ``"step"`` and ``"config"``; with the run's dtype and
    split they are the figures the run logged for that step.
    """
    run = load_run(path, device=device)
    config = run.config
    if eval_batch_size is not None:
        config = dataclasses.replace(config, eval_batch_size=eval_batch_size)
    task, config, _ = build_task(config, array_module(*run.params.values()), data_dir=data_dir, tokenizer=run.tokenizer(),
                                 train=False)
    if hasattr(task, "load_state"):  # DINO's teacher and centre, as when the run evaluated this step
        task.load_state(load_checkpoint(run.path).task)
    return {**task.evaluate(run.params), "step": run.step, "config": config, "path": run.path}


def evaluate_weights(path, config: RunConfig, *, device: str | None = None, data_dir=None) -> dict:
    """The held-out metrics of a weights file that was not trained here, for the model of ``config``.

    ``path`` is any file :func:`whitebox.weights.load_model_weights` reads (positions interpolated to
    the config's image size), ``config`` a classification config (:func:`whitebox.train.resolve_config`);
    a file that cannot be read or does not fit the config raises :class:`ConfigError` naming it.
    Returns ``loss``, ``accuracy``, ``n`` (as :func:`evaluate_checkpoint`) with ``"config"`` and ``"path"``.
    """
    if config.task != "classification":
        raise ConfigError(f"weights files hold classifiers; got a {config.task} config")
    device = resolve_device(device)
    params = _fitted_weights(path, lambda: load_model_weights(path, config.model_cfg(), dtype=np.dtype(config.dtype).type,
                                                              device=device))
    task, config, _ = build_task(config, get_xp(device), data_dir=data_dir, train=False)
    return {**task.evaluate(params), "config": config, "path": Path(path)}
