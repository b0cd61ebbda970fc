"""The resolved settings of a run: a preset, then the caller's overrides, then the dataset's facts.

:class:`RunConfig` is what ``config.json`` and every checkpoint hold; it alone rebuilds the model,
the data, the optimiser and the schedule of a run (``whitebox train --resume``, ``whitebox eval``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..data import dataset_info
from ..data.catalog import check_dataset
from ..models.registry import get_model
from .presets import get_preset

OPTIMIZERS = ("adamw", "lion", "sgd")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """Settings that cannot make a run (an unknown model field, a patch size that does not divide ...)."""


@dataclass(frozen=True)
class RunConfig:
    model: str
    preset: str
    dataset: str
    model_config: dict  # every field of the model's Config
    optimizer: str
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    warmup_epochs: float
    min_lr: float
    label_smoothing: float
    clip_grad: float | None
    augment: bool
    seed: int = 0
    dtype: str = "float32"
    eval_batch_size: int = 500
    train_limit: int | None = None  # use only the first N training images (quick checks)
    test_limit: int | None = None  # use only the first N test images

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def model_cfg(self):
        """The model's Config object."""
        return get_model(self.model).Config(**self.model_config)


TRAINING_FIELDS = ("optimizer", "lr", "weight_decay", "epochs", "batch_size", "warmup_epochs", "min_lr",
                   "label_smoothing", "clip_grad", "augment")


def resolve_config(model: str, preset: str, *, dataset: str | None = None, model_overrides: dict | None = None,
                   **overrides) -> RunConfig:
    """The run's settings: the preset's, replaced by ``overrides`` that are not None.

    ``overrides`` may name the training fields of a preset (``lr``, ``epochs`` ...) and the run
    fields (``seed``, ``dtype``, ``eval_batch_size``, ``train_limit``, ``test_limit``);
    ``model_overrides`` replaces fields of the model's Config.
    """
    recipe = get_preset(preset)
    dataset = check_dataset(dataset or recipe.dataset)
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(TRAINING_FIELDS) - {f.name for f in dataclasses.fields(RunConfig)})
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}")
    training = {name: given.pop(name, getattr(recipe, name)) for name in TRAINING_FIELDS}
    if training["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {training['optimizer']!r}; choose one of {OPTIMIZERS}")
    if given.get("dtype", "float32") not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {given['dtype']!r}")
    model_config = _model_config(model, dataset, {**recipe.model, **(model_overrides or {})})
    return RunConfig(model=model, preset=preset, dataset=dataset, model_config=model_config, **training, **given)


def _model_config(model: str, dataset: str, fields: dict) -> dict:
    """Every field of the model's Config, the dataset fixing the image shape and the classes."""
    config_class = get_model(model).Config
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ConfigError(f"model {model!r} has no setting(s) {unknown}; its Config has {sorted(names)}")
    info = dataset_info(dataset)
    shape = dict(image_size=info.image_size, channels=info.channels, num_classes=info.num_classes)
    clashes = sorted(k for k in shape if k in fields and fields[k] != shape[k])
    if clashes:
        raise ConfigError(f"{clashes} come from the dataset {dataset!r}: {({k: shape[k] for k in clashes})}")
    try:
        cfg = config_class(**{**fields, **shape})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {model} config for {dataset}: {e}") from e
    return dataclasses.asdict(cfg)
