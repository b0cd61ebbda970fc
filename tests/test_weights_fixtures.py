"""Checkpoints made by the official models (tests/data/weights/, benchmarks/make_weight_fixtures.py)
load without PyTorch and give the logits PyTorch recorded: float32 to 1e-5, float16 to 2e-2.

Also: every file converts to every format and back without changing a bit, CRATE-alpha's weights
in big_vision's JAX layout (written here from the port's state dict) give the same logits, and a
checkpoint runs at another image size with the position embedding PyTorch's bicubic interpolation
gives.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from whitebox.models import crate, crate_alpha
from whitebox.weights.big_vision import from_big_vision, is_big_vision, torch_state_dict_from_big_vision
from whitebox.weights.formats import load_state_dict, read_weights, save_state_dict
from whitebox.weights.load import convert, load_model_weights, model_of

FIXTURES = Path(__file__).parent / "data" / "weights"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
SIZE = dict(image_size=8, patch_size=4, channels=3, num_classes=3, dim=8, depth=2, heads=2, dim_head=4)
CONFIGS = {"crate": crate.Config(**SIZE), "crate-alpha": crate_alpha.Config(**SIZE)}
IMAGES = np.array(EXPECTED["images"], np.float32)
FILES = {
    "crate_state_dict.pth": ("crate", 1e-5, ((), None)),
    "crate_training.pth.tar": ("crate", 1e-5, (("state_dict",), "module.")),
    "crate_demo_fp16.pth": ("crate", 2e-2, (("model",), None)),
    "crate_alpha_state_dict.pth": ("crate-alpha", 1e-5, ((), None)),
    "crate_alpha.safetensors": ("crate-alpha", 1e-5, ((), None)),
}


def logits_of(params, cfg, images=IMAGES):
    logits, _ = model_of(cfg).forward(params, images, cfg)
    assert np.all(np.isfinite(logits))
    return logits


@pytest.mark.parametrize("name", FILES)
def test_fixture_gives_the_official_logits(name):
    model, tolerance, (unwrapped, stripped) = FILES[name]
    weights = read_weights(FIXTURES / name)
    assert (weights.unwrapped, weights.stripped) == (unwrapped, stripped)
    logits = logits_of(load_model_weights(FIXTURES / name, CONFIGS[model]), CONFIGS[model])
    np.testing.assert_allclose(logits, EXPECTED["logits"][name], rtol=0, atol=tolerance)


def test_training_checkpoint_skips_optimizer_and_counters():
    assert read_weights(FIXTURES / "crate_training.pth.tar").skipped == \
        ("epoch", "arch", "best_acc1", "optimizer", "scheduler")


def test_float16_weights_keep_their_dtype_when_asked():
    params = load_model_weights(FIXTURES / "crate_demo_fp16.pth", CONFIGS["crate"], dtype=None)
    assert {p.dtype for p in params.values()} == {np.dtype(np.float16)}


def test_views_dtypes_and_bfloat16_from_torch():
    state = load_state_dict(FIXTURES / "tensors.pth")
    assert list(state) == list(EXPECTED["tensors"])
    for name, spec in EXPECTED["tensors"].items():
        dtype = "float32" if spec["dtype"] == "bfloat16" else spec["dtype"]
        assert state[name].dtype == np.dtype(dtype) and list(state[name].shape) == spec["shape"], name
        np.testing.assert_array_equal(state[name].ravel(), np.array(spec["values"], dtype), err_msg=name)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz"])
@pytest.mark.parametrize("name", FILES)
def test_convert_to_every_format_and_back_is_bit_exact(tmp_path, name, suffix):
    cfg = CONFIGS[FILES[name][0]]
    out = convert(FIXTURES / name, tmp_path / f"converted{suffix}", cfg)
    again = convert(out, tmp_path / f"again{suffix}", cfg)
    original = load_model_weights(FIXTURES / name, cfg, dtype=None)
    for path in (out, again):
        converted = load_model_weights(path, cfg, dtype=None)
        assert all(converted[k].dtype == v.dtype and converted[k].tobytes() == v.tobytes() for k, v in original.items())
    assert read_weights(out).unwrapped == ()  # the output is a plain state dict under the official names


def test_larger_images_get_the_bicubic_position_embedding_and_the_official_logits():
    cfg = CONFIGS["crate"].replace(image_size=12)  # a 3×3 grid, the checkpoint's is 2×2
    params = load_model_weights(FIXTURES / "crate_state_dict.pth", cfg)
    np.testing.assert_allclose(params["pos_embedding"], EXPECTED["resized_pos_embedding"], rtol=0, atol=1e-6)
    logits = logits_of(params, cfg, np.array(EXPECTED["larger_images"], np.float32))
    np.testing.assert_allclose(logits, EXPECTED["larger_logits"], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------- big_vision


def big_vision_layout(sd: dict, cfg, *, split_heads: bool) -> dict:
    """The port's state dict laid out as the JAX model's ``.npz`` (flax kernels ``K = Wᵀ``, HWIO conv)."""
    H, p, d = cfg.heads, cfg.dim_head, cfg.dim
    out = {
        "params/embedding/kernel": sd["conv1.weight"].transpose(2, 3, 1, 0),  # (d, C, P, P) -> (P, P, C, d)
        "params/embedding/bias": sd["conv1.bias"],
        "params/cls": sd["cls_token"],
        "params/pos_embedding": sd["pos_embedding"],
        "params/encoder_norm/scale": sd["mlp_head.0.weight"],
        "params/encoder_norm/bias": sd["mlp_head.0.bias"],
        "params/head/kernel": sd["mlp_head.1.weight"].T,
        "params/head/bias": sd["mlp_head.1.bias"],
        "opt/step": np.array(10),  # optimiser state beside the parameters, to be left out
    }
    for i in range(cfg.depth):
        jax, torch = f"params/Transformer/encoderblock_{i}/", f"transformer.layers.{i}."
        attention = jax + "MultiHeadDotProductSubspaceAttention_0/"
        proj, to_out = sd[torch + "0.fn.qkv.weight"].T, sd[torch + "0.fn.to_out.0.weight"].T  # (d, Hp), (Hp, d)
        out[attention + "proj/kernel"] = proj.reshape(d, H, p) if split_heads else proj
        out[attention + "out/kernel"] = to_out.reshape(H, p, d) if split_heads else to_out
        for j in (0, 1):
            out[jax + f"LayerNorm_{j}/scale"] = sd[torch + f"{j}.norm.weight"]
            out[jax + f"LayerNorm_{j}/bias"] = sd[torch + f"{j}.norm.bias"]
        out[jax + "OvercompleteISTABlock_0/D"] = sd[torch + "1.fn.D"]
        out[jax + "OvercompleteISTABlock_0/D1"] = sd[torch + "1.fn.D1"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


@pytest.mark.parametrize("split_heads", [True, False])
def test_big_vision_npz_gives_the_official_logits(tmp_path, split_heads):
    cfg = CONFIGS["crate-alpha"]
    sd = load_state_dict(FIXTURES / "crate_alpha_state_dict.pth")
    path = save_state_dict(big_vision_layout(sd, cfg, split_heads=split_heads), tmp_path / "crate_alpha_jax.npz")
    assert is_big_vision(load_state_dict(path)) and not is_big_vision(sd)
    assert {k: v.tobytes() for k, v in torch_state_dict_from_big_vision(load_state_dict(path), cfg).items()} == \
        {k: v.tobytes() for k, v in sd.items()}
    logits = logits_of(load_model_weights(path, cfg), cfg)
    np.testing.assert_allclose(logits, EXPECTED["logits"]["crate_alpha_state_dict.pth"], rtol=0, atol=1e-5)


def test_big_vision_mismatches_name_the_key():
    cfg = CONFIGS["crate-alpha"]
    layout = big_vision_layout(load_state_dict(FIXTURES / "crate_alpha_state_dict.pth"), cfg, split_heads=True)
    missing = {k: v for k, v in layout.items() if not k.endswith("encoderblock_1/LayerNorm_1/bias")}
    with pytest.raises(ValueError, match="lack 'Transformer/encoderblock_1/LayerNorm_1/bias'"):
        from_big_vision(missing, cfg)
    with pytest.raises(ValueError, match="does not use.*encoderblock_1"):
        from_big_vision(layout, cfg.replace(depth=1))
    with pytest.raises(ValueError, match="shape"):
        from_big_vision(layout, cfg.replace(num_classes=4))


def test_big_vision_weights_are_not_loaded_into_crate(tmp_path):
    cfg = CONFIGS["crate-alpha"]
    layout = big_vision_layout(load_state_dict(FIXTURES / "crate_alpha_state_dict.pth"), cfg, split_heads=True)
    path = save_state_dict(layout, tmp_path / "jax.npz")
    with pytest.raises(ValueError, match="CRATE-alpha's"):
        load_model_weights(path, CONFIGS["crate"])


def test_wrong_model_or_config_is_refused_by_name():
    with pytest.raises(ValueError, match="missing"):
        load_model_weights(FIXTURES / "crate_state_dict.pth", CONFIGS["crate-alpha"])
    with pytest.raises(ValueError, match="cfg must be the Config of one of the models"):
        load_model_weights(FIXTURES / "crate_state_dict.pth", SIZE)
