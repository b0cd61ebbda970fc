"""Starting a fine-tuning run from loaded weights: the backbone kept, a new head, positions resized.

As the official ``finetune.py`` of PyTorch CRATE: after loading the checkpoint it replaces
``mlp_head`` by a fresh ``Sequential(LayerNorm(d), Linear(d, classes))``, so the head's LayerNorm
and Linear are re-initialised (whitebox's ``head_norm.*`` and ``head.*``), whatever the number of
classes. A different image size (with the same patch size) gives a different patch grid: the
position embedding is interpolated bicubically with the cls token kept
(:func:`whitebox.weights.resize.resize_pos_embedding`). Everything else must have the same shape.

A token model (:mod:`whitebox.models.crate_lm`, a masked or causal run) becomes a sequence
classifier the same way: its tied token head has no parameters of its own, so the pretrained
parameters are the backbone (embeddings, layers, final LayerNorm) and the new ``cfg.num_classes``
head is drawn fresh; its positions are learned per token and must keep their shape (same
``block_size``), and the attention may be causal or not, as pretrained (``causal`` may not change).

For a linear probe, train only :data:`HEAD_NAMES` and keep the rest frozen.

Public surface::

    params = params_for_finetuning(params, old_cfg, new_cfg, seed=0)   # from whitebox parameters
    params = finetuning_params_from_file("crate.pth", new_cfg, seed=0)  # from any weights file
"""

from __future__ import annotations

from ..backend import TRAIN_DTYPE, get_xp, to_host
from ..models import crate_lm
from ..models.registry import model_of
from .load import grid_of, official_state_dict
from .resize import resize_pos_embedding

HEAD_NAMES = ("head_norm.weight", "head_norm.bias", "head.weight", "head.bias")  # the official mlp_head


def params_for_finetuning(params: dict, old_cfg, new_cfg, seed: int = 0, *, device: str | None = None) -> dict:
    """Parameters for ``new_cfg`` from ``params`` of ``old_cfg``: backbone kept, head new, positions resized.

    The new head is drawn as ``init(new_cfg, seed)`` draws it; the dtype is that of ``params``.
    A backbone parameter whose shape changes (another patch size, width or depth) raises
    ``ValueError`` naming it. For a token model ``old_cfg`` may have no head (a masked or causal
    language model) and the positions are kept as they are (module docstring).
    """
    model = model_of(new_cfg)
    if model_of(old_cfg) is not model:
        raise ValueError(f"old_cfg and new_cfg must be configs of the same model, got "
                         f"{type(old_cfg).__module__} and {type(new_cfg).__module__}")
    tokens = model is crate_lm
    changes = "the number of classes" if tokens else "the image size and the number of classes"
    if tokens and old_cfg.causal != new_cfg.causal:
        raise ValueError(f"old_cfg has causal={old_cfg.causal} but new_cfg causal={new_cfg.causal}; the attention "
                         "of a fine-tuned token model is that of its pretraining")
    expected, old_names = model.shapes(new_cfg), set(model.shapes(old_cfg))
    if set(params) != old_names:
        raise ValueError(f"params do not match old_cfg: missing {sorted(old_names - set(params))[:5]}, "
                         f"unexpected {sorted(set(params) - old_names)[:5]}")
    backbone = set(expected) - set(HEAD_NAMES)
    if backbone != set(params) - set(HEAD_NAMES) or not set(HEAD_NAMES) <= set(expected):
        raise ValueError(f"new_cfg has other parameters than old_cfg (e.g. {sorted(backbone ^ set(params))[:3]}) "
                         f"or no classifier head; only {changes} may change")
    host = {name: to_host(value) for name, value in params.items()}
    resized = set() if tokens else {"pos_embedding"}
    for name in [n for n in expected if n in backbone and n not in resized]:  # the model's order
        if host[name].shape != expected[name]:
            raise ValueError(f"{name} has shape {host[name].shape} under old_cfg but {expected[name]} under new_cfg; "
                             f"only {changes} may change")
    dtype = host["pos_embedding"].dtype
    fresh = model.init(new_cfg, seed, dtype=dtype)
    new = {**host, **{name: fresh[name] for name in HEAD_NAMES}}
    if not tokens:
        new["pos_embedding"] = resize_pos_embedding(host["pos_embedding"], grid_of(new_cfg))
    xp = get_xp(device)
    return {name: xp.asarray(new[name], dtype=dtype) for name in expected}


def finetuning_params_from_file(path, cfg, seed: int = 0, *, dtype=TRAIN_DTYPE, device: str | None = None) -> dict:
    """Parameters for ``cfg`` from a weights file (as :func:`whitebox.weights.load.load_model_weights`
    reads it, positions resized), with the head replaced by the one ``init(cfg, seed)`` draws.

    The file's head may have any number of classes; everything else must match ``cfg``.
    """
    model = model_of(cfg)
    names, fresh = model.torch_names(cfg), model.init(cfg, seed, dtype=dtype)
    state = {**official_state_dict(path, cfg), **{names[name]: to_host(fresh[name]) for name in HEAD_NAMES}}
    return model.from_torch_state_dict(state, cfg, dtype=dtype, device=device)
