"""The stack: blocks of one kind run in order, and back in reverse order (llm.c's one layer loop).

Parameters of layer ``i`` live under ``{prefix}{i}.`` + the block's local names; this module is
the only place that adds or strips that prefix.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

from .params import local, prefixed


class StackCache(NamedTuple):
    block: ModuleType  # the block module, for its backward and features
    layers: list  # the block caches, one per layer
    inputs: list | None  # Z^ℓ per layer, when features were asked for
    output: object  # Z^L when features were asked for, else None


def shapes(block: ModuleType, spec, depth: int, prefix: str = "layers.") -> dict:
    """name -> Param of every layer: ``{prefix}{i}.`` + the block's names, layer by layer."""
    described = block.shapes(spec)
    out = {}
    for i in range(depth):
        out.update(prefixed(f"{prefix}{i}.", described))
    return out


def forward(z, params: dict, block: ModuleType, spec, depth: int, prefix: str = "layers.", *, keep: bool = False):
    """``Z^{ℓ+1} = block(Z^ℓ)`` for ``ℓ = 0 … depth − 1``; returns ``(Z^depth, StackCache)``.

    With ``keep=True`` the cache also holds what :func:`layer_features` reports.
    """
    names = tuple(block.shapes(spec))
    caches, inputs = [], ([] if keep else None)
    for i in range(depth):
        if keep:
            inputs.append(z)
        z, cache = block.forward(z, local(params, f"{prefix}{i}.", names), spec, keep)
        caches.append(cache)
    return z, StackCache(block, caches, inputs, z if keep else None)


def backward(dz, cache: StackCache, prefix: str = "layers."):
    """Returns ``(dZ^0, grads)`` with grads under ``{prefix}{i}.`` names, last layer first."""
    grads = {}
    for i in reversed(range(len(cache.layers))):
        dz, layer_grads = cache.block.backward(dz, cache.layers[i])
        grads.update(prefixed(f"{prefix}{i}.", layer_grads))
    return dz, grads


FEATURES = ("inputs", "attention_inputs", "midpoints", "sparse_inputs", "outputs", "codes", "attention")


def layer_features(cache: StackCache) -> dict:
    """Per-layer measurements of a forward run with ``keep=True``: lists over layers of

    ``inputs`` Z^ℓ, ``attention_inputs`` LN(Z^ℓ) (MSSA's input), ``midpoints`` Z^{ℓ+½},
    ``sparse_inputs`` LN(Z^{ℓ+½}) (the sparse block's input), ``outputs`` Z^{ℓ+1}, ``codes`` the
    sparse codes (ISTA's output, or ODL's ``A_T`` (B, N, m)), ``attention`` (B, heads, N, N).
    """
    if cache.inputs is None:
        raise ValueError("the cache holds no features: call forward(..., keep_features=True)")
    per_layer = [cache.block.features(c) for c in cache.layers]
    out = {"inputs": list(cache.inputs), "outputs": cache.inputs[1:] + [cache.output]}
    for key in ("attention_inputs", "midpoints", "sparse_inputs", "codes", "attention"):
        out[key] = [f[key] for f in per_layer]
    return {key: out[key] for key in FEATURES}
