"""Every layer's backward against central differences (float64, shapes drawn by hypothesis)."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from whitebox.gradcheck import vjp_errors
from whitebox.layers.activations import relu_backward, relu_forward, softmax_backward, softmax_forward
from whitebox.layers.embedding import (
    conv_patch_embed_backward,
    conv_patch_embed_forward,
    gather_tokens_backward,
    gather_tokens_forward,
    patch_embed_backward,
    patch_embed_forward,
    patchify,
    prepend_cls_backward,
    prepend_cls_forward,
    scatter_tokens_backward,
    scatter_tokens_forward,
    tied_head_backward,
    tied_head_forward,
    token_embed_backward,
    token_embed_forward,
    unpatchify,
)
from whitebox.layers.ista import ista_backward, ista_forward
from whitebox.layers.layernorm import layernorm_backward, layernorm_forward
from whitebox.layers.linear import linear_backward, linear_forward
from whitebox.layers.loss import cross_entropy
from whitebox.layers.mssa import (
    attention_heads_backward,
    attention_heads_forward,
    mssa_backward,
    mssa_forward,
    mssa_tied_backward,
    mssa_tied_forward,
    subspaces,
)
from whitebox.layers.pooling import pool_backward, pool_forward
from whitebox.gradcheck import grad_errors

TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
small = st.integers(1, 6)


def assert_small(errors):
    assert max(errors.values()) < TOL, errors


@given(seed=seeds, batch=small, n=small, d_in=small, d_out=small, bias=st.booleans())
def test_linear(seed, batch, n, d_in, d_out, bias):
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal((batch, n, d_in)), rng.standard_normal((d_out, d_in))
    b = rng.standard_normal(d_out) if bias else None
    y, cache = linear_forward(x, W, b)
    np.testing.assert_allclose(y, x @ W.T + (0 if b is None else b))
    dy = rng.standard_normal(y.shape)
    dx, dW, db = linear_backward(dy, cache)
    inputs = {"x": x, "W": W, **({"b": b} if bias else {})}
    grads = {"x": dx, "W": dW, **({"b": db} if bias else {})}
    assert_small(vjp_errors(lambda **k: linear_forward(k["x"], k["W"], k.get("b"))[0], inputs, dy, grads))


@given(seed=seeds, batch=small, d=st.integers(3, 12), scale=st.floats(0.1, 100))
def test_layernorm(seed, batch, d, scale):
    # d >= 3: with two features LN maps almost every input to (±1, ∓1) and its Jacobian is ~0,
    # below what a finite difference can resolve
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((batch, 3, d)) + rng.standard_normal()
    w, b = rng.standard_normal(d), rng.standard_normal(d)
    y, cache = layernorm_forward(x, w, b)
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, xhat * w + b, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = layernorm_backward(dy, cache)
    f = lambda x, w, b: layernorm_forward(x, w, b)[0]
    assert_small(vjp_errors(f, {"x": x, "w": w, "b": b}, dy, {"x": dx, "w": dw, "b": db}))


@given(seed=seeds, n=st.integers(1, 8), shift=st.floats(-50, 50))
def test_softmax(seed, n, shift):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((2, 3, n)) + shift
    p = softmax_forward(s.copy())
    np.testing.assert_allclose(p.sum(-1), 1.0)
    np.testing.assert_allclose(p, np.exp(s - s.max(-1, keepdims=True)) / np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True))
    dp = rng.standard_normal(p.shape)
    ds = softmax_backward(dp, p)
    assert_small(vjp_errors(lambda s: softmax_forward(s.copy()), {"s": s}, dp, {"s": ds}))


def test_softmax_is_stable_for_huge_scores():
    p = softmax_forward(np.array([[1e4, 0.0, -1e4]]))
    assert np.isfinite(p).all() and p[0, 0] == pytest.approx(1.0)


@given(seed=seeds, n=st.integers(1, 20))
def test_relu(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    assume(np.abs(x).min() > 1e-3)
    out = relu_forward(x)
    dy = rng.standard_normal(n)
    assert_small(vjp_errors(relu_forward, {"x": x}, dy, {"x": relu_backward(dy, out)}))


@given(seed=seeds, batch=small, n=small, d=st.integers(1, 8), step=st.floats(0.01, 0.5), lambd=st.floats(0, 0.5))
def test_ista(seed, batch, n, d, step, lambd):
    rng = np.random.default_rng(seed)
    x, D = rng.standard_normal((batch, n, d)), rng.standard_normal((d, d)) / np.sqrt(d)
    pre = x + step * (x @ D - (x @ D.T) @ D) - step * lambd  # the published three-matmul form
    assume(np.abs(pre).min() > 1e-4)
    out, cache = ista_forward(x, D, step, lambd)
    np.testing.assert_allclose(out, np.maximum(pre, 0), atol=1e-12)
    dy = rng.standard_normal(out.shape)
    dx, dD = ista_backward(dy, cache)
    f = lambda x, D: ista_forward(x, D, step, lambd)[0]
    assert_small(vjp_errors(f, {"x": x, "D": D}, dy, {"x": dx, "D": dD}, step=1e-6))


def reference_mssa(x, W_qkv, heads, causal=False):
    """A per-head loop, written independently of the batched kernel."""
    B, N, _ = x.shape
    U = subspaces(W_qkv, heads)  # (K, d, p)
    outs = []
    for k in range(heads):
        P = x @ U[k]  # (B, N, p)
        s = P @ P.swapaxes(-1, -2) / np.sqrt(U.shape[-1])
        if causal:
            s = np.where(np.tril(np.ones((N, N), bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        outs.append((a / a.sum(-1, keepdims=True)) @ P)
    return np.concatenate(outs, axis=-1)  # (B, N, K p)


@given(seed=seeds, batch=st.integers(1, 3), n=st.integers(1, 6), d=st.integers(1, 6),
       heads=st.integers(1, 3), p=st.integers(1, 4), form=st.sampled_from(["published", "nobias", "tied", "heads"]),
       causal=st.booleans())
def test_mssa(seed, batch, n, d, heads, p, form, causal):
    """Each of MSSA's three forms (published with or without output bias, tied, no projection)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n, d))
    W_qkv = rng.standard_normal((heads * p, d)) / np.sqrt(d)
    inputs = {"x": x, "W_qkv": W_qkv}
    O = reference_mssa(x, W_qkv, heads, causal)
    if form in ("published", "nobias"):
        inputs["W_out"] = rng.standard_normal((d, heads * p))
        if form == "published":
            inputs["b_out"] = rng.standard_normal(d)
        run = lambda **k: mssa_forward(k["x"], k["W_qkv"], k["W_out"], k.get("b_out"), heads=heads, causal=causal)  # noqa: E731
        expected = O @ inputs["W_out"].T + inputs.get("b_out", 0)
        names, backward = ("x", "W_qkv", "W_out", "b_out"), mssa_backward
    elif form == "tied":
        run = lambda **k: mssa_tied_forward(k["x"], k["W_qkv"], 0.3, heads=heads, causal=causal)  # noqa: E731
        expected = 0.3 * (O @ W_qkv - x)
        names, backward = ("x", "W_qkv"), mssa_tied_backward
    else:  # no projection: the heads' output itself
        run = lambda **k: attention_heads_forward(k["x"], k["W_qkv"], heads, causal=causal)  # noqa: E731
        expected = O
        names, backward = ("x", "W_qkv"), attention_heads_backward
    y, cache = run(**inputs)
    np.testing.assert_allclose(y, expected, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    grads = dict(zip(names, backward(dy, cache)))
    if "W_out" in inputs:
        assert (grads["b_out"] is None) == (form == "nobias")
    assert_small(vjp_errors(lambda **k: run(**k)[0], inputs, dy, {k: grads[k] for k in inputs}))


@given(seed=seeds, batch=small, c=st.integers(1, 3), grid=st.integers(1, 3), patch=st.integers(1, 3), d=st.integers(3, 5))
def test_patch_embedding(seed, batch, c, grid, patch, d):
    rng = np.random.default_rng(seed)
    H = grid * patch
    images = rng.standard_normal((batch, c, H, H))
    P = c * patch * patch
    # the einops rearrange b c (h p1) (w p2) -> b (h w) (p1 p2 c), entry by entry
    x = patchify(images, patch)
    b, ch, i, j, p1, p2 = [int(v) for v in (rng.integers(batch), rng.integers(c), rng.integers(grid), rng.integers(grid), rng.integers(patch), rng.integers(patch))]
    assert x[b, i * grid + j, (p1 * patch + p2) * c + ch] == images[b, ch, i * patch + p1, j * patch + p2]
    np.testing.assert_array_equal(unpatchify(x, patch, c, H, H), images)
    params = {"norm_in.weight": rng.standard_normal(P), "norm_in.bias": rng.standard_normal(P),
              "proj.weight": rng.standard_normal((d, P)), "proj.bias": rng.standard_normal(d),
              "norm_out.weight": rng.standard_normal(d), "norm_out.bias": rng.standard_normal(d)}
    assume(P >= 3)  # LayerNorm over fewer than 3 features has a ~0 Jacobian (see test_layernorm)
    y, cache = patch_embed_forward(images, params, patch)
    dy = rng.standard_normal(y.shape)
    dimages, grads = patch_embed_backward(dy, cache)
    f = lambda images, **p: patch_embed_forward(images, p, patch)[0]
    assert_small(vjp_errors(f, {"images": images, **params}, dy, {"images": dimages, **grads}))


@given(seed=seeds, batch=small, c=st.integers(1, 3), grid=st.integers(1, 3), patch=st.integers(1, 3), d=st.integers(1, 5))
def test_conv_patch_embedding(seed, batch, c, grid, patch, d):
    rng = np.random.default_rng(seed)
    H = grid * patch
    images = rng.standard_normal((batch, c, H, H))
    weight, bias = rng.standard_normal((d, c, patch, patch)), rng.standard_normal(d)
    y, cache = conv_patch_embed_forward(images, weight, bias, patch)
    # a direct convolution with kernel = stride = patch
    direct = np.einsum("bchpwq,dcpq->bhwd", images.reshape(batch, c, grid, patch, grid, patch), weight) + bias
    np.testing.assert_allclose(y, direct.reshape(batch, grid * grid, d), atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dimages, dweight, dbias = conv_patch_embed_backward(dy, cache)
    f = lambda images, weight, bias: conv_patch_embed_forward(images, weight, bias, patch)[0]
    grads = {"images": dimages, "weight": dweight, "bias": dbias}
    assert_small(vjp_errors(f, {"images": images, "weight": weight, "bias": bias}, dy, grads))


@given(seed=seeds, batch=small, n=small, d=small, shared=st.booleans(), with_pos=st.booleans())
def test_cls_and_position(seed, batch, n, d, shared, with_pos):
    rng = np.random.default_rng(seed)
    inputs = {"tokens": rng.standard_normal((batch, n, d)), "cls": rng.standard_normal((1 if shared else batch, 1, d))}
    if with_pos:
        inputs["pos"] = rng.standard_normal((1, n + 1, d))
    f = lambda tokens, cls, pos=None: prepend_cls_forward(tokens, cls, pos)[0]  # noqa: E731
    z, cache = prepend_cls_forward(inputs["tokens"], inputs["cls"], inputs.get("pos"))
    expected = np.concatenate([np.broadcast_to(inputs["cls"], (batch, 1, d)), inputs["tokens"]], axis=1)
    np.testing.assert_allclose(z, expected + inputs.get("pos", 0), atol=1e-12)
    dz = rng.standard_normal(z.shape)
    grads = dict(zip(["tokens", "cls", "pos"], prepend_cls_backward(dz, cache)))
    assert (grads["pos"] is None) == (not with_pos)
    assert_small(vjp_errors(f, inputs, dz, {k: grads[k] for k in inputs}))


@given(seed=seeds, batch=small, n=small, d=small, pool=st.sampled_from(["cls", "mean"]))
def test_pooling(seed, batch, n, d, pool):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, n, d))
    dy = rng.standard_normal((batch, d))
    pooled, cache = pool_forward(z, pool)
    np.testing.assert_allclose(pooled, z[:, 0] if pool == "cls" else z.mean(1))
    f = lambda z: pool_forward(z, pool)[0]  # noqa: E731
    assert_small(vjp_errors(f, {"z": z}, dy, {"z": pool_backward(dy, cache)}))


@given(seed=seeds, batch=small, T=small, vocab=st.integers(1, 5), d=small, extra=st.integers(0, 3))
def test_token_embedding_adds_up_repeated_ids(seed, batch, T, vocab, d, extra):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (batch, T))
    E, pos = rng.standard_normal((vocab, d)), rng.standard_normal((T + extra, d))
    z, cache = token_embed_forward(tokens, E, pos)
    np.testing.assert_array_equal(z, E[tokens] + pos[:T])
    dz = rng.standard_normal(z.shape)
    dE, dpos = token_embed_backward(dz, cache)
    np.testing.assert_array_equal(dpos[T:], 0)  # positions past the sequence get no gradient
    f = lambda E, pos: token_embed_forward(tokens, E, pos)[0]  # noqa: E731
    assert_small(vjp_errors(f, {"E": E, "pos": pos}, dz, {"E": dE, "pos": dpos}))


@given(seed=seeds, batch=small, T=small, vocab=small, d=small)
def test_tied_head(seed, batch, T, vocab, d):
    rng = np.random.default_rng(seed)
    h, E = rng.standard_normal((batch, T, d)), rng.standard_normal((vocab, d))
    logits, cache = tied_head_forward(h, E)
    np.testing.assert_allclose(logits, h @ E.T, atol=1e-12)
    dlogits = rng.standard_normal(logits.shape)
    dh, dE = tied_head_backward(dlogits, cache)
    f = lambda h, E: tied_head_forward(h, E)[0]  # noqa: E731
    assert_small(vjp_errors(f, {"h": h, "E": E}, dlogits, {"h": dh, "E": dE}))


@given(seed=seeds, batch=small, n=small, d=small, data=st.data())
def test_token_gather_and_scatter(seed, batch, n, d, data):
    rng = np.random.default_rng(seed)
    k = data.draw(st.integers(1, n))
    order = np.argsort(rng.random((batch, n)), axis=1)
    keep, fill = np.sort(order[:, :k], axis=1), np.sort(order[:, k:], axis=1)
    x = rng.standard_normal((batch, n, d))
    visible, gather_cache = gather_tokens_forward(x, keep)
    np.testing.assert_array_equal(visible, np.take_along_axis(x, keep[..., None], axis=1))
    dv = rng.standard_normal(visible.shape)
    f = lambda x: gather_tokens_forward(x, keep)[0]  # noqa: E731
    assert_small(vjp_errors(f, {"x": x}, dv, {"x": gather_tokens_backward(dv, gather_cache)}))
    token = rng.standard_normal((1, 1, d))
    full, scatter_cache = scatter_tokens_forward(visible, keep, fill, token)
    np.testing.assert_array_equal(np.take_along_axis(full, keep[..., None], axis=1), visible)  # the inverse of gather
    np.testing.assert_array_equal(np.take_along_axis(full, fill[..., None], axis=1), np.broadcast_to(token, (batch, n - k, d)))
    dfull = rng.standard_normal(full.shape)
    dvisible, dtoken = scatter_tokens_backward(dfull, scatter_cache)
    g = lambda visible, token: scatter_tokens_forward(visible, keep, fill, token)[0]  # noqa: E731
    assert_small(vjp_errors(g, {"visible": visible, "token": token}, dfull, {"visible": dvisible, "token": dtoken}))


@given(seed=seeds, batch=small, classes=st.integers(2, 8), smoothing=st.sampled_from([0.0, 0.1, 0.5]))
def test_cross_entropy(seed, batch, classes, smoothing):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((batch, classes))
    labels = rng.integers(classes, size=batch)
    loss, dlogits = cross_entropy(logits, labels, smoothing)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = np.full((batch, classes), smoothing / classes)
    q[np.arange(batch), labels] += 1 - smoothing
    assert float(loss) == pytest.approx(-(q * logp).sum(-1).mean(), rel=1e-12)
    assert_small(grad_errors(lambda logits: cross_entropy(logits, labels, smoothing)[0], {"logits": logits}, {"logits": dlogits}))


def test_cross_entropy_rejects_bad_smoothing():
    with pytest.raises(ValueError, match="smoothing"):
        cross_entropy(np.zeros((2, 3)), np.array([0, 1]), 1.0)
