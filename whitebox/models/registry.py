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
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

MODULES = {
    "crate": "whitebox.models.crate",
    "crate-alpha": "whitebox.models.crate_alpha",
}


def available_models() -> tuple[str, ...]:
    """The names of the models whose module is installed, in the order of :data:`MODULES`."""
    return tuple(name for name, module in MODULES.items() if importlib.util.find_spec(module) is not None)


def get_model(name: str) -> ModuleType:
    """The module of model ``name``; ``ValueError`` naming the available models otherwise."""
    if name not in available_models():
        raise ValueError(f"unknown model {name!r}; choose one of {available_models()}")
    return importlib.import_module(MODULES[name])


TOKEN_MODELS = ("whitebox.models.crate_lm",)  # not classifiers of images, but measured and fine-tuned alike


def model_of(cfg) -> ModuleType:
    """The module whose ``Config`` made ``cfg`` (``crate.Config`` -> :mod:`whitebox.models.crate`), a
    classifier's or a token model's."""
    for module in [get_model(name) for name in available_models()] + [importlib.import_module(m) for m in TOKEN_MODELS]:
        if type(cfg) is module.Config:
            return module
    raise ValueError(f"cfg must be the Config of one of the models {available_models()}, got {type(cfg).__name__}")
