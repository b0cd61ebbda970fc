"""A model's parameters from any weights file, and converting between files: what the CLI calls.

The file may be any format :mod:`whitebox.weights.formats` reads, in the official PyTorch names
(CRATE, docs/reference.md §5; CRATE-alpha's port, §6) or, for CRATE-alpha, big_vision's JAX layout
(:mod:`whitebox.weights.big_vision`). A position embedding made for another patch grid is
interpolated to the config's grid (:mod:`whitebox.weights.resize`), so a checkpoint runs at
another image size. The model is the one the config belongs to.

Public surface (one call per command)::

    params = load_model_weights("crate.pth", cfg)                # whitebox eval --weights FILE
    convert("crate_alpha.npz", "crate_alpha.safetensors", cfg)   # whitebox convert IN OUT
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..backend import TRAIN_DTYPE
from ..models import crate_alpha
from ..models.registry import model_of
from .big_vision import is_big_vision, torch_state_dict_from_big_vision
from .formats import read_weights, save_state_dict
from .resize import resize_pos_embedding

log = logging.getLogger(__name__)


def grid_of(cfg) -> tuple:
    """The patch grid ``(h, w)`` of a config's images."""
    side = cfg.image_size // cfg.patch_size
    return side, side


def official_state_dict(path, cfg) -> dict:
    """The official PyTorch state dict of the weights in ``path``, its position embedding on ``cfg``'s grid."""
    weights = read_weights(path)
    log.info("%s: %s", path, weights.describe())
    state = weights.state_dict
    if is_big_vision(state):
        if model_of(cfg) is not crate_alpha:
            raise ValueError(f"{path}: big_vision (JAX) weights are CRATE-alpha's; got a {type(cfg).__module__} config")
        state = torch_state_dict_from_big_vision(state, cfg)
    if "pos_embedding" in state and state["pos_embedding"].shape[1] != cfg.num_tokens:
        log.info("%s: position embedding interpolated from %d to %d tokens", path, state["pos_embedding"].shape[1],
                 cfg.num_tokens)
        state = {**state, "pos_embedding": resize_pos_embedding(state["pos_embedding"], grid_of(cfg))}
    return state


def load_model_weights(path, cfg, *, dtype=TRAIN_DTYPE, device: str | None = None) -> dict:
    """whitebox parameters for ``cfg`` from the weights file ``path`` (``dtype=None`` keeps the file's).

    Missing, unexpected or mis-shaped weights raise ``ValueError`` naming them.
    """
    return model_of(cfg).from_torch_state_dict(official_state_dict(path, cfg), cfg, dtype=dtype, device=device)


def convert(in_path, out_path, cfg) -> Path:
    """Writes the weights of ``in_path`` to ``out_path`` under the official PyTorch names, checked against ``cfg``.

    The output format follows ``out_path``'s suffix; the dtypes are kept.
    """
    model = model_of(cfg)
    params = model.from_torch_state_dict(official_state_dict(in_path, cfg), cfg)
    return save_state_dict(model.to_torch_state_dict(params, cfg), out_path)
