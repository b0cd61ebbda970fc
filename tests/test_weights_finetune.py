"""whitebox.weights.finetune: backbone kept bit for bit, head re-initialised, positions resized."""

from pathlib import Path

import numpy as np
import pytest

from whitebox.models import crate, crate_alpha
from whitebox.weights.finetune import HEAD_NAMES, finetuning_params_from_file, params_for_finetuning
from whitebox.weights.load import load_model_weights
from whitebox.weights.resize import resize_pos_embedding

SIZE = dict(image_size=8, patch_size=4, channels=3, num_classes=3, dim=8, depth=2, heads=2, dim_head=4)


@pytest.mark.parametrize("model", [crate, crate_alpha])
def test_new_head_new_grid_same_backbone(model):
    old_cfg = model.Config(**SIZE)
    new_cfg = old_cfg.replace(num_classes=5, image_size=12)
    params = model.init(old_cfg, seed=1)
    new = params_for_finetuning(params, old_cfg, new_cfg, seed=7)
    assert set(new) == set(model.shapes(new_cfg))
    assert all(new[k].shape == s for k, s in model.shapes(new_cfg).items())
    fresh = model.init(new_cfg, seed=7)
    for name in new:
        if name in HEAD_NAMES:
            np.testing.assert_array_equal(new[name], fresh[name], err_msg=name)
        elif name == "pos_embedding":
            np.testing.assert_array_equal(new[name], resize_pos_embedding(params[name], (3, 3)))
        else:
            assert new[name].tobytes() == params[name].tobytes(), name
    assert all(v.dtype == np.float32 for v in new.values())
    logits, _ = model.forward(new, np.random.default_rng(0).standard_normal((2, 3, 12, 12), np.float32), new_cfg)
    assert logits.shape == (2, 5) and np.all(np.isfinite(logits))


def test_head_is_reinitialised_even_for_the_same_classes():
    cfg = crate.Config(**SIZE)
    params = crate.init(cfg, seed=1)
    new = params_for_finetuning(params, cfg, cfg, seed=2)
    assert not np.array_equal(new["head.weight"], params["head.weight"])
    np.testing.assert_array_equal(new["pos_embedding"], params["pos_embedding"])


@pytest.mark.parametrize("change, message", [
    (dict(patch_size=2), r"embed.norm_in.weight has shape \(48,\) under old_cfg but \(12,\)"),
    (dict(depth=3), "other parameters"),
    (dict(dim=12, dim_head=6), "has shape"),
])
def test_backbone_changes_are_refused_by_name(change, message):
    cfg = crate.Config(**SIZE)
    with pytest.raises(ValueError, match=message):
        params_for_finetuning(crate.init(cfg), cfg, cfg.replace(**change))


def test_mismatched_models_and_params_are_refused():
    cfg = crate.Config(**SIZE)
    with pytest.raises(ValueError, match="same model"):
        params_for_finetuning(crate.init(cfg), cfg, crate_alpha.Config(**SIZE))
    with pytest.raises(ValueError, match="do not match old_cfg"):
        params_for_finetuning(crate.init(cfg.replace(depth=1)), cfg, cfg)


@pytest.mark.parametrize("name, model", [("crate_training.pth.tar", crate), ("crate_alpha.safetensors", crate_alpha)])
def test_finetuning_from_a_file_takes_any_head(name, model):
    path = Path(__file__).parent / "data" / "weights" / name
    cfg = model.Config(**{**SIZE, "num_classes": 10, "image_size": 12})
    new = finetuning_params_from_file(path, cfg, seed=4)
    loaded = load_model_weights(path, cfg.replace(num_classes=3))  # the file's own head: 3 classes
    fresh = model.init(cfg, seed=4)
    assert set(new) == set(model.shapes(cfg))
    for key in new:
        expected = fresh[key] if key in HEAD_NAMES else loaded[key]
        assert new[key].dtype == np.float32 and new[key].tobytes() == expected.tobytes(), key
