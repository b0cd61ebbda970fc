"""Flat buffers (whitebox/flat.py) and the fused optimiser step against the per-parameter rules.

The reference below is whitebox's former optimiser, one parameter at a time (as released up to
45d495c), with weight decay for the names in ``decay`` and global-norm clipping; the fused step
over flat buffers must give the same parameters: to 1e-12 (relative) in float64 and 1e-6 in float32.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strict_device import strict

from whitebox.backend import to_host, use_device_module
from whitebox.flat import FlatTree, flat_assign, flat_copy, flat_zeros, layout_of
from whitebox.optim import SGD, AdamW, Lion, clip_grads

# ------------------------------------------------------------------ the per-parameter reference


def clip_reference(grads, max_norm):
    norm = math.sqrt(sum(float(np.vdot(g.ravel(), g.ravel())) for g in grads.values()))
    coef = max_norm / (norm + 1e-6)
    return {k: g * coef for k, g in grads.items()} if coef < 1.0 else grads


def reference_step(kind, opt, p, g, slots, lr, decayed, t):
    """One parameter's update, in place, as the former per-parameter code wrote it."""
    wd = opt.weight_decay
    if kind == "sgd":
        d = g + wd * p if decayed and wd else g.copy()
        if opt.momentum:
            b = slots["momentum"]
            b *= opt.momentum
            b += d
            d = d + opt.momentum * b if opt.nesterov else b.copy()
        p -= lr * d
    elif kind == "adamw":
        (b1, b2), m, v = opt.betas, slots["m"], slots["v"]
        if decayed and wd:
            p *= 1.0 - lr * wd
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * g * g
        p -= lr / (1.0 - b1**t) * m / (np.sqrt(v) / (1.0 - b2**t) ** 0.5 + opt.eps)
    else:
        (b1, b2), m = opt.betas, slots["m"]
        if decayed and wd:
            p *= 1.0 - lr * wd
        p -= lr * np.sign(b1 * m + (1.0 - b1) * g)
        m *= b2
        m += (1.0 - b2) * g


OPTIMISERS = {
    "sgd": lambda decay: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.1, decay=decay),
    "sgd-plain": lambda decay: SGD(0.05, momentum=0.0, weight_decay=0.2, decay=decay),
    "adamw": lambda decay: AdamW(0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3, decay=decay),
    "lion": lambda decay: Lion(0.003, betas=(0.9, 0.99), weight_decay=0.5, decay=decay),
}

shapes = st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(shapes=shapes, seed=st.integers(0, 2**16), kind=st.sampled_from(sorted(OPTIMISERS)),
       dtype=st.sampled_from([np.float64, np.float32]), clip=st.sampled_from([None, 0.5, 100.0]),
       decay_bits=st.integers(0, 31))
def test_the_fused_step_equals_the_per_parameter_rules(shapes, seed, kind, dtype, clip, decay_bits):
    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)}
    decay = {name for i, name in enumerate(params) if decay_bits >> i & 1}
    opt = OPTIMISERS[kind](decay)
    flat, state = flat_copy(params), opt.init(params)
    ref = {k: v.copy() for k, v in params.items()}
    ref_slots = {k: {slot: np.zeros_like(v) for slot in opt.slots} for k, v in params.items()}
    for t, lr in enumerate([0.5, 1.0, 0.25], start=1):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        g = flat_copy(grads)
        if clip is not None:
            clip_grads(g, clip)
            grads = clip_reference(grads, clip)
        opt.update(flat, g, state, lr * opt.lr)
        for k in ref:
            reference_step(kind.split("-")[0], opt, ref[k], grads[k], ref_slots[k], lr * opt.lr, k in decay, t)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for k in ref:
        scale = max(1.0, float(np.abs(ref[k]).max()))
        np.testing.assert_allclose(flat[k], ref[k], rtol=rtol, atol=rtol * scale, err_msg=k)
        for slot in opt.slots:
            np.testing.assert_allclose(state[slot][k], ref_slots[k][slot], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("xp", [np, strict], ids=["host", "device"])
@pytest.mark.parametrize("kind", sorted(OPTIMISERS))
def test_a_vetoed_step_keeps_every_bit_even_with_nan_gradients(kind, xp):
    rng = np.random.default_rng(1)
    host = lambda shape, fill=None: np.full(shape, fill) if fill is not None else rng.standard_normal(shape)  # noqa: E731
    tree = lambda **arrays: flat_copy({k: xp.asarray(v) for k, v in arrays.items()})  # noqa: E731
    opt = OPTIMISERS[kind](None)
    with use_device_module(strict):
        flat = tree(w=host((3, 4)), b=host(4))
        state = opt.init(flat)
        opt.update(flat, tree(w=host((3, 4)), b=host(4)), state, 0.1, ok=xp.asarray(True))
        before = [to_host(b) for b in flat.buffers], {s: [to_host(b) for b in state[s].buffers] for s in opt.slots}
        bad = tree(w=host((3, 4), np.nan), b=host(4, np.inf))
        opt.update(flat, bad, state, 0.1, ok=xp.asarray(False))
        assert all(np.array_equal(to_host(a), b) for a, b in zip(flat.buffers, before[0]))
        for slot in opt.slots:
            assert all(np.array_equal(to_host(a), b) for a, b in zip(state[slot].buffers, before[1][slot]))
        with np.errstate(invalid="ignore"):
            opt.update(flat, bad, state, 0.1, ok=xp.asarray(True))  # not vetoed: the NaN goes through
        assert not np.isfinite(to_host(flat.buffers[0])).all()


def test_views_share_one_buffer_per_dtype_in_key_order():
    tree = {"a": np.ones((2, 3)), "b": np.zeros(4, np.float32), "c": np.full((1, 2), 2.0)}
    flat = flat_copy(tree)
    assert isinstance(flat, FlatTree) and [b.dtype for b in flat.buffers] == [np.float64, np.float32]
    assert [b.size for b in flat.buffers] == [8, 4]
    flat.buffers[0] *= 3
    np.testing.assert_array_equal(flat["a"], np.full((2, 3), 3.0))
    np.testing.assert_array_equal(flat["c"], np.full((1, 2), 6.0))
    assert np.shares_memory(flat["a"], flat.buffers[0]) and np.shares_memory(flat["c"], flat.buffers[0])
    assert layout_of(flat) == flat.layout


def test_assign_copies_a_dict_or_a_flat_tree_into_the_buffers():
    tree = {"a": np.arange(6.0).reshape(2, 3).T, "b": np.arange(3.0)}  # a non-contiguous view too
    dst = flat_zeros(layout_of(tree), np)
    flat_assign(dst, tree)
    assert all(np.array_equal(dst[k], tree[k]) for k in tree)
    again = flat_zeros(dst.layout, np)
    flat_assign(again, dst)
    assert all(np.array_equal(again[k], tree[k]) for k in tree)
