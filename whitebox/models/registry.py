"""Model names for the command line and the training code: ``"crate"`` → :mod:`whitebox.models.crate`.

Every model module offers the same surface, which is all that training needs::

    Config                                   # a frozen dataclass of hyper-parameters
    PRESETS                                  # name -> function(**overrides) -> Config
    init(cfg, seed, *, dtype, device)        # name -> array
    forward(params, images, cfg)             # -> logits (B, classes), cache
    backward(dlogits, cache)                 # -> grads, same keys as params
    num_params(cfg)                          # -> int

A model is listed only when its module is there (found with ``importlib.util.find_spec``, without
importing it), so CRATE-alpha appears as soon as ``crate_alpha.py`` lands; :func:`get_model`
imports the module when it is first asked for.

A *variant* is a named setting of a model's Config (:data:`VARIANTS`): ``"vit"`` is CRATE's
classifier with the standard transformer block. :func:`variant` resolves a name to its base model
and the fields it fixes; the training code (:func:`whitebox.train.config.model_module`) reads the
same table for the variants of the generative models (``"gpt"``).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

MODULES = {
    "crate": "whitebox.models.crate",
    "crate-alpha": "whitebox.models.crate_alpha",
}

# name -> (base model, the Config fields the name fixes); add a row for a new variant
VARIANTS = {
    "vit": ("crate", {"block": "transformer"}),  # the ViT baseline: CRATE's embedding and head, transformer blocks
    "gpt": ("crate-lm", {"block": "transformer", "causal": True}),  # the GPT baseline: causal CRATE's embeddings and tied head
    "crate-bert": ("crate-lm", {"causal": False}),  # CRATE-BERT: the bidirectional token model (--task mlm)
    "bert": ("crate-lm", {"causal": False, "block": "transformer"}),  # the BERT baseline
}


def variant(name: str) -> tuple[str, dict]:
    """``(base model, fixed Config fields)`` of ``name``: ``("crate", {})`` for ``"crate"`` itself."""
    base, fields = VARIANTS.get(name, (name, {}))
    return base, dict(fields)


def available_models() -> tuple[str, ...]:
    """The classifiers whose module is installed, in the order of :data:`MODULES`, then their variants."""
    installed = tuple(name for name, module in MODULES.items() if importlib.util.find_spec(module) is not None)
    return installed + tuple(name for name, (base, _) in VARIANTS.items() if base in installed)


def get_model(name: str) -> ModuleType:
    """The module of model ``name`` (a variant's: its base's); ``ValueError`` naming the available models otherwise."""
    if name not in available_models():
        raise ValueError(f"unknown model {name!r}; choose one of {available_models()}")
    return importlib.import_module(MODULES[variant(name)[0]])


TOKEN_MODELS = ("whitebox.models.crate_lm",)  # not classifiers of images, but measured and fine-tuned alike


def model_of(cfg) -> ModuleType:
    """The module whose ``Config`` made ``cfg`` (``crate.Config`` -> :mod:`whitebox.models.crate`), a
    classifier's or a token model's."""
    for module in [get_model(name) for name in available_models()] + [importlib.import_module(m) for m in TOKEN_MODELS]:
        if type(cfg) is module.Config:
            return module
    raise ValueError(f"cfg must be the Config of one of the models {available_models()}, got {type(cfg).__name__}")
