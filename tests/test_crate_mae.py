"""CRATE-MAE: the decoder layer, masking, the sin-cos embedding, whole-model gradients, the task."""

import numpy as np
import pytest

from whitebox.blocks import decoder_layer
from whitebox.blocks.attention import AttentionSpec
from whitebox.blocks.decoder_layer import DecoderLayerSpec
from whitebox.gradcheck import vjp_errors
from whitebox.layers.embedding import patchify
from whitebox.models import crate_mae

SMALL = crate_mae.Config(image_size=8, patch_size=2, channels=2, dim=8, depth=2, heads=2, dim_head=3,
                         decoder_dim=12, decoder_heads=2, decoder_dim_head=4)


def ln(x, w, b):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b


def reference_mssa(x, W_qkv, W_out, b_out, heads):
    B, N, _ = x.shape
    p = W_qkv.shape[0] // heads
    qkv = x @ W_qkv.T
    outs = []
    for h in range(heads):
        w = qkv[..., h * p:(h + 1) * p]
        s = w @ w.swapaxes(-1, -2) / np.sqrt(p)
        a = np.exp(s - s.max(-1, keepdims=True))
        outs.append(a / a.sum(-1, keepdims=True) @ w)
    return np.concatenate(outs, -1) @ W_out.T + b_out


SPEC = DecoderLayerSpec(AttentionSpec(dim=6, heads=2, dim_head=3))


def decoder_params(rng, d, inner):
    return {
        "linear_norm.weight": 1 + 0.3 * rng.standard_normal(d), "linear_norm.bias": 0.1 * rng.standard_normal(d),
        "linear.weight": rng.standard_normal((d, d)) / np.sqrt(d),
        "attn_norm.weight": 1 + 0.3 * rng.standard_normal(d), "attn_norm.bias": 0.1 * rng.standard_normal(d),
        "attn.qkv": rng.standard_normal((inner, d)) / np.sqrt(d),
        "attn.out.weight": rng.standard_normal((d, inner)) / np.sqrt(inner),
        "attn.out.bias": 0.1 * rng.standard_normal(d),
    }


def test_decoder_layer_is_linear_then_minus_mssa():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6))
    p = decoder_params(rng, 6, 2 * 3)
    y = ln(x, p["linear_norm.weight"], p["linear_norm.bias"]) @ p["linear.weight"].T  # no bias, no ReLU
    expected = y - reference_mssa(ln(y, p["attn_norm.weight"], p["attn_norm.bias"]), p["attn.qkv"],
                                  p["attn.out.weight"], p["attn.out.bias"], heads=2)
    out, _ = decoder_layer.forward(x, p, SPEC)
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_decoder_layer_backward(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, 6))
    p = decoder_params(rng, 6, 2 * 3)
    out, cache = decoder_layer.forward(x, p, SPEC)
    dout = rng.standard_normal(out.shape)
    dx, grads = decoder_layer.backward(dout, cache)
    assert set(grads) == set(p)
    f = lambda x, **q: decoder_layer.forward(x, q, SPEC)[0]  # noqa: E731
    errors = vjp_errors(f, {"x": x, **p}, dout, {"x": dx, **grads})
    assert max(errors.values()) < 1e-6, errors


def test_masking_is_seeded_and_keeps_a_quarter():
    cfg = crate_mae.Config(image_size=32, patch_size=4, dim=8, heads=2, dim_head=4, decoder_dim=8)
    assert cfg.num_patches == 64 and cfg.num_keep == 16  # int(64 · 0.25)
    a, b, c = (crate_mae.make_mask(cfg, 50, rng=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.keep, b.keep)
    np.testing.assert_array_equal(a.masked, b.masked)
    assert not np.array_equal(a.keep, c.keep)
    assert a.keep.shape == (50, 16) and a.masked.shape == (50, 48)
    for keep, masked in zip(a.keep, a.masked, strict=True):
        np.testing.assert_array_equal(np.sort(np.concatenate([keep, masked])), np.arange(64))
        assert np.all(np.diff(keep) > 0) and np.all(np.diff(masked) > 0)
    assert len({tuple(k) for k in a.keep}) == 50  # a different subset per image
    hidden = crate_mae.masked_positions(a, 64)
    assert hidden.shape == (50, 64) and (hidden.mean(axis=1) == 0.75).all()
    # every patch is equally likely to stay visible: 2000 masks, frequency 0.25 ± 5 std
    freq = np.zeros(64)
    for keep in crate_mae.make_mask(cfg, 2000, rng=0).keep:
        freq[keep] += 1
    assert np.abs(freq / 2000 - 0.25).max() < 5 * np.sqrt(0.25 * 0.75 / 2000)


def test_mask_ratio_sets_the_number_kept():
    assert SMALL.replace(mask_ratio=0.5).num_keep == 8
    assert SMALL.replace(mask_ratio=0.0).num_keep == 16
    assert crate_mae.make_mask(SMALL.replace(mask_ratio=0.9), 2, rng=0).keep.shape == (2, 1)


def mae_sincos_reference(dim, grid):
    """MAE's get_2d_sincos_pos_embed, transcribed (meshgrid(w, h); emb_h from grid[0])."""
    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.stack(np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64)), axis=0)
    g = g.reshape(2, 1, grid, grid)
    return np.concatenate([one_d(dim // 2, g[0]), one_d(dim // 2, g[1])], axis=1)


def test_sincos_matches_mae_and_has_its_properties():
    dim, grid = 16, 5
    emb = crate_mae.sincos_2d(dim, grid)
    np.testing.assert_allclose(emb, mae_sincos_reference(dim, grid), atol=1e-15)
    with_cls = crate_mae.sincos_2d(dim, grid, cls_token=True)
    assert with_cls.shape == (26, 16) and not with_cls[0].any()
    np.testing.assert_array_equal(with_cls[1:], emb)
    # position (0, 0): sin 0 = 0 and cos 0 = 1 on both axes
    np.testing.assert_array_equal(emb[0], np.tile(np.r_[np.zeros(4), np.ones(4)], 2))
    # each (sin, cos) pair lies on the unit circle: ‖e‖² = dim / 2 at every position
    np.testing.assert_allclose((emb**2).sum(axis=1), dim / 2)
    # translation invariance: ⟨e(p), e(p + δ)⟩ depends on the offset δ only
    def at(i, j):
        return emb[i * grid + j]
    for di, dj in [(1, 0), (0, 2), (1, 1), (2, -1)]:
        dots = [at(i, j) @ at(i + di, j + dj) for i in range(grid - 2) for j in range(1, grid - 2)]
        np.testing.assert_allclose(dots, dots[0], atol=1e-12)
    # distinct positions get distinct embeddings; the first half encodes the column (as in MAE)
    assert len({tuple(np.round(e, 12)) for e in emb}) == grid * grid
    np.testing.assert_allclose(at(0, 3)[8:], at(0, 0)[8:])
    with pytest.raises(ValueError, match="multiple of 4"):
        crate_mae.sincos_2d(6, 3)


def test_sincos_embedding_is_fixed_not_a_parameter():
    params = crate_mae.init(SMALL)
    assert not any("pos" in k for k in params)


def test_loss_counts_masked_patches_only():
    rng = np.random.default_rng(0)
    cfg = SMALL
    images = rng.standard_normal((2, 2, 8, 8))
    mask = crate_mae.make_mask(cfg, 2, rng=1)
    pred = rng.standard_normal((2, cfg.num_patches, cfg.patch_dim))
    loss, dpred = crate_mae.reconstruction_loss(pred, images, mask, cfg)
    target = patchify(images, 2)
    rows = np.arange(2)[:, None]
    expected = ((pred - target)[rows, mask.masked] ** 2).mean()
    assert loss == pytest.approx(expected, rel=1e-12)
    assert not dpred[rows, mask.keep].any()
    changed = pred.copy()
    changed[rows, mask.keep] += 10.0  # visible patches do not count
    assert crate_mae.reconstruction_loss(changed, images, mask, cfg)[0] == pytest.approx(loss, rel=1e-12)
    # normalised pixels: each target patch has mean 0 and (unbiased) variance 1 / (1 + 1e-6 / var)
    t = crate_mae.patch_targets(images, cfg.replace(norm_pix_loss=True))
    np.testing.assert_allclose(t.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(t.var(-1, ddof=1), 1, rtol=1e-4)


def test_encoder_never_sees_the_masked_pixels():
    rng = np.random.default_rng(0)
    params = crate_mae.init(SMALL, seed=0, dtype=np.float64)
    images = rng.standard_normal((2, 2, 8, 8))
    mask = crate_mae.make_mask(SMALL, 2, rng=3)
    patches = patchify(images, 2).copy()
    patches[np.arange(2)[:, None], mask.masked] = rng.standard_normal(patches[np.arange(2)[:, None], mask.masked].shape)
    from whitebox.layers.embedding import unpatchify

    other = unpatchify(patches, 2, 2, 8, 8)
    a, _ = crate_mae.forward(params, images, SMALL, mask=mask)
    b, _ = crate_mae.forward(params, other, SMALL, mask=mask)
    np.testing.assert_array_equal(a, b)


def test_features_reconstruct_and_no_mask():
    rng = np.random.default_rng(0)
    params = crate_mae.init(SMALL, seed=0)
    images = rng.random((3, 2, 8, 8)).astype(np.float32)
    feats = crate_mae.features(params, images, SMALL, batch_size=2)
    assert feats.shape == (3, SMALL.dim) and feats.dtype == np.float32
    z, _ = crate_mae.encode(params, images, SMALL)
    np.testing.assert_allclose(feats, z[:, 1:].mean(axis=1), rtol=1e-6)
    mask = crate_mae.make_mask(SMALL, 3, rng=0)
    rec = crate_mae.reconstruct(params, images, SMALL, mask)
    rows = np.arange(3)[:, None]
    np.testing.assert_array_equal(patchify(rec, 2)[rows, mask.keep], patchify(images, 2)[rows, mask.keep])
    pred, _ = crate_mae.forward(params, images, SMALL)  # no mask: every patch visible
    assert pred.shape == (3, 16, 8) and np.isfinite(crate_mae.reconstruction_loss(pred, images, None, SMALL)[0])


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(image_size=9), "multiple of patch_size"),
        (dict(dim=10), "dim must be a multiple of 4"),
        (dict(decoder_dim=6), "decoder_dim"),
        (dict(mask_ratio=1.0), "mask_ratio"),
        (dict(mask_ratio=0.99), "keeps no patch"),
        (dict(depth=0), "depth"),
        (dict(ista_lambd=-0.1), "ista_lambd"),
        (dict(cls_token="yes"), "cls_token"),
    ],
)
def test_config_rejects_inconsistent_values(changes, match):
    with pytest.raises(ValueError, match=match):
        SMALL.replace(**changes)


def test_bad_masks_raise_clear_errors():
    params = crate_mae.init(SMALL)
    images = np.zeros((2, 2, 8, 8), np.float32)
    mask = crate_mae.make_mask(SMALL, 2, rng=0)
    with pytest.raises(ValueError, match="batch=3"):
        crate_mae.forward(params, np.zeros((3, 2, 8, 8), np.float32), SMALL, mask=mask)
    bad = crate_mae.Mask(mask.keep, mask.masked.copy())
    bad.masked[0, 0] = bad.keep[0, 0]
    with pytest.raises(ValueError, match="exactly once"):
        crate_mae.forward(params, images, SMALL, mask=bad)
    with pytest.raises(TypeError, match="Mask"):
        crate_mae.forward(params, images, SMALL, mask=(mask.keep, mask.masked))
    with pytest.raises(ValueError, match="decoder.0.linear.weight"):
        crate_mae.forward({**params, "decoder.0.linear.weight": np.zeros((3, 3), np.float32)}, images, SMALL, mask=mask)
    with pytest.raises(ValueError, match="batch"):
        crate_mae.make_mask(SMALL, 0)
    with pytest.raises(TypeError, match="rng"):
        crate_mae.make_mask(SMALL, 2, rng="seed")


def test_mae_task_through_the_shared_loop(tmp_path):
    """whitebox train --task mae (tiny), resume, eval and reconstruct, on MNIST when installed."""
    from whitebox.cli import main
    from whitebox.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed (make data)")
    out = tmp_path / "mae"
    args = ["train", "--task", "mae", "--set", "depth=1", "--set", "dim=16", "--set", "decoder_dim=16",
            "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--epochs", "2", "--quiet"]
    assert main(args + ["--out", str(out), "--max-steps", "2"]) == 0
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    from whitebox.train.metrics import read_metrics

    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4] and all(np.isfinite(r["test_loss"]) for r in records)
    assert main(["eval", str(out)]) == 0
    assert main(["reconstruct", "--checkpoint", str(out), "--out", str(tmp_path / "grid.png"), "--count", "3"]) == 0
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
