"""Helpers shared by the model modules: the classifiers' cache, their backbone features
(:func:`represent`, for self-supervision and frozen-feature evaluation), and moving parameters to and
from official PyTorch state dicts.

Each model supplies its name map (whitebox name -> official name) and its expected shapes; the
conversion and its error messages are the same for every model.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ..backend import array_module, get_xp, to_host
from ..blocks import head, stack
from ..blocks.head import HeadCache
from ..blocks.stack import StackCache
from ..layers.embedding import ClsCache, prepend_cls_backward
from ..validate import check_float_dtype
from .checks import check_params
from .registry import model_of


class ClassifierCache(NamedTuple):
    """The cache of an image classifier (CRATE, CRATE-alpha): embed, cls + position, stack, head."""

    cfg: object
    embed: object  # the model's patch-embedding cache
    cls: ClsCache
    stack: StackCache
    head: HeadCache

    @property
    def layers(self) -> list:
        """The per-layer block caches."""
        return self.stack.layers


def classifier_trunk_backward(dlogits, cache: ClassifierCache):
    """Backward through the head, the stack and the cls + position prepend of an image classifier.

    dlogits (B, classes) → ``(dtokens, grads)``: the gradient for the patch embedding's output
    (B, n, d) and the gradients of every other parameter; the model adds its embedding's own.
    """
    dz, grads = head.backward(dlogits, cache.head)  # (B, N, d)
    dz, layer_grads = stack.backward(dz, cache.stack)
    grads.update(layer_grads)
    dtokens, grads["cls_token"], grads["pos_embedding"] = prepend_cls_backward(dz, cache.cls)
    return dtokens, grads


def state_dict_from_params(params: dict, names: dict) -> dict:
    """``{official name: NumPy array}`` for every ``whitebox name -> official name`` in ``names``."""
    return {theirs: np.ascontiguousarray(to_host(params[ours])) for ours, theirs in names.items()}


def params_from_state_dict(state_dict: dict, names: dict, expected: dict, *, dtype=None, device: str | None = None) -> dict:
    """Parameters under whitebox names from a state dict (arrays, or tensors with ``.numpy()``).

    ``expected`` maps whitebox names to shapes. Missing, unexpected, mis-shaped or non-finite
    entries raise ``ValueError`` naming them, non-float entries (or a non-float ``dtype``)
    ``TypeError``; ``dtype=None`` keeps the state dict's dtype.
    """
    if dtype is not None:
        dtype = check_float_dtype("dtype", dtype)
    missing = sorted(set(names.values()) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(names.values()))
    if missing or unexpected:
        raise ValueError(f"state_dict does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    xp = get_xp(device)
    params = {}
    for ours, theirs in names.items():
        value = state_dict[theirs]
        value = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else to_host(value))
        if value.shape != expected[ours]:
            raise ValueError(f"state_dict[{theirs!r}] has shape {value.shape}, expected {expected[ours]}")
        if value.dtype.kind != "f":
            raise TypeError(f"state_dict[{theirs!r}] has dtype {value.dtype}, expected floating-point weights")
        if not np.isfinite(value).all():
            raise ValueError(f"state_dict[{theirs!r}] holds NaN or inf values")
        params[ours] = xp.asarray(value, dtype=dtype or value.dtype)
    return params


HEAD_TORCH_NAMES = {
    "cls_token": "cls_token",
    "pos_embedding": "pos_embedding",
    "head_norm.weight": "mlp_head.0.weight",
    "head_norm.bias": "mlp_head.0.bias",
    "head.weight": "mlp_head.1.weight",
    "head.bias": "mlp_head.1.bias",
}  # whitebox name -> official name, the same in PyTorch CRATE and the CRATE-alpha port


def attention_torch_names(layer: int, *, project_out: bool, out_bias: bool) -> dict:
    """whitebox -> official names of layer ``layer``'s attention sublayer (``transformer.layers.i.0``)."""
    ours, theirs = f"layers.{layer}.", f"transformer.layers.{layer}.0."
    names = {
        ours + "attn_norm.weight": theirs + "norm.weight",
        ours + "attn_norm.bias": theirs + "norm.bias",
        ours + "attn.qkv": theirs + "fn.qkv.weight",
    }
    if project_out:
        names[ours + "attn.out.weight"] = theirs + "fn.to_out.0.weight"
        if out_bias:
            names[ours + "attn.out.bias"] = theirs + "fn.to_out.0.bias"
    return names


BACKBONE_EXCLUDED = ("head.weight", "head.bias")  # the classifier's linear map; head_norm.* is the features' LN


def backbone_shapes(cfg) -> dict:
    """The parameters of :func:`represent`: the model's, without the classifier's linear map."""
    return {name: shape for name, shape in model_of(cfg).shapes(cfg).items() if name not in BACKBONE_EXCLUDED}


class FeaturesCache(NamedTuple):
    model: object  # the model's module, whose backward inverts the forward
    classifier: ClassifierCache  # the cache of the forward with the identity as its classifier


def represent(params: dict, images, cfg):
    """The backbone's features ``h = LN(pool(Z^L))`` (B, d) of a classifier model (CRATE, CRATE-alpha, ...)
    and the cache for :func:`represent_backward`: everything of ``forward`` but the classifier ``Linear``.

    ``params`` needs the :func:`backbone_shapes` only (a self-supervised run has no classifier). The
    features are the logits of the same model whose classifier is the identity, ``h Iᵀ + 0 = h``
    exactly in floating point, so every classifier model has its features without a second copy of
    its forward (the extra ``d × d`` product is small beside the layers).
    """
    model = model_of(cfg)
    check_params(params, backbone_shapes(cfg), images)
    xp, d = array_module(params["head_norm.weight"]), cfg.dim
    dtype = params["head_norm.weight"].dtype
    identity = {"head.weight": xp.eye(d, dtype=dtype), "head.bias": xp.zeros(d, dtype=dtype)}
    features, cache = model.forward({**params, **identity}, images, dataclasses.replace(cfg, num_classes=d))
    return features, FeaturesCache(model, cache)  # (B, d)


def represent_backward(dfeatures, cache: FeaturesCache) -> dict:
    """Gradients of the :func:`backbone_shapes` parameters for ``dfeatures`` (B, d)."""
    grads = cache.model.backward(dfeatures, cache.classifier)
    return {name: g for name, g in grads.items() if name not in BACKBONE_EXCLUDED}
