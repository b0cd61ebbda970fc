"""From a :class:`RunConfig` to the objects of a run: the task (its data), optimiser, schedule, parameters.

Each task plugs in here through one builder, ``BUILDERS[config.task](config, xp, data_dir,
tokenizer, train)``, which reads the task's data and returns ``(task, config, meta)``: the
:class:`whitebox.train.task.Task` object, the config completed with what the data fixes (the
vocabulary size of a character model), and what a checkpoint must carry besides the config
(the character vocabulary).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np

from ..data import dataset_info, default_augmentation, load_dataset
from ..data.bpe import make_tokenizer, tokenizer_from_json
from ..data.plays import evenly, genre_passages
from ..data.text import MASK, CharTokenizer, Tokenizer, load_shakespeare, split_text
from ..io import RunPaths
from ..optim import SGD, AdamW, Lion, decay_mask
from ..schedules import warmup_cosine
from ..weights import HEAD_NAMES
from .classification import ClassificationTask
from ..blocks import dino_head
from ..blocks.params import draw
from ..models.common import BACKBONE_EXCLUDED
from .checkpoint import load_checkpoint
from .config import SELF_SUPERVISED, ConfigError, RunConfig
from .dino_task import DINOTask
from .genre_task import GenreTask
from .lm_task import LMTask
from .mae_task import MAETask
from .mlm_task import MLMTask
from .self_distillation import head_spec, ssl_shapes
from .simdino_task import SimDINOTask

NO_DECAY = {"mask_token"}  # CRATE-MAE's learned input, like the position embeddings


def trained_names(config: RunConfig) -> tuple | None:
    """The parameters a run updates: None for all; a linear probe only the head (:data:`whitebox.weights.HEAD_NAMES`)."""
    return HEAD_NAMES if config.linear_probe else None


def make_optimizer(config: RunConfig, params: dict):
    """The config's optimiser for ``params`` (the trained ones: :func:`whitebox.train.loop.trained_params`);
    weight decay reaches :func:`whitebox.optim.decay_mask` of them minus :data:`NO_DECAY`."""
    decay = set(decay_mask(params)) - NO_DECAY
    if config.optimizer == "adamw":
        return AdamW(config.lr, betas=config.betas, weight_decay=config.weight_decay, decay=decay)
    if config.optimizer == "lion":
        return Lion(config.lr, betas=config.betas, weight_decay=config.weight_decay, decay=decay)
    return SGD(config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay, decay=decay)


def make_schedule(config: RunConfig, steps_per_epoch: int):
    """``step -> lr``: linear warmup over ``warmup_epochs``, then cosine to ``min_lr`` at the last step."""
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    return partial(warmup_cosine, base_lr=config.lr, total_steps=total, warmup_steps=warmup, min_lr=config.min_lr)


HEAD_STREAM = 1  # a self-supervised run draws its projection head from [seed, HEAD_STREAM]


def _ssl_head(config: RunConfig):
    """The projection head's spec of a self-supervised run (K prototypes for DINO, none for SimDINO)."""
    return head_spec(config.model_cfg(), config.data, config.data["prototypes"] if config.task == "dino" else 0)


def run_shapes(config: RunConfig) -> dict:
    """name -> shape of a run's parameters: the model's, or for a self-supervised run the backbone and head."""
    if config.task in SELF_SUPERVISED:
        return ssl_shapes(config.model_cfg(), _ssl_head(config))
    return config.model_module().shapes(config.model_cfg())


def init_params(config: RunConfig, device: str) -> dict:
    """Fresh parameters of the config's model, drawn from its seed, on ``device``; a self-supervised run's
    backbone is the model's draw without the classifier's linear map, its head drawn from another stream."""
    dtype = np.dtype(config.dtype).type
    params = config.model_module().init(config.model_cfg(), seed=config.seed, dtype=dtype, device=device)
    if config.task not in SELF_SUPERVISED:
        return params
    head = draw(dino_head.shapes(_ssl_head(config)), [config.seed, HEAD_STREAM], dtype=dtype, device=device)
    return {**{k: v for k, v in params.items() if k not in BACKBONE_EXCLUDED}, **head}


def _first(split, limit: int | None):
    return split if limit is None else tuple(a[:limit] for a in split)


def _images(config: RunConfig, data_dir, train: bool) -> tuple[tuple, tuple]:
    """``(train, test)`` splits ``(images uint8 (N, C, H, W), labels (N,))``, limits applied; no train split
    (empty arrays) unless ``train``."""
    test = _first(load_dataset(config.dataset, "test", data_dir), config.test_limit)
    if not train:
        return tuple(a[:0] for a in test), test
    return _first(load_dataset(config.dataset, "train", data_dir), config.train_limit), test


def build_classification(config: RunConfig, xp: ModuleType, data_dir, tokenizer, train: bool):
    train_split, test = _images(config, data_dir, train)
    task = ClassificationTask(
        config.model_module(), config.model_cfg(), train_split, test, dataset_info(config.dataset),
        batch_size=config.batch_size, seed=config.seed,
        augmentation=default_augmentation(config.dataset) if config.augment else None,
        label_smoothing=config.label_smoothing, dtype=np.dtype(config.dtype).type, xp=xp,
        eval_batch_size=config.eval_batch_size)
    return task, config, {}


def build_mae(config: RunConfig, xp: ModuleType, data_dir, tokenizer, train: bool):
    (train_images, _), (test_images, _) = _images(config, data_dir, train)
    task = MAETask(config.model_cfg(), train_images, test_images, batch_size=config.batch_size, seed=config.seed,
                   dtype=np.dtype(config.dtype).type, xp=xp, eval_batch_size=config.eval_batch_size)
    return task, config, {}


def _with_vocabulary(config: RunConfig, tokenizer: Tokenizer) -> RunConfig:
    return dataclasses.replace(config, model_config={**config.model_config, "vocab_size": tokenizer.vocab_size})


def build_lm(config: RunConfig, xp: ModuleType, data_dir, tokenizer, train: bool):
    """The vocabulary is built from the training text (or is ``tokenizer``, the one a checkpoint carries)."""
    train_text, val_text = split_text(load_shakespeare(), config.data["val_fraction"])
    tokenizer = tokenizer or CharTokenizer.from_text(train_text)
    config = _with_vocabulary(config, tokenizer)
    task = LMTask(config.model_cfg(), tokenizer.encode(train_text), tokenizer.encode(val_text),
                  batch_size=config.batch_size, steps_per_epoch=config.data["steps_per_epoch"], seed=config.seed,
                  xp=xp, eval_windows=config.data["eval_windows"])
    return task, config, {"tokenizer": tokenizer.to_json()}


def build_self_distillation(config: RunConfig, xp: ModuleType, data_dir, tokenizer, train: bool):
    """DINO or SimDINO; the training split is read also without ``train``: it holds the k-NN bank and fixes
    the steps per epoch, hence the teacher's temperature at a step."""
    train_split, test = _images(config, data_dir, True)
    task_class = DINOTask if config.task == "dino" else SimDINOTask
    try:
        task = task_class(config.model_cfg(), train_split, test, dataset_info(config.dataset),
                          flip=default_augmentation(config.dataset).flip, options=config.data,
                          batch_size=config.batch_size, seed=config.seed, epochs=config.epochs,
                          dtype=np.dtype(config.dtype).type, xp=xp, eval_batch_size=config.eval_batch_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return task, config, {}


def _text_tokenizer(config: RunConfig, train_text: str) -> Tokenizer:
    """The masked models' vocabulary: characters or byte-pair merges of the training text, and [MASK]."""
    return make_tokenizer(config.data["tokenizer"], train_text, config.data["vocab"], (MASK,))


def build_mlm(config: RunConfig, xp: ModuleType, data_dir, tokenizer, train: bool):
    """The vocabulary (with [MASK]) is learnt from the training text, or is ``tokenizer`` (a checkpoint's);
    the training text is read even for an evaluation (its token frequencies are the unigram baseline)."""
    train_text, val_text = split_text(load_shakespeare(), config.data["val_fraction"])
    tokenizer = tokenizer or _text_tokenizer(config, train_text)
    config = _with_vocabulary(config, tokenizer)
    task = MLMTask(config.model_cfg(), tokenizer.encode(train_text), tokenizer.encode(val_text), tokenizer=tokenizer,
                   batch_size=config.batch_size,
                   steps_per_epoch=config.data["steps_per_epoch"], seed=config.seed, xp=xp,
                   eval_windows=config.data["eval_windows"])
    return task, config, {"tokenizer": tokenizer.to_json()}


def _pretrained(config: RunConfig) -> tuple[RunConfig, Tokenizer]:
    """A fine-tuning run of a token model takes the pretrained run's vocabulary, model and backbone settings
    (``--model`` and ``--set`` of the model fields are replaced by the checkpoint's)."""
    path = Path(config.init_from)
    checkpoint = load_checkpoint(RunPaths(path).checkpoint if path.is_dir() else path)
    if "tokenizer" not in checkpoint.meta:
        raise ConfigError(f"init_from {config.init_from}: not a run of a token model (it holds no vocabulary)")
    pretrained = RunConfig.from_dict(checkpoint.meta["config"])
    model_config = {**pretrained.model_config, "num_classes": config.model_config["num_classes"]}
    return (dataclasses.replace(config, model=pretrained.model, model_config=model_config),
            tokenizer_from_json(checkpoint.meta["tokenizer"]))


def build_genre(config: RunConfig, xp: ModuleType, data_dir, tokenizer, train: bool):
    """Passages of ``block_size`` tokens; the vocabulary is the pretrained run's (``init_from``), a
    checkpoint's (``tokenizer``), or learnt from the masked task's training text."""
    if tokenizer is None and config.init_from is not None:
        config, tokenizer = _pretrained(config)
    tokenizer = tokenizer or _text_tokenizer(config, split_text(load_shakespeare())[0])
    config = _with_vocabulary(config, tokenizer)
    cfg = config.model_cfg()
    train_split, test = genre_passages(tokenizer.encode, cfg.block_size, config.data["test_fraction"])
    train_split = tuple(a[evenly(len(a), config.train_limit if train else 0)] for a in train_split)
    test = tuple(a[evenly(len(a), config.test_limit)] for a in test)
    task = GenreTask(cfg, train_split, test, batch_size=config.batch_size, seed=config.seed,
                     label_smoothing=config.label_smoothing, xp=xp, eval_batch_size=config.eval_batch_size)
    return task, config, {"tokenizer": tokenizer.to_json()}


BUILDERS = {"classification": build_classification, "mae": build_mae, "lm": build_lm, "mlm": build_mlm,
            "genre": build_genre, "dino": build_self_distillation, "simdino": build_self_distillation}


def build_task(config: RunConfig, xp: ModuleType = np, *, data_dir=None, tokenizer: Tokenizer | None = None,
               train: bool = True):
    """``(task, config, meta)`` of the config (module doc); ``train=False`` skips the training images."""
    return BUILDERS[config.task](config, xp, data_dir, tokenizer, train)
