"""The settings of a run: one preset table for every task, one :class:`RunConfig`.

A run is a *task* (``classification``, ``mae``, ``lm``, ``mlm``, ``genre``, ``dino``, ``simdino``), a
model, a preset (the recipe), then the caller's overrides, then the dataset's facts (image size,
channels, classes). The resolved :class:`RunConfig` is what ``config.json`` and every checkpoint hold; it alone rebuilds the
model, the data, the optimiser and the schedule of a run (``whitebox train --resume``,
``whitebox eval``, ``whitebox measure`` ...). A model may be a named variant of another
(:data:`whitebox.models.registry.VARIANTS`: ``vit`` is ``crate`` with the transformer block, ``gpt``
is ``crate-lm`` with it): it trains with its base model's presets and tasks, with the variant's
fields fixed in its Config.

======================  ====================================================================
``mnist-demo``          ``make demo``: a small CRATE, 98.3% on MNIST after 6 epochs (about 6 CPU-minutes)
``mnist``               the MNIST benchmark recipe (target >= 99.0% test accuracy)
``fashion-mnist``       the Fashion-MNIST benchmark recipe (target >= 90% test accuracy)
``scenes``              a small CRATE for the scenes (digits on photographs, with masks): patch 4, width 64
``mnist-mae``           CRATE-MAE on MNIST: 7×7 patches of 4×4, width 64, 3 encoder + 3 decoder layers
``shakespeare-char``    causal CRATE on Shakespeare's characters: context 128, width 128, 4 layers
``mnist-dino``          CRATE-DINO on MNIST: mnist-demo's model (so ``--init-from RUN --linear-probe`` fits),
                        2 global + 4 local views, head 256 → 64 → 256 prototypes
``mnist-simdino``       SimDINO on MNIST: the same model, views and head without prototypes, γ = 1
``shakespeare-mlm``     CRATE-BERT (bidirectional, masked tokens) on the same characters and sizes
``shakespeare-bpe-mlm`` CRATE-BERT on 512 byte-pair tokens learnt from the training text
``shakespeare-genre``   comedy, history or tragedy of a passage (the First Folio's grouping)
======================  ====================================================================

The classification recipes follow the published CRATE training (docs/reference.md §5: AdamW,
label smoothing 0.1, linear warmup then cosine, random crops), scaled down to 28 × 28 images, with
one change of whitebox's: weight decay reaches only matrices (:func:`whitebox.optim.decay_mask`;
the official ``main.py`` decays every parameter); the generative ones MAE's AdamW betas (0.9, 0.95) and nanoGPT's character recipe (β₂ 0.95,
weight decay 0.1, clip 1.0).

Measured (``mnist-demo``, float32, seed 0, 2-core x86 machine shared with other jobs,
``OPENBLAS_NUM_THREADS=1``): test accuracy 93.3, 95.5, 97.0, 97.6, 98.1, 98.3% after epochs 1-6;
about 6 minutes on an idle core. The benchmark recipes' results are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from types import ModuleType

from ..data import dataset_info
from ..data.bpe import TOKENIZERS
from ..data.catalog import check_dataset
from ..data.plays import GENRES
from ..models import crate_lm, crate_mae
from ..models.registry import VARIANTS, available_models, get_model, variant

TASKS = ("classification", "mae", "lm", "mlm", "genre", "dino", "simdino")
TEXT_TASKS = ("lm", "mlm", "genre")  # the token models' tasks: Shakespeare's text, no image dataset
SELF_SUPERVISED = ("dino", "simdino")  # a classifier's backbone, trained without labels
OPTIMIZERS = ("adamw", "lion", "sgd")
DEFAULT_BETAS = {"adamw": (0.9, 0.999), "lion": (0.9, 0.99)}  # SGD: Nesterov momentum 0.9, no betas
DTYPES = ("float32", "float64")
GENERATIVE_MODELS = {"crate-mae": crate_mae, "crate-lm": crate_lm}
# the data options of each task, with their defaults (``--set KEY=VALUE`` may change them)
DATA_OPTIONS = {"classification": {}, "mae": {},
                "lm": {"val_fraction": 0.1, "steps_per_epoch": 500, "eval_windows": 256},
                # tokenizer: "char" or "bpe" (byte-pair merges up to vocab tokens, [MASK] included)
                "mlm": {"val_fraction": 0.1, "steps_per_epoch": 500, "eval_windows": 256, "tokenizer": "char",
                        "vocab": 512},
                # test_fraction: the last passages of every play held out (whitebox.data.plays)
                "genre": {"test_fraction": 0.2, "tokenizer": "char", "vocab": 512}}
_SELF_DISTILLATION = {"local_views": 4, "hidden": 256, "bottleneck": 64, "momentum": 0.996,
                      "knn_bank": 2000, "knn_k": 20, "knn_temperature": 0.07}  # train/self_distillation.py
DATA_OPTIONS["dino"] = {**_SELF_DISTILLATION, "prototypes": 256, "student_temp": 0.1, "teacher_temp": 0.07,
                        "warmup_teacher_temp": 0.04, "warmup_teacher_epochs": 3, "center_momentum": 0.9}
DATA_OPTIONS["simdino"] = {**_SELF_DISTILLATION, "gamma": 1.0, "rate_eps": 0.5}
# the fields of RunConfig that a task does not read (and that may not be given for it)
UNUSED = {"classification": (), "mae": ("label_smoothing", "augment", "init_from"),
          "lm": ("label_smoothing", "augment", "dataset", "train_limit", "test_limit", "eval_batch_size", "init_from"),
          "mlm": ("label_smoothing", "augment", "dataset", "train_limit", "test_limit", "eval_batch_size", "init_from"),
          "genre": ("augment", "dataset"),
          "dino": ("label_smoothing", "augment", "init_from"), "simdino": ("label_smoothing", "augment", "init_from")}
DATASET_FIELDS = ("image_size", "channels", "num_classes")  # the model fields an image dataset fixes


class ConfigError(ValueError):
    """Settings that cannot make a run (an unknown model field, a patch size that does not divide ...)."""


@dataclass(frozen=True)
class Preset:
    """A training recipe; ``model`` holds fields of the model's Config, ``data`` the task's data options."""

    description: str
    task: str
    model_name: str
    dataset: str | None  # None: the task reads no image dataset (lm)
    model: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    betas: tuple | None = None  # None: the optimiser's defaults (DEFAULT_BETAS)
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # linear warmup, then cosine to min_lr at the last step
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    clip_grad: float | None = None  # cap on the global gradient norm
    augment: bool = True  # the dataset's default augmentation (random crops; flips where they make sense)
    eval_batch_size: int = 500


PRESETS = {
    "mnist-demo": Preset(
        "a small CRATE for MNIST on a laptop CPU (make demo)", "classification", "crate", "mnist",
        model=dict(patch_size=7, dim=96, depth=6, heads=4, dim_head=24),
        epochs=6, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=0.5,
    ),
    "mnist": Preset(
        "the MNIST benchmark recipe (target: >= 99.0% test accuracy)", "classification", "crate", "mnist",
        model=dict(patch_size=7, dim=128, depth=6, heads=4, dim_head=32),
        epochs=12, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=1,
    ),
    "fashion-mnist": Preset(
        "the Fashion-MNIST benchmark recipe (target: >= 90% test accuracy)", "classification", "crate",
        "fashion-mnist",
        model=dict(patch_size=7, dim=128, depth=6, heads=4, dim_head=32),
        epochs=12, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=1,
    ),
    "scenes": Preset(
        "a small CRATE for the scenes (digits on photographs, 32 x 32 RGB, patch 4: an 8 x 8 grid)",
        "classification", "crate", "scenes",
        model=dict(patch_size=4, dim=64, depth=4, heads=4, dim_head=16),
        epochs=10, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=0.5,
    ),
    "mnist-mae": Preset(
        "CRATE-MAE on MNIST, 75% of the patches masked (MAE's AdamW betas (0.9, 0.95))", "mae", "crate-mae", "mnist",
        model=dict(patch_size=4, dim=64, depth=3, heads=4, dim_head=16,
                   decoder_dim=64, decoder_heads=4, decoder_dim_head=16),
        epochs=10, batch_size=128, lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05, warmup_epochs=1,
        eval_batch_size=1000,
    ),
    "shakespeare-char": Preset(
        "causal CRATE on Shakespeare's characters (AdamW β₂ 0.95, wd 0.1, clip 1.0)", "lm", "crate-lm", None,
        model=dict(block_size=128, dim=128, depth=4, heads=4, dim_head=32),
        data=dict(steps_per_epoch=500, eval_windows=256),
        epochs=10, batch_size=32, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, warmup_epochs=0.2, min_lr=1e-4,
        clip_grad=1.0,
    ),
    "shakespeare-mlm": Preset(
        "CRATE-BERT on Shakespeare's characters, BERT masking (the causal recipe)", "mlm", "crate-bert", None,
        model=dict(block_size=128, dim=128, depth=4, heads=4, dim_head=32),
        data=dict(steps_per_epoch=500, eval_windows=256, tokenizer="char"),
        epochs=10, batch_size=32, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, warmup_epochs=0.2, min_lr=1e-4,
        clip_grad=1.0,
    ),
    "shakespeare-bpe-mlm": Preset(
        "CRATE-BERT on 512 byte-pair tokens of Shakespeare (about 2.1 characters each)", "mlm", "crate-bert", None,
        model=dict(block_size=64, dim=128, depth=4, heads=4, dim_head=32),
        data=dict(steps_per_epoch=500, eval_windows=256, tokenizer="bpe", vocab=512),
        epochs=10, batch_size=32, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, warmup_epochs=0.2, min_lr=1e-4,
        clip_grad=1.0,
    ),
    "shakespeare-genre": Preset(
        "comedy, history or tragedy of a 128-character passage (fine-tune with --init-from an mlm run)", "genre",
        "crate-bert", None,
        model=dict(block_size=128, dim=128, depth=4, heads=4, dim_head=32),
        epochs=3, batch_size=32, lr=5e-4, betas=(0.9, 0.95), weight_decay=0.05, warmup_epochs=0.1, min_lr=1e-5,
        clip_grad=1.0, label_smoothing=0.0, augment=False,
    ),
    "mnist-dino": Preset(
        "CRATE-DINO on MNIST: multi-crop, EMA teacher, centring and sharpening (AdamW, clip 3.0)", "dino", "crate",
        "mnist", model=dict(patch_size=7, dim=96, depth=6, heads=4, dim_head=24),
        epochs=3, batch_size=64, lr=5e-4, weight_decay=0.04, warmup_epochs=0.5, min_lr=1e-5, clip_grad=3.0,
    ),
    "mnist-simdino": Preset(
        "SimDINO on MNIST: multi-crop, EMA teacher, coding-rate regulariser γ = 1 (AdamW, clip 3.0)", "simdino",
        "crate", "mnist", model=dict(patch_size=7, dim=96, depth=6, heads=4, dim_head=24),
        epochs=3, batch_size=64, lr=5e-4, weight_decay=0.04, warmup_epochs=0.5, min_lr=1e-5, clip_grad=3.0,
    ),
}
DEFAULT_PRESETS = {"classification": "mnist-demo", "mae": "mnist-mae", "lm": "shakespeare-char",
                   "mlm": "shakespeare-mlm", "genre": "shakespeare-genre", "dino": "mnist-dino",
                   "simdino": "mnist-simdino"}


def get_preset(name: str) -> Preset:
    """The preset ``name``; :class:`ConfigError` naming the presets otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)}")
    return PRESETS[name]


DEFAULT_MODEL = {"classification": "crate", "mae": "crate-mae", "lm": "crate-lm", "mlm": "crate-lm",
                 "genre": "crate-lm", "dino": "crate", "simdino": "crate"}


def model_names() -> tuple[str, ...]:
    """Every model a run can train: the classifiers (and their variants), the generative models and theirs."""
    generative = tuple(GENERATIVE_MODELS) + tuple(n for n, (base, _) in VARIANTS.items() if base in GENERATIVE_MODELS)
    return available_models() + generative


def model_module(name: str) -> ModuleType:
    """The module of model ``name`` (the classifiers of the registry, CRATE-MAE, causal CRATE, and the
    variants of :data:`whitebox.models.registry.VARIANTS`: ``vit`` → CRATE's, ``gpt`` → causal CRATE's)."""
    base, _ = variant(name)
    if base in GENERATIVE_MODELS:
        return GENERATIVE_MODELS[base]
    if name not in available_models():
        raise ConfigError(f"unknown model {name!r}; choose one of {model_names()}")
    return get_model(name)


def variant_fields(model: str, overrides: dict) -> dict:
    """The Config fields that the name ``model`` fixes (``vit``: ``block="transformer"``); a setting
    in ``overrides`` that contradicts one is a :class:`ConfigError`."""
    base, fixed = variant(model)
    for key, value in fixed.items():
        if key in overrides and overrides[key] != value:
            raise ConfigError(f"model {model!r} is {base} with {key}={value!r}; --set {key}={overrides[key]!r} "
                              f"contradicts it (use --model {base})")
    return fixed


@dataclass(frozen=True)
class RunConfig:
    task: str  # one of TASKS
    model: str
    preset: str
    dataset: str | None  # the image dataset (None for lm)
    model_config: dict  # every field of the model's Config
    optimizer: str
    lr: float
    betas: tuple | None  # AdamW / Lion betas; None for SGD
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
    data: dict = field(default_factory=dict)  # the task's data options (DATA_OPTIONS)
    # fine-tuning: the weights file or run folder the parameters start from (an absolute path; read
    # once, when the run starts), the head re-initialised; linear_probe: train only the head
    init_from: str | None = None
    linear_probe: bool = False
    tf32: bool = False  # TF32 float32 matmuls on CuPy (whitebox.backend.use_tf32); a no-op on NumPy

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": None if self.betas is None else list(self.betas)}

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """A config from :meth:`to_dict`, or from a checkpoint of whitebox 0.1 (before the task field)."""
        data = _upgraded(dict(data))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(data) - names - {"derived"}), sorted(
            f.name for f in dataclasses.fields(cls)
            if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise ConfigError(f"not a run config: unknown fields {unknown}, missing fields {missing}")
        data = {k: v for k, v in data.items() if k in names}
        return cls(**{**data, "betas": None if data["betas"] is None else tuple(data["betas"])})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def model_module(self) -> ModuleType:
        return model_module(self.model)

    def model_cfg(self):
        """The model's Config object."""
        return self.model_module().Config(**self.model_config)


def _upgraded(data: dict) -> dict:
    """Fill in what the configs of whitebox 0.1 left out: the task, the model's name, the betas."""
    if "task" not in data:  # a classification run: the optimiser ran with its default betas
        data["task"] = "classification"
        data.setdefault("betas", list(DEFAULT_BETAS[data["optimizer"]]) if data.get("optimizer") in DEFAULT_BETAS
                        else None)
    if data["task"] in ("mae", "lm") and "model" not in data:  # a generative run of whitebox 0.1
        data["model"] = DEFAULT_MODEL[data["task"]]
        options = dict(data.pop("data", {}))
        data["dataset"] = options.pop("dataset", None)
        for name in ("eval_batch_size", "train_limit", "test_limit"):
            if name in options:
                data[name] = options.pop(name)
        data.update(label_smoothing=0.0, augment=False, data=options)
    return data


RECIPE_FIELDS = ("optimizer", "lr", "betas", "weight_decay", "epochs", "batch_size", "warmup_epochs", "min_lr",
                 "label_smoothing", "clip_grad", "augment", "eval_batch_size")
RUN_FIELDS = ("seed", "dtype", "train_limit", "test_limit", "init_from", "linear_probe", "tf32")


def resolve_config(model: str | None = None, preset: str | None = None, *, task: str | None = None,
                   dataset: str | None = None, model_overrides: dict | None = None,
                   data_overrides: dict | None = None, **overrides) -> RunConfig:
    """The run's settings: the preset's, replaced by ``overrides`` that are not None.

    ``task`` defaults to the preset's, ``preset`` to the task's default (``mnist-demo`` when
    neither is given), ``model`` to the preset's. ``overrides`` may name the recipe fields
    (``lr``, ``epochs`` ...) and the run fields (``seed``, ``dtype``, ``train_limit``,
    ``test_limit``); ``model_overrides`` replaces fields of the model's Config and
    ``data_overrides`` the task's data options (lm: ``val_fraction``, ``steps_per_epoch``,
    ``eval_windows``).
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {TASKS}")
    preset = preset or DEFAULT_PRESETS[task or "classification"]
    recipe = get_preset(preset)
    task = task or recipe.task
    if recipe.task != task:
        names = tuple(name for name, p in PRESETS.items() if p.task == task)
        raise ConfigError(f"preset {preset!r} is a {recipe.task} preset, not a {task} one; choose one of {names}")
    model = model or recipe.model_name
    module = model_module(model)
    base = variant(model)[0]
    learns_task = base not in GENERATIVE_MODELS if task in ("classification", *SELF_SUPERVISED) \
        else base == DEFAULT_MODEL[task]
    if not learns_task:
        raise ConfigError(f"model {model!r} does not learn the {task} task")
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(RECIPE_FIELDS) - set(RUN_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}")
    unused = sorted(k for k in [*given, *(["dataset"] if dataset else [])] if k in UNUSED[task])
    if unused:
        raise ConfigError(f"the {task} task does not use {unused}")
    settings = {name: given.pop(name, getattr(recipe, name)) for name in RECIPE_FIELDS}
    _check_training(settings, given)
    if given.get("linear_probe") and given.get("init_from") is None:
        raise ConfigError("linear_probe trains only the head of loaded weights: it needs init_from (--init-from)")
    if "init_from" in given:
        given["init_from"] = os.path.abspath(os.fspath(given["init_from"]))
    if "betas" not in overrides or overrides["betas"] is None:
        settings["betas"] = recipe.betas or DEFAULT_BETAS.get(settings["optimizer"])
    if settings["optimizer"] == "sgd":
        settings["betas"] = None
    settings["betas"] = None if settings["betas"] is None else tuple(settings["betas"])
    data = {**DATA_OPTIONS[task], **recipe.data}
    model_fields = {f.name for f in dataclasses.fields(module.Config)}
    model_overrides, data_overrides = dict(model_overrides or {}), dict(data_overrides or {})
    for key in [k for k in model_overrides if k in data and k not in model_fields]:  # --set steps_per_epoch=3
        data_overrides[key] = model_overrides.pop(key)
    unknown = sorted(set(data_overrides) - set(data))
    if unknown:
        raise ConfigError(f"the {task} task has no data option(s) {unknown}; it has {sorted(data)}")
    data.update(data_overrides)
    _check_text_options(task, data)
    if task in TEXT_TASKS:
        dataset = None
        settings.update(augment=False, **({} if task == "genre" else {"label_smoothing": 0.0}))
    else:
        dataset = check_dataset(dataset or recipe.dataset)
        if task in ("mae", *SELF_SUPERVISED):
            settings.update(label_smoothing=0.0, augment=False)
    fixed = variant_fields(model, model_overrides)
    model_config = _model_config(model, module, task, dataset, {**recipe.model, **model_overrides, **fixed})
    return RunConfig(task=task, model=model, preset=preset, dataset=dataset, model_config=model_config,
                     data=data, **settings, **given)


def _check_text_options(task: str, data: dict) -> None:
    if "tokenizer" in data and data["tokenizer"] not in TOKENIZERS:
        raise ConfigError(f"tokenizer must be one of {TOKENIZERS}, got {data['tokenizer']!r}")
    if "vocab" in data and (isinstance(data["vocab"], bool) or not isinstance(data["vocab"], int) or data["vocab"] < 2):
        raise ConfigError(f"vocab (the byte-pair vocabulary's size) must be an integer >= 2, got {data['vocab']!r}")
    if "test_fraction" in data and not (isinstance(data["test_fraction"], float) and 0 < data["test_fraction"] < 1):
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {data['test_fraction']!r}")


def _check_training(settings: dict, run: dict) -> None:
    if settings["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {settings['optimizer']!r}; choose one of {OPTIMIZERS}")
    for name in ("lr", "weight_decay", "warmup_epochs", "min_lr", "label_smoothing"):
        value = settings[name]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if settings["lr"] <= 0:
        raise ConfigError(f"lr must be > 0, got {settings['lr']!r}")
    if settings["min_lr"] > settings["lr"]:
        raise ConfigError(f"min_lr ({settings['min_lr']:g}) is above lr ({settings['lr']:g}): the cosine would "
                          "rise; give a --min-lr at most --lr")
    if settings["clip_grad"] is not None and not (math.isfinite(settings["clip_grad"]) and settings["clip_grad"] > 0):
        raise ConfigError(f"clip_grad must be a finite number > 0, got {settings['clip_grad']!r}")
    if run.get("dtype", "float32") not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {run['dtype']!r}")


def _model_config(model: str, module: ModuleType, task: str, dataset: str | None, fields: dict) -> dict:
    """Every field of the model's Config, the dataset fixing the image shape (and the classes)."""
    config_class = module.Config
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ConfigError(f"model {model!r} has no setting(s) {unknown}; its Config has {sorted(names)}")
    if task in TEXT_TASKS:
        for name in ("vocab_size", "num_classes"):
            if name in fields:
                raise ConfigError(f"{name} comes from the {task} task's text (its tokens, its classes); do not set it")
        # vocab_size: a placeholder, replaced by the tokenizer's size when the task is built
        shape = {"vocab_size": 1, "num_classes": len(GENRES) if task == "genre" else None}
        if task == "mlm" and fields.get("causal", True) is not False:
            raise ConfigError("the mlm task needs a bidirectional model (--model crate-bert or bert, or --set "
                              "causal=False)")
        if task == "lm" and fields.get("causal", True) is not True:
            raise ConfigError("the lm task needs a causal model: a bidirectional one would see the next token")
    else:
        info = dataset_info(dataset)
        shape = dict(image_size=info.image_size, channels=info.channels)
        if task in ("classification", *SELF_SUPERVISED):  # k-NN and the linear probe need the classes
            shape["num_classes"] = info.num_classes
        clashes = sorted(k for k in shape if k in fields and fields[k] != shape[k])
        if clashes:
            raise ConfigError(f"{clashes} come from the dataset {dataset!r}: {({k: shape[k] for k in clashes})}")
    try:
        cfg = config_class(**{**fields, **shape})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {model} config{f' for {dataset}' if dataset else ''}: {e}") from e
    return dataclasses.asdict(cfg)


def preset_model_config(model: str, preset: str, overrides: dict | None = None):
    """The model's Config that ``preset`` names, its fields replaced by ``overrides``.

    ``preset`` is a model preset of the model (``get_model(model).PRESETS``: ``tiny``, ``small``,
    ``base`` ..., the published sizes at 224 × 224 with 1000 classes) or a classification training
    preset (its model fields, with the image shape and classes of its dataset). This is the model
    of a weights file that was not trained here (``whitebox convert``, ``whitebox eval --weights``).
    """
    module = model_module(model)
    model_presets = getattr(module, "PRESETS", {})
    if preset in model_presets:
        fields = dataclasses.asdict(model_presets[preset]())
    elif preset in PRESETS and PRESETS[preset].task == "classification":
        fields = resolve_config(model, preset).model_config
    else:
        training = tuple(name for name, p in PRESETS.items() if p.task == "classification")
        raise ConfigError(f"unknown preset {preset!r} for {model}; choose a model preset {tuple(model_presets)} "
                          f"or a training preset {training}")
    overrides = dict(overrides or {})
    fields.update(variant_fields(model, overrides))
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"model {model!r} has no setting(s) {unknown}; its Config has {sorted(fields)}")
    try:
        return module.Config(**{**fields, **overrides})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {model} config: {e}") from e
