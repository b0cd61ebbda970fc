"""From a :class:`RunConfig` to the objects of a run: data, task, optimiser, schedule, parameters."""

from __future__ import annotations

from functools import partial
from types import ModuleType

import numpy as np

from ..data import dataset_info, default_augmentation, load_dataset
from ..models.registry import get_model
from ..optim import SGD, AdamW, Lion
from ..schedules import warmup_cosine
from .classification import ClassificationTask
from .config import RunConfig


def make_optimizer(config: RunConfig):
    """The optimiser named by the config; weight decay reaches only :func:`whitebox.optim.decay_mask`."""
    if config.optimizer == "adamw":
        return AdamW(config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "lion":
        return Lion(config.lr, weight_decay=config.weight_decay)
    return SGD(config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


def make_schedule(config: RunConfig, steps_per_epoch: int):
    """``step -> lr``: linear warmup over ``warmup_epochs``, then cosine to ``min_lr`` at the last step."""
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    return partial(warmup_cosine, base_lr=config.lr, total_steps=total, warmup_steps=warmup, min_lr=config.min_lr)


def load_splits(config: RunConfig, data_dir=None) -> tuple[tuple, tuple]:
    """``(train, test)``, each ``(images uint8 (N, C, H, W), labels (N,))`` on the host, limits applied."""
    train = load_dataset(config.dataset, "train", data_dir)
    test = load_dataset(config.dataset, "test", data_dir)
    return _first(train, config.train_limit), _first(test, config.test_limit)


def _first(split: tuple, limit: int | None) -> tuple:
    return split if limit is None else (split[0][:limit], split[1][:limit])


def make_task(config: RunConfig, train: tuple, test: tuple, xp: ModuleType = np) -> ClassificationTask:
    """The classification task of the config, sending its batches to ``xp``."""
    return ClassificationTask(
        get_model(config.model), config.model_cfg(), train, test, dataset_info(config.dataset),
        batch_size=config.batch_size, seed=config.seed,
        augmentation=default_augmentation(config.dataset) if config.augment else None,
        label_smoothing=config.label_smoothing, dtype=np.dtype(config.dtype).type, xp=xp,
        eval_batch_size=config.eval_batch_size,
    )


def init_params(config: RunConfig, device: str) -> dict:
    """Fresh parameters of the config's model, drawn from its seed, on ``device``."""
    model = get_model(config.model)
    return model.init(config.model_cfg(), seed=config.seed, dtype=np.dtype(config.dtype).type, device=device)
