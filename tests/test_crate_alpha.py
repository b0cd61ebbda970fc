"""The CRATE-alpha classifier: the four ablation variants, gradients, presets, converters, bad input."""

import numpy as np
import pytest

from whitebox.layers.ista import ista_forward
from whitebox.layers.layernorm import layernorm_forward
from whitebox.models import crate_alpha

SMALL = crate_alpha.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=6, depth=2, heads=2,
                           dim_head=3, overcomplete=2)
VARIANTS = crate_alpha.ablation_configs(SMALL)


def reference_forward(params, images, cfg):
    """One forward from the equations, written like the published port (einsums, eq. 9 as is)."""

    def ln(x, w, b, eps):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b

    B, C, H, _ = images.shape
    g, p, d = H // cfg.patch_size, cfg.patch_size, cfg.dim
    x = np.einsum("bchpwq,dcpq->bhwd", images.reshape(B, C, g, p, g, p), params["embed.conv.weight"])
    x = x.reshape(B, g * g, d) + params["embed.conv.bias"]
    z = np.concatenate([np.broadcast_to(params["cls_token"], (B, 1, d)), x], axis=1) + params["pos_embedding"]
    eta, lam = cfg.ista_step, cfg.ista_lambd
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        y = ln(z, params[pre + "attn_norm.weight"], params[pre + "attn_norm.bias"], 1e-6)
        w = (y @ params[pre + "attn.qkv"].T).reshape(B, -1, cfg.heads, cfg.dim_head).transpose(0, 2, 1, 3)
        s = w @ w.swapaxes(-1, -2) * cfg.dim_head**-0.5
        a = np.exp(s - s.max(-1, keepdims=True))
        o = ((a / a.sum(-1, keepdims=True)) @ w).transpose(0, 2, 1, 3).reshape(B, -1, cfg.inner_dim)
        z = z + (o @ params[pre + "attn.out.weight"].T if cfg.project_out else o)
        y = ln(z, params[pre + "odl_norm.weight"], params[pre + "odl_norm.bias"], 1e-6)
        D = params[pre + "odl.D"]
        A = y if cfg.ista_start == "input" else np.zeros(y.shape[:-1] + (cfg.code_dim,))
        for _ in range(cfg.odl_steps):
            Dz = np.einsum("dp,nlp->nld", D, A)
            A = np.maximum(A - eta * np.einsum("pd,nlp->nld", D, Dz - y) - eta * lam, 0)
        D_hat = params[pre + "odl.D1"] if cfg.decoupled else D
        out = np.einsum("dp,nlp->nld", D_hat, A) if cfg.decode else A
        z = z + out if cfg.residual else out
    h = ln(z[:, 0], params["head_norm.weight"], params["head_norm.bias"], 1e-5)
    return h @ params["head.weight"].T + params["head.bias"]


@pytest.mark.parametrize("cfg", [*VARIANTS.values(), SMALL.replace(heads=1, dim_head=6)],
                         ids=[*VARIANTS, "no-out-projection"])
def test_forward_matches_the_layer_equations(cfg, perturbed):
    rng = np.random.default_rng(0)
    params = perturbed(crate_alpha.init(cfg, seed=0, dtype=np.float64), rng)
    images = rng.standard_normal((2, 2, 8, 8))
    np.testing.assert_allclose(crate_alpha.forward(params, images, cfg)[0], reference_forward(params, images, cfg),
                               atol=1e-12)


def test_the_crate_variant_sparse_block_is_crate_ista_exactly():
    cfg = VARIANTS["crate"]
    params = crate_alpha.init(cfg, seed=0, dtype=np.float64)
    images = np.random.default_rng(0).standard_normal((2, 2, 8, 8))
    _, cache = crate_alpha.forward(params, images, cfg, keep_features=True)
    f = crate_alpha.layer_features(cache)
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        y, _ = layernorm_forward(f["midpoints"][i], params[pre + "odl_norm.weight"], params[pre + "odl_norm.bias"],
                                 cfg.norm_eps)
        expected, _ = ista_forward(y, params[pre + "odl.D"], cfg.ista_step, cfg.ista_lambd)
        np.testing.assert_allclose(f["outputs"][i], expected, rtol=1e-12, atol=1e-15)
        if i + 1 < cfg.depth:
            np.testing.assert_array_equal(f["inputs"][i + 1], f["outputs"][i])  # no decoder, no residual


def test_ablation_configs_switch_only_the_sparse_block():
    v = VARIANTS
    assert [v[k].overcomplete for k in v] == [1, 2, 2, 2]
    assert [v[k].decoupled for k in v] == [False, False, True, True]
    assert [v[k].residual for k in v] == [False, False, False, True]
    assert v["+O+D+R"] == SMALL  # the defaults are CRATE-alpha
    assert (v["crate"].odl_steps, v["crate"].ista_start, v["crate"].decode) == (1, "input", False)
    shapes = {k: crate_alpha.shapes(c) for k, c in v.items()}
    assert shapes["crate"]["layers.0.odl.D"] == (6, 6) and "layers.0.odl.D1" not in shapes["+O"]
    assert shapes["+O+D"]["layers.0.odl.D1"] == (6, 12)
    with pytest.raises(ValueError, match="overcomplete"):
        crate_alpha.ablation_configs(SMALL.replace(overcomplete=1))


def test_init_follows_the_published_port():
    cfg = SMALL.replace(dim=64, heads=2, dim_head=32, channels=3, overcomplete=4)
    p = crate_alpha.init(cfg, seed=0, dtype=np.float64)
    bound = np.sqrt(6 / (4 * 64))  # kaiming_uniform_ of a (d, Cd) tensor: fan_in = Cd
    for name in ("layers.0.odl.D", "layers.0.odl.D1"):
        assert p[name].shape == (64, 256)
        assert 0.9 * bound < np.abs(p[name]).max() <= bound
    conv_bound = 1 / np.sqrt(3 * 4 * 4)  # Conv2d default: U(±1/√fan_in), fan_in = C p²
    assert 0.9 * conv_bound < np.abs(p["embed.conv.weight"]).max() <= conv_bound
    assert np.abs(p["embed.conv.bias"]).max() <= conv_bound
    assert np.abs(p["layers.0.attn.qkv"]).max() <= 1 / np.sqrt(64)
    assert abs(p["pos_embedding"].std() - 1) < 0.1
    assert "layers.0.attn.out.bias" not in p  # CRATE-alpha's output projection has no bias
    assert "layers.0.odl.D1" not in crate_alpha.init(VARIANTS["+O"])


# num_params at image 224, patch 16, 1000 classes. Table 4 of the paper: 4.8M, 41.0M, 72.3M, 253.8M, 526.8M.
PRESET_COUNTS = {"tiny": 4_811_944, "small": 40_975_912, "base": 72_328_936, "large": 253_773_800,
                 "huge": 526_973_160}


@pytest.mark.parametrize("name", list(PRESET_COUNTS))
def test_preset_parameter_counts(name):
    cfg = crate_alpha.PRESETS[name]()
    assert (cfg.image_size, cfg.patch_size, cfg.num_classes, cfg.dim_head) == (224, 16, 1000, cfg.dim // cfg.heads)
    assert crate_alpha.num_params(cfg) == PRESET_COUNTS[name]


def test_preset_counts_against_table_4():
    """Tiny to Large round to Table 4 at patch 16; Huge's 526.8M is H/14 (the paper's H model is H/14)."""
    table = {"tiny": 4.8e6, "small": 41.0e6, "base": 72.3e6, "large": 253.8e6}
    for name, published in table.items():
        assert abs(crate_alpha.num_params(crate_alpha.PRESETS[name]()) - published) < 0.05e6, name
    assert abs(crate_alpha.num_params(crate_alpha.crate_alpha_base()) - 72.3e6) < 0.1e6
    assert crate_alpha.num_params(crate_alpha.crate_alpha_huge(patch_size=14)) == 526_819_560  # 526.8M


def test_state_dict_round_trip_uses_official_names():
    params = crate_alpha.init(SMALL, seed=2)
    sd = crate_alpha.to_torch_state_dict(params, SMALL)
    assert sd["conv1.weight"].shape == (6, 2, 4, 4) and sd["conv1.bias"].shape == (6,)
    assert sd["cls_token"].shape == (1, 1, 6) and sd["pos_embedding"].shape == (1, 5, 6)
    assert sd["transformer.layers.1.0.norm.weight"].shape == (6,)
    assert sd["transformer.layers.1.0.fn.qkv.weight"].shape == (6, 6)
    assert sd["transformer.layers.1.0.fn.to_out.0.weight"].shape == (6, 6)
    assert "transformer.layers.1.0.fn.to_out.0.bias" not in sd
    assert sd["transformer.layers.0.1.norm.bias"].shape == (6,)
    assert sd["transformer.layers.0.1.fn.D"].shape == sd["transformer.layers.0.1.fn.D1"].shape == (6, 12)
    assert sd["mlp_head.0.weight"].shape == (6,) and sd["mlp_head.1.weight"].shape == (3, 6)
    assert len(sd) == len(params) == 8 + 2 * 8
    back = crate_alpha.from_torch_state_dict(sd, SMALL)
    assert set(back) == set(params) and all(np.array_equal(back[k], params[k]) for k in params)
    tied = crate_alpha.to_torch_state_dict(crate_alpha.init(VARIANTS["+O"]), VARIANTS["+O"])
    assert "transformer.layers.0.1.fn.D1" not in tied and "transformer.layers.0.1.fn.D" in tied


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(image_size=10), "multiple of patch_size"),
        (dict(dim=0), "dim"),
        (dict(heads=2.5), "heads"),
        (dict(overcomplete=0), "overcomplete"),
        (dict(odl_steps=0), "odl_steps"),
        (dict(decoupled=1), "decoupled"),
        (dict(residual="yes"), "residual"),
        (dict(ista_start="ones"), "ista_start"),
        (dict(ista_start="input"), "ista_start"),
        (dict(decode=False, decoupled=False), "decode"),
        (dict(overcomplete=1, decode=False), "decoupled"),
        (dict(pool="max"), "pool"),
        (dict(ista_step=0), "ista_step"),
        (dict(ista_lambd=-1), "ista_lambd"),
        (dict(norm_eps=0), "norm_eps"),
    ],
)
def test_config_rejects_inconsistent_values(changes, match):
    with pytest.raises(ValueError, match=match):
        SMALL.replace(**changes)

