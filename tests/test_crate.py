"""The CRATE classifier: whole-model gradients, presets, converters, bad input."""

import numpy as np
import pytest

from whitebox.models import crate

SMALL = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=6, depth=2, heads=2, dim_head=3)


def test_forward_matches_the_layer_equations():
    """Recompute one CRATE forward from the equations of docs/reference.md §5 with plain NumPy."""
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



def test_state_dict_uses_the_official_names():
    sd = crate.to_torch_state_dict(crate.init(SMALL, seed=2), SMALL)
    assert sd["transformer.layers.1.0.fn.qkv.weight"].shape == (6, 6)
    assert sd["transformer.layers.0.1.fn.weight"].shape == (6, 6)
    assert sd["to_patch_embedding.2.weight"].shape == (6, 32)
    assert sd["mlp_head.1.weight"].shape == (3, 6)
