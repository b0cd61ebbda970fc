"""Flat buffers: every parameter (or gradient, or optimiser slot) a view into one contiguous array.

A model sees a plain ``dict[str, array]``; a :class:`FlatTree` *is* such a dict, whose values are
reshaped views into one 1-D buffer per dtype (``tree.buffers``). Anything that treats all the
parameters alike (an optimiser step, the global gradient norm, clipping, an all-reduce) then runs a
few passes over one long array instead of a few passes per parameter: on a GPU that is a handful of
kernel launches instead of hundreds, on the CPU fewer, longer loops::

    params = flat_copy(model.init(cfg))        # a FlatTree: params["embed.weight"] is a view
    grads = flat_zeros(params.layout, xp)      # the same layout, zeros
    flat_assign(grads, model.backward(...))    # one copy per gradient into the buffer
    grads.buffers[0] *= 0.5                    # scales every gradient at once

A :class:`Layout` fixes the order: the names in the order given, grouped by dtype (one group per
dtype, in order of first appearance), each at its ``offset`` in its group's buffer. Two trees with
equal layouts line up element for element, which is what a fused optimiser needs of the
parameters, the gradients and its ``m``/``v`` slots.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np

from .backend import array_module, to_device


class Entry(NamedTuple):
    group: int  # index of the dtype group, i.e. of the buffer
    offset: int  # first element in that buffer
    shape: tuple


class Layout(NamedTuple):
    """Where each named array lives: ``entries[name] = (group, offset, shape)``; ``sizes[g]``, ``dtypes[g]``."""

    names: tuple
    entries: dict
    dtypes: tuple  # one numpy dtype per group
    sizes: tuple  # elements per group buffer


def layout_of(tree: Mapping) -> Layout:
    """The layout of ``tree``'s arrays, in its key order, one group per dtype."""
    dtypes, sizes, entries = [], [], {}
    for name, a in tree.items():
        dtype = np.dtype(a.dtype)
        if dtype not in dtypes:
            dtypes.append(dtype)
            sizes.append(0)
        g = dtypes.index(dtype)
        entries[name] = Entry(g, sizes[g], tuple(a.shape))
        sizes[g] += math.prod(a.shape)
    return Layout(tuple(tree), entries, tuple(dtypes), tuple(sizes))


class FlatTree(dict):
    """A dict of named views into ``buffers`` (one 1-D array per dtype group of ``layout``)."""

    def __init__(self, layout: Layout, buffers: list):
        super().__init__(
            (name, buffers[e.group][e.offset:e.offset + math.prod(e.shape)].reshape(e.shape))
            for name, e in layout.entries.items()
        )
        self.layout, self.buffers = layout, list(buffers)


def flat_zeros(layout: Layout, xp) -> FlatTree:
    """A :class:`FlatTree` of zeros with ``layout``, on the module ``xp``."""
    return FlatTree(layout, [xp.zeros(n, dtype=d) for n, d in zip(layout.sizes, layout.dtypes)])


def flat_copy(tree: Mapping, layout: Layout | None = None, xp=None) -> FlatTree:
    """A :class:`FlatTree` holding a copy of ``tree``'s arrays (``layout`` default: ``layout_of(tree)``)."""
    layout = layout_of(tree) if layout is None else layout
    out = flat_zeros(layout, array_module(*tree.values()) if xp is None else xp)
    flat_assign(out, tree)
    return out


def flat_assign(dst: FlatTree, src: Mapping) -> FlatTree:
    """Copy every ``src[name]`` into ``dst[name]`` (``src`` must have ``dst``'s names and shapes, on its module).

    One ``concatenate`` per buffer, written straight into it (one kernel on CuPy for all the
    arrays, instead of a copy each); a :class:`FlatTree` of the same layout is copied buffer by buffer.
    """
    if isinstance(src, FlatTree) and src.layout == dst.layout:
        for d, s in zip(dst.buffers, src.buffers):
            d[...] = s
        return dst
    xp = array_module(*dst.buffers)
    for g, buffer in enumerate(dst.buffers):
        parts = [src[name].reshape(-1) for name, e in dst.layout.entries.items() if e.group == g]
        xp.concatenate(parts, out=buffer)
    return dst


def is_flat(tree: Mapping, layout: Layout | None = None) -> bool:
    """True when ``tree`` is a :class:`FlatTree` (of ``layout``, when given)."""
    return isinstance(tree, FlatTree) and (layout is None or tree.layout == layout)


def flat_to(tree: FlatTree, xp) -> FlatTree:
    """``tree`` on the module ``xp`` (``numpy``: the host), one transfer per buffer (no copy when it is there)."""
    return FlatTree(tree.layout, [to_device(b, xp) for b in tree.buffers])
