"""CRATE-alpha's released JAX weights (big_vision ``.npz``) -> the official PyTorch names -> whitebox.

The JAX model (``models/crate.py`` of UCSC-VLAA/CRATE-alpha, flax) stores a flat ``.npz`` whose
keys are the flax parameter paths joined by ``/``, with or without a leading ``params/``::

    embedding/kernel                (P, P, C, d)   conv kernel, HWIO      -> conv1.weight (d, C, P, P)
    embedding/bias                  (d,)                                   -> conv1.bias
    cls                             (1, 1, d)                              -> cls_token
    pos_embedding                   (1, 1 + N, d)                          -> pos_embedding
    Transformer/encoderblock_i/
      LayerNorm_0/{scale, bias}     (d,)                                   -> transformer.layers.i.0.norm.{weight, bias}
      MultiHeadDotProductSubspaceAttention_0/
        proj/kernel                 (d, H, p) or (d, H p)   y = x K        -> ...0.fn.qkv.weight (H p, d) = Kᵀ
        out/kernel                  (H, p, d) or (H p, d)                  -> ...0.fn.to_out.0.weight (d, H p) = Kᵀ
      LayerNorm_1/{scale, bias}     (d,)                                   -> transformer.layers.i.1.norm.{weight, bias}
      OvercompleteISTABlock_0/{D, D1}  (d, C d), used as in the port      -> ...1.fn.{D, D1}
    encoder_norm/{scale, bias}      (d,)                                   -> mlp_head.0.{weight, bias}
    head/kernel                     (d, classes)                           -> mlp_head.1.weight (classes, d)
    head/bias                       (classes,)                             -> mlp_head.1.bias

A flax ``Dense`` computes ``x K`` where PyTorch's ``Linear`` computes ``x Wᵀ``, so ``W = Kᵀ``; the
``(H, p)`` axes of the subspace projection flatten head-major, as the port's
``reshape(b, n, heads, -1)``. ``D`` and ``D1`` keep their layout (the JAX einsums are the port's).
The tokens of the conv stem come out of an NHWC image in the same (row, column) order as the
port's NCHW conv, so the images a whitebox model takes are the port's (channels first).
The JAX ``encoder_norm`` uses LayerNorm eps 1e-6, the port's ``mlp_head.0`` 1e-5 (docs/reference.md §6).

Public surface::

    sd = torch_state_dict_from_big_vision(load_state_dict("crate_alpha_b16.npz"), cfg)
    params = from_big_vision(load_state_dict("crate_alpha_b16.npz"), cfg)    # through from_torch_state_dict
"""

from __future__ import annotations

import numpy as np

from ..models import crate_alpha

PARAMS_PREFIX = "params/"
BLOCK = "Transformer/encoderblock_{}/"
ATTENTION = "MultiHeadDotProductSubspaceAttention_0/"
SPARSE = "OvercompleteISTABlock_0/"


def is_big_vision(state: dict) -> bool:
    """True when the keys are big_vision's flax paths (``.../Transformer/encoderblock_0/...``)."""
    return any("Transformer/encoderblock_" in k for k in state)


def _params_only(state: dict) -> dict:
    """The ``params/`` entries with the prefix removed (an optimiser's ``opt/`` entries left out)."""
    if any(k.startswith(PARAMS_PREFIX) for k in state):
        return {k[len(PARAMS_PREFIX):]: v for k, v in state.items() if k.startswith(PARAMS_PREFIX)}
    return dict(state)


def _dense_weight(kernel: np.ndarray, fan_in: int) -> np.ndarray:
    """PyTorch's ``Linear.weight`` (out, in) from a flax kernel whose leading axes flatten to ``fan_in``."""
    return np.ascontiguousarray(kernel.reshape(fan_in, -1).T)


def torch_state_dict_from_big_vision(state: dict, cfg: crate_alpha.Config) -> dict:
    """The official PyTorch CRATE-alpha state dict of a big_vision parameter dict (NumPy arrays).

    Every big_vision entry must be used: missing ones raise ``ValueError`` naming the key, left-over
    ones ``ValueError`` listing them (so a layout that is not CRATE-alpha's is never half-loaded).
    """
    flat = _params_only(state)
    used = set()

    def take(key):
        if key not in flat:
            raise ValueError(f"big_vision weights lack {key!r} (has {sorted(flat)[:6]} ...)")
        used.add(key)
        return np.asarray(flat[key])

    d, inner = cfg.dim, cfg.inner_dim
    sd = {
        "conv1.weight": np.ascontiguousarray(take("embedding/kernel").transpose(3, 2, 0, 1)),  # HWIO -> OIHW
        "conv1.bias": take("embedding/bias"),
        "cls_token": take("cls"),
        "pos_embedding": take("pos_embedding"),
        "mlp_head.0.weight": take("encoder_norm/scale"),
        "mlp_head.0.bias": take("encoder_norm/bias"),
        "mlp_head.1.weight": _dense_weight(take("head/kernel"), d),
        "mlp_head.1.bias": take("head/bias"),
    }
    for i in range(cfg.depth):
        jax, torch = BLOCK.format(i), f"transformer.layers.{i}."
        sd[torch + "0.norm.weight"] = take(jax + "LayerNorm_0/scale")
        sd[torch + "0.norm.bias"] = take(jax + "LayerNorm_0/bias")
        sd[torch + "0.fn.qkv.weight"] = _dense_weight(take(jax + ATTENTION + "proj/kernel"), d)
        if cfg.project_out:
            sd[torch + "0.fn.to_out.0.weight"] = _dense_weight(take(jax + ATTENTION + "out/kernel"), inner)
        sd[torch + "1.norm.weight"] = take(jax + "LayerNorm_1/scale")
        sd[torch + "1.norm.bias"] = take(jax + "LayerNorm_1/bias")
        sd[torch + "1.fn.D"] = take(jax + SPARSE + "D")
        if cfg.decoupled:
            sd[torch + "1.fn.D1"] = take(jax + SPARSE + "D1")
    unused = sorted(set(flat) - used)
    if unused:
        raise ValueError(f"big_vision weights have entries the config does not use: {unused[:6]}"
                         f"{' ...' if len(unused) > 6 else ''} (depth {cfg.depth}, decoupled {cfg.decoupled})")
    return sd


def from_big_vision(state: dict, cfg: crate_alpha.Config, *, dtype=None, device: str | None = None) -> dict:
    """whitebox CRATE-alpha parameters from big_vision weights, checked by ``from_torch_state_dict``."""
    return crate_alpha.from_torch_state_dict(torch_state_dict_from_big_vision(state, cfg), cfg,
                                             dtype=dtype, device=device)
