"""A training run in a folder: start one, resume one, evaluate its checkpoint.

These are what ``whitebox train`` and ``whitebox eval`` call; they tie a :class:`RunConfig` to the
generic loop (:func:`whitebox.train.loop.fit`) and to the run folder (:class:`RunPaths`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..backend import get_xp, resolve_device
from ..data import load_dataset
from ..models.registry import get_model
from .build import init_params, load_splits, make_optimizer, make_schedule, make_task
from .checkpoint import load_checkpoint
from .config import RunConfig
from .files import RunPaths, atomic_write_text
from .loop import fit, say
from .metrics import read_metrics
from .state import TrainState, restore_state


class RunExistsError(FileExistsError):
    """The output folder already holds a run."""


class NoCheckpointError(FileNotFoundError):
    """There is no checkpoint where one was expected."""


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


def start_run(config: RunConfig, out, *, device: str | None = None, data_dir=None, overwrite: bool = False,
              max_steps: int | None = None, quiet: bool = False, echo=say) -> RunResult:
    """Train a new run of ``config`` in the folder ``out``.

    Refuses a folder that holds a checkpoint already, unless ``overwrite`` (which deletes that
    run's files first); ``whitebox train --resume`` continues such a run instead.
    """
    began = time.perf_counter()
    paths = RunPaths(Path(out))
    if paths.checkpoint.exists() and not overwrite:
        raise RunExistsError(f"{paths.out} already holds a run ({paths.checkpoint.name}); continue it with "
                             f"--resume {paths.out}, or start over with --overwrite")
    device = resolve_device(device)
    xp = get_xp(device)
    train, test = load_splits(config, data_dir)
    task = make_task(config, train, test, xp)
    optimizer = make_optimizer(config)
    params = init_params(config, device)
    state = TrainState(params, optimizer.init(params))
    for old in (paths.checkpoint, paths.metrics, paths.curves, paths.config):  # only once all the above worked
        old.unlink(missing_ok=True)
    atomic_write_text(paths.config, json.dumps(_described(config, task, device, train, test), indent=2) + "\n")
    return _train(config, task, optimizer, state, paths, device, None, began, max_steps, quiet, echo)


def resume_run(out, *, device: str | None = None, data_dir=None, max_steps: int | None = None,
               quiet: bool = False, echo=say) -> RunResult:
    """Continue the run in folder ``out`` from its checkpoint, with the config saved there.

    ``device`` defaults to the device the run was on; a run may move between CPU and GPU.
    """
    began = time.perf_counter()
    paths = RunPaths(Path(out))
    if not paths.checkpoint.exists():
        raise NoCheckpointError(f"no checkpoint to resume: {paths.checkpoint} does not exist")
    checkpoint = load_checkpoint(paths.checkpoint)
    config = RunConfig.from_dict(checkpoint.meta["config"])
    device = resolve_device(device or checkpoint.meta["device"])
    xp = get_xp(device)
    train, test = load_splits(config, data_dir)
    task = make_task(config, train, test, xp)
    optimizer = make_optimizer(config)
    state = restore_state(checkpoint, optimizer, xp, np.dtype(config.dtype).type)
    return _train(config, task, optimizer, state, paths, device, state.step, began, max_steps, quiet, echo)


def _train(config, task, optimizer, state, paths, device, saved_step, began, max_steps, quiet, echo) -> RunResult:
    title = f"{config.model} ({config.preset}) on {config.dataset}"
    meta = {"config": config.to_dict(), "device": device, "title": title}
    num_params = get_model(config.model).num_params(config.model_cfg())
    if not quiet:
        steps = task.steps_per_epoch
        echo(f"{title}: {num_params:,} parameters; {config.epochs} epochs of {steps} steps (batch "
             f"{config.batch_size}), {config.optimizer} lr {config.lr:g}; {device} {config.dtype}; writing to {paths.out}")
        if saved_step is not None:
            echo(f"resuming at step {state.step} (epoch {state.step // steps + 1}, batch {state.step % steps + 1} of {steps})")
    fit(task, state, optimizer, make_schedule(config, task.steps_per_epoch), epochs=config.epochs,
        seed=config.seed, paths=paths, meta=meta, clip_grad=config.clip_grad, max_steps=max_steps,
        saved_step=saved_step, quiet=quiet, echo=echo)
    records = read_metrics(paths.metrics)
    return RunResult(paths, config, state.step, config.epochs * task.steps_per_epoch,
                     records[-1] if records else None, num_params, time.perf_counter() - began, state.train_time)


def _described(config: RunConfig, task, device: str, train: tuple, test: tuple) -> dict:
    """config.json: the config, and facts derived from it (for the reader; not read back)."""
    steps = task.steps_per_epoch
    return {
        **config.to_dict(),
        "derived": {
            "num_params": get_model(config.model).num_params(config.model_cfg()),
            "train_size": len(train[1]), "test_size": len(test[1]),
            "steps_per_epoch": steps, "total_steps": config.epochs * steps,
            "warmup_steps": make_schedule(config, steps).keywords["warmup_steps"],
            "device": device, "whitebox": __version__, "numpy": np.__version__,
        },
    }


def checkpoint_path(path) -> Path:
    """The checkpoint of a run folder, or ``path`` itself when it is a file."""
    path = Path(path)
    return RunPaths(path).checkpoint if path.is_dir() else path


def evaluate_checkpoint(path, *, device: str | None = None, data_dir=None, eval_batch_size: int | None = None) -> dict:
    """The test metrics of a checkpoint (a run folder or a ``.npz``), on its run's test split.

    Returns ``{"loss", "accuracy", "n", "step", "config"}``; with the run's dtype and test split
    the accuracy is the one the run logged for that step.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise NoCheckpointError(f"no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    config = RunConfig.from_dict(checkpoint.meta["config"])
    device = resolve_device(device or checkpoint.meta["device"])
    xp = get_xp(device)
    images, labels = load_dataset(config.dataset, "test", data_dir)
    test = (images[:config.test_limit], labels[:config.test_limit])
    if eval_batch_size is not None:
        config = dataclasses.replace(config, eval_batch_size=eval_batch_size)
    task = make_task(config, (images[:0], labels[:0]), test, xp)
    dtype = np.dtype(config.dtype).type
    params = {k: xp.asarray(v, dtype=dtype) for k, v in checkpoint.params.items()}
    return {**task.evaluate(params), "step": checkpoint.meta["step"], "config": config}
