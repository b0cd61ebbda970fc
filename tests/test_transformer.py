"""The standard transformer's pieces: GELU, multi-head self-attention and the pre-norm block
(forward against independent references, backward against central differences in float64)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.blocks import stack, transformer_layer
from whitebox.blocks.params import draw
from whitebox.blocks.transformer_layer import TransformerLayerSpec
from whitebox.gradcheck import vjp_errors
from whitebox.layers.activations import gelu_backward, gelu_forward
from whitebox.layers.mhsa import mhsa_backward, mhsa_forward
from whitebox.layers.mssa import mssa_forward

TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)


def assert_small(errors):
    assert max(errors.values()) < TOL, errors


def test_gelu_is_the_tanh_approximation_within_5e_4_of_the_exact_gelu():
    x = np.linspace(-8, 8, 2001)
    out, _ = gelu_forward(x.copy())
    u = np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)
    np.testing.assert_allclose(out, 0.5 * x * (1 + np.tanh(u)), rtol=1e-13, atol=1e-15)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert 1e-4 < np.abs(out - exact).max() < 5e-4  # an approximation, and a close one


@given(seed=seeds, n=st.integers(1, 30), scale=st.floats(0.1, 6))
def test_gelu_backward(seed, n, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((2, n))
    out, cache = gelu_forward(x)
    dy = rng.standard_normal(out.shape)
    assert_small(vjp_errors(lambda x: gelu_forward(x)[0], {"x": x}, dy, {"x": gelu_backward(dy, cache)}))


def reference_mhsa(x, W_in, b_in, W_out, b_out, heads, causal):
    """A per-head loop over explicit W_q, W_k, W_v, written independently of the batched kernel."""
    B, N, _ = x.shape
    inner = W_in.shape[0] // 3
    p = inner // heads
    Wq, Wk, Wv = np.split(W_in, 3)
    bq, bk, bv = np.split(b_in, 3)
    outs = []
    for h in range(heads):
        rows = slice(h * p, (h + 1) * p)
        q, k, v = (x @ W[rows].T + b[rows] for W, b in ((Wq, bq), (Wk, bk), (Wv, bv)))  # (B, N, p)
        s = q @ k.swapaxes(-1, -2) / np.sqrt(p)
        if causal:
            s = np.where(np.tril(np.ones((N, N), bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        outs.append((a / a.sum(-1, keepdims=True)) @ v)
    return np.concatenate(outs, axis=-1) @ W_out.T + b_out


@given(seed=seeds, batch=st.integers(1, 3), n=st.integers(1, 6), d=st.integers(1, 6),
       heads=st.integers(1, 3), p=st.integers(1, 4), causal=st.booleans())
def test_mhsa(seed, batch, n, d, heads, p, causal):
    rng = np.random.default_rng(seed)
    inner = heads * p
    inputs = {"x": rng.standard_normal((batch, n, d)), "W_in": rng.standard_normal((3 * inner, d)) / np.sqrt(d),
              "b_in": rng.standard_normal(3 * inner), "W_out": rng.standard_normal((d, inner)),
              "b_out": rng.standard_normal(d)}

    def run(**k):
        return mhsa_forward(k["x"], k["W_in"], k["b_in"], k["W_out"], k["b_out"], heads=heads, causal=causal)

    y, cache = run(**inputs)
    np.testing.assert_allclose(y, reference_mhsa(*inputs.values(), heads, causal), atol=1e-10)
    if causal:  # nothing above the diagonal
        assert not np.triu(cache.attn, k=1).any()
    dy = rng.standard_normal(y.shape)
    grads = dict(zip(inputs, mhsa_backward(dy, cache)))
    assert_small(vjp_errors(lambda **k: run(**k)[0], inputs, dy, grads))


@given(seed=seeds, n=st.integers(1, 6), d=st.integers(1, 6), heads=st.integers(1, 3), p=st.integers(1, 4),
       causal=st.booleans())
def test_mssa_is_mhsa_with_tied_query_key_value_maps_and_no_input_bias(seed, n, d, heads, p, causal):
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal((2, n, d)), rng.standard_normal((heads * p, d)) / np.sqrt(d)
    W_out, b_out = rng.standard_normal((d, heads * p)), rng.standard_normal(d)
    tied, _ = mhsa_forward(x, np.concatenate([W, W, W]), np.zeros(3 * heads * p), W_out, b_out, heads=heads,
                           causal=causal)
    np.testing.assert_allclose(tied, mssa_forward(x, W, W_out, b_out, heads=heads, causal=causal)[0], atol=1e-12)


def block_params(spec, seed):
    """The block's parameters, LayerNorm gains and biases perturbed so that none is trivially 1 or 0."""
    rng = np.random.default_rng(seed)
    params = draw(transformer_layer.shapes(spec), seed, dtype=np.float64)
    return {k: v + (0.3 * rng.standard_normal(v.shape) if "norm" in k else 0) for k, v in params.items()}


@given(seed=seeds, n=st.integers(1, 5), d=st.integers(3, 6), heads=st.integers(1, 2), p=st.integers(1, 3),
       ratio=st.integers(1, 4), causal=st.booleans())
def test_transformer_block_backward(seed, n, d, heads, p, ratio, causal):
    spec = TransformerLayerSpec(d, heads, p, ratio, causal=causal)
    params = block_params(spec, seed % 1000)
    z = np.random.default_rng(seed).standard_normal((2, n, d))
    out, cache = transformer_layer.forward(z, params, spec)
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape)
    dz, grads = transformer_layer.backward(dout, cache)
    assert set(grads) == set(params)

    def f(z, **p):
        return transformer_layer.forward(z, p, spec)[0]

    assert_small(vjp_errors(f, {"z": z, **params}, dout, {"z": dz, **grads}))


def test_transformer_block_features_have_the_stack_protocol_shapes():
    spec = TransformerLayerSpec(8, 2, 3, mlp_ratio=4)
    params = draw(stack.shapes(transformer_layer, spec, 2), 0, dtype=np.float64)
    z = np.random.default_rng(0).standard_normal((3, 5, 8))
    out, cache = stack.forward(z, params, transformer_layer, spec, 2, keep=True)
    features = stack.layer_features(cache)
    assert [f.shape for f in features["codes"]] == [(3, 5, 32)] * 2  # the GELU activations, r d wide
    assert [f.shape for f in features["attention"]] == [(3, 2, 5, 5)] * 2
    np.testing.assert_allclose(features["attention"][0].sum(-1), 1.0)
    for key in ("attention_inputs", "sparse_inputs"):  # LayerNorm outputs: zero mean per token
        np.testing.assert_allclose(features[key][1].mean(-1), 0.0, atol=1e-12)
    np.testing.assert_array_equal(features["outputs"][1], out)


def test_transformer_block_matches_a_torch_module():
    torch = pytest.importorskip("torch")
    d, heads, p, ratio, n = 8, 2, 4, 4, 5  # nn.MultiheadAttention needs heads · p = d
    for causal in (False, True):
        spec = TransformerLayerSpec(d, heads, p, ratio, causal=causal)
        params = block_params(spec, 3)
        z = np.random.default_rng(1).standard_normal((2, n, d))
        ours, cache = transformer_layer.forward(z, params, spec)
        t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        attn = torch.nn.MultiheadAttention(d, heads, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            attn.in_proj_weight.copy_(t["attn.qkv.weight"])
            attn.in_proj_bias.copy_(t["attn.qkv.bias"])
            attn.out_proj.weight.copy_(t["attn.out.weight"])
            attn.out_proj.bias.copy_(t["attn.out.bias"])
        zt = torch.tensor(z, requires_grad=True)
        ln = torch.nn.functional.layer_norm
        y = ln(zt, (d,), t["attn_norm.weight"], t["attn_norm.bias"])
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), 1) if causal else None
        half = zt + attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        h = ln(half, (d,), t["mlp_norm.weight"], t["mlp_norm.bias"]) @ t["mlp.fc1.weight"].T + t["mlp.fc1.bias"]
        theirs = half + torch.nn.functional.gelu(h, approximate="tanh") @ t["mlp.fc2.weight"].T + t["mlp.fc2.bias"]
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
        dout = np.random.default_rng(2).standard_normal(ours.shape)
        theirs.backward(torch.tensor(dout))
        dz, grads = transformer_layer.backward(dout, cache)
        np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["mlp.fc1.weight"], t["mlp.fc1.weight"].grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["attn.qkv.weight"], attn.in_proj_weight.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_vit_and_gpt_run_on_the_strict_device_as_on_numpy_and_a_vit_step_never_waits_on_the_host():
    from strict_device import strict

    from whitebox import backend
    from whitebox.models import crate, crate_lm

    rng = np.random.default_rng(0)
    vit = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=8, depth=2, heads=2, dim_head=4,
                       block="transformer")
    gpt = crate_lm.Config(vocab_size=7, block_size=6, dim=8, depth=2, heads=2, dim_head=4, block="transformer")
    cases = [(crate, vit, rng.standard_normal((2, 2, 8, 8))), (crate_lm, gpt, rng.integers(0, 7, (2, 5)))]
    for model, cfg, x in cases:
        params = model.init(cfg, seed=1, dtype=np.float64)
        out, cache = model.forward(params, x, cfg)
        dout = rng.standard_normal(out.shape)
        grads = model.backward(dout, cache)
        with backend.use_device_module(strict):
            device_params = model.init(cfg, seed=1, dtype=np.float64, device="gpu")
            x_device, dout_device = strict.asarray(x), strict.asarray(dout)
            with strict.counting() as counts:
                device_out, device_cache = model.forward(device_params, x_device, cfg)
                device_grads = model.backward(dout_device, device_cache)
        np.testing.assert_allclose(device_out.get(), out, rtol=1e-12, atol=1e-12)
        for name, g in grads.items():
            np.testing.assert_allclose(device_grads[name].get(), g, rtol=1e-10, atol=1e-12, err_msg=name)
        if model is crate:
            assert counts.syncs == 0, counts
