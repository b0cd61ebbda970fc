"""Weights from the ecosystem without PyTorch (issue 16).

* :mod:`.formats`: ``load_state_dict`` / ``save_state_dict`` for PyTorch's zip format (a restricted
  unpickler, no torch), safetensors and ``.npz``; checkpoint wrappers and ``module.`` prefixes undone.
* :mod:`.big_vision`: CRATE-alpha's released JAX ``.npz`` layout -> the official PyTorch names.
* :mod:`.resize`: bicubic position-embedding interpolation for another patch grid (cls token kept).
* :mod:`.load`: ``load_model_weights(path, cfg)`` and ``convert(in, out, cfg)``, what the CLI calls.
* :mod:`.finetune`: ``params_for_finetuning`` / ``finetuning_params_from_file``: backbone kept, head
  re-initialised, positions resized.

This package sits above :mod:`whitebox.models` and below :mod:`whitebox.train`.
"""

from .finetune import HEAD_NAMES, finetuning_params_from_file, params_for_finetuning
from .formats import UnsafeGlobalError, Weights, WeightsFileError, load_state_dict, read_weights, save_state_dict
from .load import convert, load_model_weights

__all__ = [
    "HEAD_NAMES", "UnsafeGlobalError", "Weights", "WeightsFileError", "convert", "finetuning_params_from_file",
    "load_model_weights",
    "load_state_dict", "params_for_finetuning", "read_weights", "save_state_dict",
]
