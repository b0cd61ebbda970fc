"""Runs of the generative tasks, masked autoencoding (``mae``) and language modelling (``lm``).

They use the same loop (:func:`whitebox.train.loop.fit`), checkpoints, ``metrics.jsonl``, curves
and progress bar as classification; what differs is the settings (:class:`TaskRunConfig`, saved
in every checkpoint under ``meta["config"]``, with ``meta["task"]`` naming the task) and how the
data and the task object are built (:func:`build_task`). A language-model checkpoint also holds
its character vocabulary (``meta["tokenizer"]``), so ``whitebox sample`` needs nothing else.

==================  ==========================================================================
``mnist-mae``       CRATE-MAE on MNIST: 7×7 patches of 4×4, width 64, 3 encoder + 3 decoder layers
``shakespeare-char``  causal CRATE on Shakespeare's characters: context 128, width 128, 4 layers
==================  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..backend import get_xp, resolve_device
from ..data import dataset_info, load_dataset
from ..data.catalog import check_dataset
from ..models import crate_lm, crate_mae
from ..optim import AdamW, Lion, decay_mask
from ..schedules import warmup_cosine
from .checkpoint import load_checkpoint
from .config import ConfigError
from .files import RunPaths, atomic_write_text
from .loop import fit
from .metrics import read_metrics
from .run import NoCheckpointError, RunExistsError, RunResult, checkpoint_path
from .state import TrainState, restore_state

TASKS = ("mae", "lm")
MODELS = {"mae": crate_mae, "lm": crate_lm}
MODEL_NAMES = {"mae": "crate-mae", "lm": "crate-lm"}
OPTIMIZERS = ("adamw", "lion")
DTYPES = ("float32", "float64")
# the data options of each task, with their defaults (``--set KEY=VALUE`` may change them)
DATA_OPTIONS = {
    "mae": {"dataset": "mnist", "eval_batch_size": 1000, "train_limit": None, "test_limit": None},
    "lm": {"val_fraction": 0.1, "steps_per_epoch": 500, "eval_windows": 256},
}


@dataclass(frozen=True)
class TaskPreset:
    """A recipe for a generative task; ``model`` holds fields of the model's Config, ``data`` data options."""

    description: str
    task: str
    model: dict
    data: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    clip_grad: float | None = None


TASK_PRESETS = {
    "mnist-mae": TaskPreset(
        "CRATE-MAE on MNIST, 75% of the patches masked (MAE's AdamW betas (0.9, 0.95))",
        task="mae",
        model=dict(patch_size=4, dim=64, depth=3, heads=4, dim_head=16,
                   decoder_dim=64, decoder_heads=4, decoder_dim_head=16),
        data=dict(dataset="mnist"),
        epochs=10, batch_size=128, lr=1.5e-3, weight_decay=0.05, warmup_epochs=1,
    ),
    "shakespeare-char": TaskPreset(
        "causal CRATE on Shakespeare's characters (REFERENCE §7: AdamW β₂ 0.95, wd 0.1, clip 1.0)",
        task="lm",
        model=dict(block_size=128, dim=128, depth=4, heads=4, dim_head=32),
        data=dict(steps_per_epoch=500, eval_windows=256),
        epochs=10, batch_size=32, lr=1e-3, weight_decay=0.1, warmup_epochs=0.2, min_lr=1e-4, clip_grad=1.0,
    ),
}
DEFAULT_PRESETS = {"mae": "mnist-mae", "lm": "shakespeare-char"}


@dataclass(frozen=True)
class TaskRunConfig:
    """The resolved settings of a generative run; it alone rebuilds the run (resume, sample, reconstruct)."""

    task: str
    preset: str
    model_config: dict  # every field of the model's Config
    data: dict  # the task's data options (DATA_OPTIONS)
    optimizer: str
    lr: float
    betas: tuple
    weight_decay: float
    epochs: int
    batch_size: int
    warmup_epochs: float
    min_lr: float
    clip_grad: float | None
    seed: int = 0
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, data: dict) -> "TaskRunConfig":
        return cls(**{**data, "betas": tuple(data["betas"])})

    @property
    def model(self) -> str:
        return MODEL_NAMES[self.task]

    def model_cfg(self):
        return MODELS[self.task].Config(**self.model_config)


def resolve_task_config(task: str, preset: str | None = None, *, model_overrides: dict | None = None,
                        data_overrides: dict | None = None, **overrides) -> TaskRunConfig:
    """A task's settings: the preset's, replaced by ``overrides`` (training fields, ``seed``, ``dtype``)
    that are not None, ``model_overrides`` (model Config fields) and ``data_overrides`` (data options)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {TASKS}")
    preset = preset or DEFAULT_PRESETS[task]
    recipe = TASK_PRESETS.get(preset)
    if recipe is None or recipe.task != task:
        names = tuple(name for name, p in TASK_PRESETS.items() if p.task == task)
        raise ConfigError(f"preset {preset!r} is not a {task} preset; choose one of {names}")
    given = {k: v for k, v in overrides.items() if v is not None}
    run_fields = {f.name for f in dataclasses.fields(TaskRunConfig)} - {"task", "preset", "model_config", "data"}
    unknown = sorted(set(given) - run_fields)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown} for task {task}")
    settings = {name: given.get(name, getattr(recipe, name, None)) for name in run_fields - {"seed", "dtype"}}
    settings.update({k: given[k] for k in ("seed", "dtype") if k in given})
    if settings["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"task {task} trains with one of {OPTIMIZERS}, got {settings['optimizer']!r}")
    if settings.get("dtype", "float32") not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {settings['dtype']!r}")
    data = {**DATA_OPTIONS[task], **recipe.data}
    unknown = sorted(set(data_overrides or {}) - set(data))
    if unknown:
        raise ConfigError(f"task {task} has no data option(s) {unknown}; it has {sorted(data)}")
    data.update(data_overrides or {})
    model = {**recipe.model, **(model_overrides or {})}
    if task == "mae":
        data["dataset"] = check_dataset(data["dataset"])
        info = dataset_info(data["dataset"])
        shape = dict(image_size=info.image_size, channels=info.channels)
        clashes = sorted(k for k in shape if k in model and model[k] != shape[k])
        if clashes:
            raise ConfigError(f"{clashes} come from the dataset {data['dataset']!r}: {({k: shape[k] for k in clashes})}")
        model.update(shape)
    elif "vocab_size" in model:
        raise ConfigError("vocab_size comes from the training text's characters; do not set it")
    else:
        model["vocab_size"] = 1  # placeholder, replaced by the tokenizer's size in build_task
    names = {f.name for f in dataclasses.fields(MODELS[task].Config)}
    unknown = sorted(set(model) - names)
    if unknown:
        raise ConfigError(f"model {MODEL_NAMES[task]!r} has no setting(s) {unknown}; its Config has {sorted(names)}")
    try:
        cfg = MODELS[task].Config(**model)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {MODEL_NAMES[task]} config: {e}") from e
    return TaskRunConfig(task=task, preset=preset, model_config=dataclasses.asdict(cfg), data=data,
                         betas=tuple(settings.pop("betas")), **settings)


def build_task(config: TaskRunConfig, xp=np, *, tokenizer=None, data_dir=None):
    """``(task, config, extra_meta)``: the task object of the config and the data it reads.

    For ``lm`` the vocabulary is built from the training text (or ``tokenizer``, when resuming)
    and the returned config carries its size. ``data_dir``: where to look first for the images (mae).
    """
    dtype = np.dtype(config.dtype).type
    if config.task == "mae":
        from .mae_task import MAETask

        data = config.data
        train = load_dataset(data["dataset"], "train", data_dir)[0][:data["train_limit"]]
        test = load_dataset(data["dataset"], "test", data_dir)[0][:data["test_limit"]]
        task = MAETask(config.model_cfg(), train, test, batch_size=config.batch_size, seed=config.seed,
                       dtype=dtype, xp=xp, eval_batch_size=data["eval_batch_size"])
        return task, config, {}
    from ..data.text import CharTokenizer, load_shakespeare, split_text
    from .lm_task import LMTask

    train_text, val_text = split_text(load_shakespeare(), config.data["val_fraction"])
    tokenizer = tokenizer or CharTokenizer.from_text(train_text)
    config = dataclasses.replace(config, model_config={**config.model_config, "vocab_size": tokenizer.vocab_size})
    task = LMTask(config.model_cfg(), tokenizer.encode(train_text), tokenizer.encode(val_text),
                  batch_size=config.batch_size, steps_per_epoch=config.data["steps_per_epoch"], seed=config.seed,
                  xp=xp, eval_windows=config.data["eval_windows"])
    return task, config, {"tokenizer": tokenizer.to_json()}


def make_optimizer(config: TaskRunConfig, params: dict):
    """AdamW or Lion with the config's betas; weight decay on :func:`decay_mask`, minus MAE's mask token."""
    decay = set(decay_mask(params)) - {"mask_token"}
    if config.optimizer == "lion":
        return Lion(config.lr, betas=config.betas, weight_decay=config.weight_decay, decay=decay)
    return AdamW(config.lr, betas=config.betas, weight_decay=config.weight_decay, decay=decay)


def make_schedule(config: TaskRunConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    return lambda step: warmup_cosine(step, base_lr=config.lr, total_steps=total, warmup_steps=warmup,
                                      min_lr=config.min_lr)


def start_task_run(config: TaskRunConfig, out, *, device: str | None = None, data_dir=None, overwrite: bool = False,
                   max_steps: int | None = None, quiet: bool = False, echo=print) -> RunResult:
    """Train a new run of a generative task in the folder ``out`` (see :func:`whitebox.train.start_run`)."""
    began = time.perf_counter()
    paths = RunPaths(Path(out))
    if paths.checkpoint.exists() and not overwrite:
        raise RunExistsError(f"{paths.out} already holds a run ({paths.checkpoint.name}); continue it with "
                             f"--resume {paths.out}, or start over with --overwrite")
    for old in (paths.checkpoint, paths.metrics, paths.curves, paths.config):
        old.unlink(missing_ok=True)
    device = resolve_device(device)
    xp = get_xp(device)
    task, config, extra = build_task(config, xp, data_dir=data_dir)
    model = MODELS[config.task]
    params = model.init(config.model_cfg(), seed=config.seed, dtype=np.dtype(config.dtype).type, device=device)
    optimizer = make_optimizer(config, params)
    state = TrainState(params, optimizer.init(params))
    described = {**config.to_dict(), "derived": {
        "model": config.model, "num_params": model.num_params(config.model_cfg()),
        "steps_per_epoch": task.steps_per_epoch, "total_steps": config.epochs * task.steps_per_epoch,
        "device": device, "whitebox": __version__, "numpy": np.__version__}}
    atomic_write_text(paths.config, json.dumps(described, indent=2) + "\n")
    return _train(config, task, extra, optimizer, state, paths, device, None, began, max_steps, quiet, echo)


def resume_task_run(out, *, device: str | None = None, data_dir=None, max_steps: int | None = None,
                    quiet: bool = False, echo=print) -> RunResult:
    """Continue the generative run in folder ``out`` from its checkpoint, with its saved settings."""
    from ..data.text import CharTokenizer

    began = time.perf_counter()
    paths = RunPaths(Path(out))
    if not paths.checkpoint.exists():
        raise NoCheckpointError(f"no checkpoint to resume: {paths.checkpoint} does not exist")
    checkpoint = load_checkpoint(paths.checkpoint)
    config = TaskRunConfig.from_dict(checkpoint.meta["config"])
    device = resolve_device(device or checkpoint.meta["device"])
    xp = get_xp(device)
    tokenizer = CharTokenizer.from_json(checkpoint.meta["tokenizer"]) if "tokenizer" in checkpoint.meta else None
    task, config, extra = build_task(config, xp, tokenizer=tokenizer, data_dir=data_dir)
    optimizer = make_optimizer(config, checkpoint.params)
    state = restore_state(checkpoint, optimizer, xp, np.dtype(config.dtype).type)
    return _train(config, task, extra, optimizer, state, paths, device, state.step, began, max_steps, quiet, echo)


def _train(config, task, extra, optimizer, state, paths, device, saved_step, began, max_steps, quiet, echo):
    meta = {"task": config.task, "config": config.to_dict(), "device": device, **extra,
            "title": f"{config.model} ({config.preset})"}
    fit(task, state, optimizer, make_schedule(config, task.steps_per_epoch), epochs=config.epochs,
        seed=config.seed, paths=paths, meta=meta, clip_grad=config.clip_grad, max_steps=max_steps,
        saved_step=saved_step, quiet=quiet, echo=echo)
    records = read_metrics(paths.metrics)
    return RunResult(paths, config, state.step, config.epochs * task.steps_per_epoch,
                     records[-1] if records else None, MODELS[config.task].num_params(config.model_cfg()),
                     time.perf_counter() - began, state.train_time)


def task_of(path) -> str | None:
    """The generative task of a run folder or checkpoint (``"mae"``, ``"lm"``), or None for classification."""
    path = checkpoint_path(path)
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path).meta.get("task")
    except (ValueError, OSError):
        return None


def load_task_checkpoint(path, task: str, *, device: str | None = None):
    """``(config, model_cfg, params, meta)`` of a ``task`` checkpoint (a run folder or a ``.npz``)."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise NoCheckpointError(f"no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    found = checkpoint.meta.get("task")
    if found != task:
        raise ValueError(f"{path} is a checkpoint of task {found or 'classify'!r}, not {task!r}")
    config = TaskRunConfig.from_dict(checkpoint.meta["config"])
    xp = get_xp(resolve_device(device or checkpoint.meta["device"]))
    dtype = np.dtype(config.dtype).type
    params = {k: xp.asarray(v, dtype=dtype) for k, v in checkpoint.params.items()}
    return config, config.model_cfg(), params, checkpoint.meta
