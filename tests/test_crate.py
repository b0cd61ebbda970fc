"""The CRATE classifier: whole-model gradients, presets, converters, bad input."""

import numpy as np
import pytest

from whitebox.gradcheck import entry_errors, grad_errors
from whitebox.models import crate

SMALL = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=6, depth=2, heads=2, dim_head=3)


def ista_margin(cache):
    """The smallest |pre-activation| of any ISTA unit: finite differences need it away from 0."""
    margins = []
    for layer in cache.layers:
        x, r, D, _, step = layer.ista
        pre = x + step * (r @ D) - step * cache.cfg.ista_lambd
        margins.append(np.abs(pre).min())
    return min(margins)


@pytest.mark.parametrize(
    "cfg",
    [SMALL, SMALL.replace(pool="mean"), SMALL.replace(mssa="tied"), SMALL.replace(heads=1, dim_head=6)],
    ids=["published-cls", "published-mean", "tied", "no-out-projection"],
)
def test_whole_model_gradient_of_every_parameter(cfg):
    rng = np.random.default_rng(1)
    params = crate.init(cfg, seed=3, dtype=np.float64)
    # random LayerNorm affines, so their gradients are exercised away from the (1, 0) init
    for k in params:
        if k.endswith("norm.weight") or "_norm." in k or k.startswith("embed.norm"):
            params[k] = params[k] + 0.3 * rng.standard_normal(params[k].shape)
    images = rng.standard_normal((3, cfg.channels, cfg.image_size, cfg.image_size))
    dlogits = rng.standard_normal((3, cfg.num_classes))
    logits, cache = crate.forward(params, images, cfg)
    assert ista_margin(cache) > 1e-4
    grads = crate.backward(dlogits, cache)
    assert set(grads) == set(params)

    def loss(**p):
        return float(np.vdot(dlogits, crate.forward(p, images, cfg)[0]))

    errors = grad_errors(loss, params, grads, directions=2)
    errors_entries = entry_errors(loss, params, grads, entries=2)
    worst = max(max(errors.values()), max(errors_entries.values()))
    assert worst < 1e-6, {k: v for k, v in {**errors}.items() if v > 1e-7}


def test_forward_matches_the_layer_equations():
    """Recompute one CRATE forward from the equations of REFERENCE §5 with plain NumPy."""
    cfg = SMALL
    params = crate.init(cfg, seed=0, dtype=np.float64)
    images = np.random.default_rng(0).standard_normal((2, 2, 8, 8))

    def ln(x, w, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b

    P = images.reshape(2, 2, 2, 4, 2, 4).transpose(0, 2, 4, 3, 5, 1).reshape(2, 4, 32)
    x = ln(P, params["embed.norm_in.weight"], params["embed.norm_in.bias"])
    x = ln(x @ params["embed.proj.weight"].T + params["embed.proj.bias"], params["embed.norm_out.weight"], params["embed.norm_out.bias"])
    z = np.concatenate([np.broadcast_to(params["cls_token"], (2, 1, 6)), x], axis=1) + params["pos_embedding"]
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        y = ln(z, params[pre + "attn_norm.weight"], params[pre + "attn_norm.bias"])
        qkv = y @ params[pre + "attn.qkv"].T
        heads = []
        for h in range(cfg.heads):
            w = qkv[..., h * 3:(h + 1) * 3]
            s = w @ w.swapaxes(-1, -2) * 3**-0.5
            a = np.exp(s - s.max(-1, keepdims=True))
            heads.append(a / a.sum(-1, keepdims=True) @ w)
        z = z + np.concatenate(heads, -1) @ params[pre + "attn.out.weight"].T + params[pre + "attn.out.bias"]
        y = ln(z, params[pre + "ista_norm.weight"], params[pre + "ista_norm.bias"])
        W = params[pre + "ista.D"]
        z = np.maximum(y + 0.1 * (y @ W - (y @ W.T) @ W) - 0.1 * 0.1, 0)
    h = ln(z[:, 0], params["head_norm.weight"], params["head_norm.bias"])
    expected = h @ params["head.weight"].T + params["head.bias"]
    np.testing.assert_allclose(crate.forward(params, images, cfg)[0], expected, atol=1e-12)


def test_float32_agrees_with_float64():
    cfg = SMALL.replace(depth=3)
    p64 = crate.init(cfg, seed=0, dtype=np.float64)
    p32 = crate.init(cfg, seed=0, dtype=np.float32)
    images = np.random.default_rng(0).standard_normal((4, 2, 8, 8))
    l64, c64 = crate.forward(p64, images, cfg)
    l32, c32 = crate.forward(p32, images.astype(np.float32), cfg)
    assert l32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-4, atol=1e-5)
    d = np.random.default_rng(1).standard_normal(l64.shape)
    g64, g32 = crate.backward(d, c64), crate.backward(d.astype(np.float32), c32)
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=2e-4 * np.abs(g64[k]).max(), err_msg=k)


def test_same_seed_same_parameters_and_different_seed_different():
    a, b, c = crate.init(SMALL, seed=5), crate.init(SMALL, seed=5), crate.init(SMALL, seed=6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["ista.D" if "ista.D" in a else "layers.0.ista.D"], c["layers.0.ista.D"])


def test_init_follows_the_published_initialisation():
    cfg = SMALL.replace(dim=64, heads=2, dim_head=32)
    p = crate.init(cfg, seed=0, dtype=np.float64)
    D = p["layers.0.ista.D"]
    assert np.abs(D).max() <= np.sqrt(6 / 64) and np.abs(D).max() > 0.9 * np.sqrt(6 / 64)
    assert np.abs(p["layers.0.attn.qkv"]).max() <= 1 / np.sqrt(64)
    assert abs(p["pos_embedding"].std() - 1) < 0.1
    assert np.array_equal(p["layers.0.attn_norm.weight"], np.ones(64))


@pytest.mark.parametrize(
    "name, count", [("tiny", 6_090_856), ("small", 13_116_328), ("base", 22_796_008), ("large", 77_641_192)]
)
def test_preset_parameter_counts_match_the_official_code(name, count):
    assert crate.num_params(crate.PRESETS[name]()) == count


def test_reference_config_parameter_count():
    cfg = crate.Config(image_size=32, patch_size=4, channels=3, num_classes=10, dim=192, depth=12, heads=3, dim_head=64)
    assert crate.num_params(cfg) == 1_363_498
    assert sum(v.size for v in crate.init(cfg).values()) == 1_363_498


def test_state_dict_round_trip_uses_official_names():
    params = crate.init(SMALL, seed=2)
    sd = crate.to_torch_state_dict(params, SMALL)
    assert sd["transformer.layers.1.0.fn.qkv.weight"].shape == (6, 6)
    assert sd["transformer.layers.0.1.fn.weight"].shape == (6, 6)
    assert sd["to_patch_embedding.2.weight"].shape == (6, 32)
    assert sd["mlp_head.1.weight"].shape == (3, 6)
    back = crate.from_torch_state_dict(sd, SMALL)
    assert set(back) == set(params) and all(np.array_equal(back[k], params[k]) for k in params)


def test_state_dict_errors_name_the_entry():
    sd = crate.to_torch_state_dict(crate.init(SMALL), SMALL)
    bad = dict(sd)
    del bad["cls_token"]
    with pytest.raises(ValueError, match="cls_token"):
        crate.from_torch_state_dict(bad, SMALL)
    bad = dict(sd, cls_token=np.zeros((1, 1, 7)))
    with pytest.raises(ValueError, match="cls_token"):
        crate.from_torch_state_dict(bad, SMALL)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(image_size=10), "multiple of patch_size"),
        (dict(dim=0), "dim"),
        (dict(heads=2.5), "heads"),
        (dict(pool="max"), "pool"),
        (dict(mssa="exact"), "mssa"),
        (dict(ista_step=0), "ista_step"),
        (dict(ista_lambd=-1), "ista_lambd"),
    ],
)
def test_config_rejects_inconsistent_values(changes, match):
    with pytest.raises(ValueError, match=match):
        SMALL.replace(**changes)


def test_bad_images_raise_clear_errors():
    params = crate.init(SMALL)
    good = np.zeros((2, 2, 8, 8), np.float32)
    crate.forward(params, good, SMALL)
    with pytest.raises(ValueError, match="image_size"):
        crate.forward(params, np.zeros((2, 2, 16, 16), np.float32), SMALL)
    with pytest.raises(ValueError, match="channels"):
        crate.forward(params, np.zeros((2, 3, 8, 8), np.float32), SMALL)
    with pytest.raises(ValueError, match="images"):
        crate.forward(params, np.zeros((2, 8, 8), np.float32), SMALL)
    with pytest.raises(TypeError, match="images"):
        crate.forward(params, np.zeros((2, 2, 8, 8), np.uint8), SMALL)
    with pytest.raises(TypeError, match="dtype"):
        crate.forward(params, good.astype(np.float64), SMALL)
    with pytest.raises(ValueError, match="layers.0.ista.D"):
        crate.forward({**params, "layers.0.ista.D": np.zeros((5, 5), np.float32)}, good, SMALL)


def test_layer_features_expose_every_layer():
    params = crate.init(SMALL)
    images = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    _, cache = crate.forward(params, images, SMALL, keep_features=True)
    f = crate.layer_features(cache)
    assert len(f["inputs"]) == len(f["midpoints"]) == len(f["outputs"]) == SMALL.depth
    assert f["attention"][0].shape == (2, 2, 5, 5)
    np.testing.assert_allclose(f["attention"][1].sum(-1), 1, rtol=1e-5)
    np.testing.assert_array_equal(f["inputs"][1], f["outputs"][0])
    with pytest.raises(ValueError, match="keep_features"):
        crate.layer_features(crate.forward(params, images, SMALL)[1])
