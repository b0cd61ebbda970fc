"""The self-supervision ops against central differences (float64, hypothesis): ℓ2-normalisation, the
weight-normalised linear map, soft-target cross-entropy, the DINO head, the backbone features, and
the DINO / SimDINO objectives; the multi-crop views and the k-NN vote against direct computations."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.blocks import dino_head
from whitebox.blocks.dino_head import DinoHeadSpec
from whitebox.blocks.params import draw
from whitebox.data.multicrop import MultiCrop, multicrop, random_boxes, resized_crops
from whitebox.gradcheck import grad_errors, vjp_errors
from whitebox.layers.activations import softmax_forward
from whitebox.layers.l2norm import l2_normalize_backward, l2_normalize_forward
from whitebox.layers.loss import soft_cross_entropy
from whitebox.layers.weightnorm import weightnorm_linear_backward, weightnorm_linear_forward
from whitebox.models import crate, crate_alpha
from whitebox.models.common import backbone_shapes, represent, represent_backward
from whitebox.train.dino_task import teacher_temperature
from whitebox.train.self_distillation import cosine_momentum, knn_predict

TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
small = st.integers(1, 5)


def assert_small(errors):
    assert max(errors.values()) < TOL, errors


@given(seed=seeds, batch=small, d=st.integers(2, 8), scale=st.floats(1e-3, 1e3))
def test_l2_normalize(seed, batch, d, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((batch, 3, d))
    y, cache = l2_normalize_forward(x)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(y * np.linalg.norm(x, axis=-1, keepdims=True), x, rtol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = l2_normalize_backward(dy, cache)
    step = 1e-6 * min(1.0, scale)  # the step is relative to max(1, rms x); the curvature grows like 1/‖x‖²
    assert_small(vjp_errors(lambda x: l2_normalize_forward(x)[0], {"x": x}, dy, {"x": dx}, step=step))


def test_l2_normalize_of_zero_is_linear_with_slope_one_over_eps():
    x = np.zeros((2, 4))
    y, cache = l2_normalize_forward(x, eps=1e-3)
    dy = np.arange(8.0).reshape(2, 4)
    assert np.all(y == 0)
    np.testing.assert_allclose(l2_normalize_backward(dy, cache), dy / 1e-3)


@given(seed=seeds, batch=small, d_in=st.integers(2, 6), k=small)
def test_weightnorm_linear(seed, batch, d_in, k):
    rng = np.random.default_rng(seed)
    x, V = rng.standard_normal((batch, d_in)), rng.standard_normal((k, d_in)) * rng.uniform(0.1, 10, (k, 1))
    y, cache = weightnorm_linear_forward(x, V)
    np.testing.assert_allclose(y, x @ (V / np.linalg.norm(V, axis=1, keepdims=True)).T, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dV = weightnorm_linear_backward(dy, cache)
    assert_small(vjp_errors(lambda x, V: weightnorm_linear_forward(x, V)[0], {"x": x, "V": V}, dy, {"x": dx, "V": dV}))
    np.testing.assert_allclose((dV * V).sum(axis=1), 0.0, atol=1e-10)  # the gain is fixed: no radial gradient


@given(seed=seeds, batch=small, classes=st.integers(2, 7), temperature=st.floats(0.05, 3.0))
def test_soft_cross_entropy(seed, batch, classes, temperature):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((batch, classes))
    target = softmax_forward(rng.standard_normal((batch, classes)))
    loss, dlogits = soft_cross_entropy(logits, target, temperature)
    logp = np.log(softmax_forward(logits / temperature))
    np.testing.assert_allclose(loss, -(target * logp).sum(axis=1).mean(), rtol=1e-12)
    assert_small(grad_errors(lambda logits: soft_cross_entropy(logits, target, temperature)[0],
                             {"logits": logits}, {"logits": dlogits}))


@pytest.mark.parametrize("bad, message", [(dict(temperature=0.0), "temperature"),
                                          (dict(target=np.ones((3, 2)) / 2), "target")])
def test_soft_cross_entropy_names_its_bad_argument(bad, message):
    args = dict(logits=np.zeros((2, 2)), target=np.ones((2, 2)) / 2, temperature=1.0)
    with pytest.raises(ValueError, match=message):
        soft_cross_entropy(**{**args, **bad})


@given(seed=seeds, batch=small, prototypes=st.sampled_from([0, 7]))
def test_dino_head(seed, batch, prototypes):
    rng = np.random.default_rng(seed)
    spec = DinoHeadSpec(dim=6, hidden=8, bottleneck=4, prototypes=prototypes)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in
              draw(dino_head.shapes(spec), seed % 1000, dtype=np.float64).items()}  # off the zero biases
    h = rng.standard_normal((batch, 6))
    out, cache = dino_head.forward(h, params)
    assert out.shape == (batch, prototypes or 4)
    if not prototypes:
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)
    dout = rng.standard_normal(out.shape)
    dh, grads = dino_head.backward(dout, cache)
    assert set(grads) == set(params)
    assert_small(vjp_errors(lambda h, **p: dino_head.forward(h, p)[0], {"h": h, **params}, dout, {"h": dh, **grads}))


CONFIGS = {
    "crate": crate.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=8, depth=2, heads=2, dim_head=4),
    "vit": crate.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=8, depth=2, heads=2, dim_head=4,
                        block="transformer"),
    "crate-alpha": crate_alpha.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=8, depth=2, heads=2,
                                      dim_head=4),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_represent_is_the_classifier_without_its_linear_map_and_its_backward_checks(name, perturbed):
    cfg = CONFIGS[name]
    model = {"crate-alpha": crate_alpha}.get(name, crate)
    rng = np.random.default_rng(0)
    full = perturbed(model.init(cfg, seed=1, dtype=np.float64), rng)
    params = {k: full[k] for k in backbone_shapes(cfg)}
    assert set(full) - set(params) == {"head.weight", "head.bias"}
    x = rng.standard_normal((3, 1, 8, 8))
    h, cache = represent(params, x, cfg)
    logits, _ = model.forward(full, x, cfg)
    np.testing.assert_allclose(h @ full["head.weight"].T + full["head.bias"], logits, rtol=1e-12, atol=1e-12)
    dh = rng.standard_normal(h.shape)
    grads = represent_backward(dh, cache)
    assert set(grads) == set(params)
    assert_small(vjp_errors(lambda **p: represent(p, x, cfg)[0], params, dh, grads, directions=2))


def test_full_box_crop_is_the_image_and_views_keep_dtype_and_range():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 8, 8)).astype(np.float32)
    full = np.full(4, 8.0)
    np.testing.assert_array_equal(resized_crops(x, np.zeros(4), np.zeros(4), full, full), x)
    views = multicrop(x, MultiCrop(global_views=2, local_views=3, flip=True), np.random.default_rng(1))
    assert len(views) == 5
    for v in views:  # bilinear sampling is a convex combination of pixels
        assert v.shape == x.shape and v.dtype == np.float32
        assert (v.min(axis=(1, 2, 3)) >= x.min(axis=(1, 2, 3)) - 1e-6).all()
        assert (v.max(axis=(1, 2, 3)) <= x.max(axis=(1, 2, 3)) + 1e-6).all()
    again = multicrop(x, MultiCrop(global_views=2, local_views=3, flip=True), np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(views, again))


def test_crop_samples_bilinearly_between_pixel_centres():
    x = np.arange(16.0).reshape(1, 1, 4, 4)  # value = 4 row + column: linear, so bilinear sampling is exact
    top, left, h, w = np.array([1.0]), np.array([0.5]), np.array([2.0]), np.array([2.0])
    out = resized_crops(x, top, left, h, w)
    rows = np.clip(1.0 + (np.arange(4) + 0.5) * 0.5 - 0.5, 0, 3)
    cols = np.clip(0.5 + (np.arange(4) + 0.5) * 0.5 - 0.5, 0, 3)
    np.testing.assert_allclose(out[0, 0], 4 * rows[:, None] + cols[None, :])


@given(seed=seeds, low=st.floats(0.05, 0.5), width=st.floats(0.0, 0.5))
def test_random_boxes_cover_their_share_inside_the_image(seed, low, width):
    high = min(1.0, low + width)
    top, left, h, w = random_boxes(50, 28, 32, (low, high), np.random.default_rng(seed))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28 + 1e-9).all() and (left + w <= 32 + 1e-9).all()
    share = h * w / (28 * 32)
    assert (share <= high + 1e-9).all()  # shrunk to fit, never enlarged


def test_multicrop_rejects_a_bad_scale():
    with pytest.raises(ValueError, match="local_scale"):
        multicrop(np.zeros((1, 1, 4, 4)), MultiCrop(local_scale=(0.5, 0.2)), np.random.default_rng(0))


def test_knn_predict_is_the_weighted_vote_of_the_nearest_neighbours():
    rng = np.random.default_rng(0)
    bank, labels, queries = rng.standard_normal((40, 5)), rng.integers(0, 3, 40), rng.standard_normal((9, 5))
    predicted = knn_predict(bank, labels, queries, 3, k=7, temperature=0.1)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    for q, p in zip(unit(queries), predicted):
        cos = unit(bank) @ q
        votes = np.zeros(3)
        for i in np.argsort(-cos)[:7]:
            votes[labels[i]] += np.exp(cos[i] / 0.1)
        assert p == votes.argmax()


def test_knn_predict_finds_well_separated_clusters():
    rng = np.random.default_rng(1)
    centres = 10 * np.eye(4)
    labels = rng.integers(0, 4, 200)
    bank = centres[labels] + rng.standard_normal((200, 4))
    test_labels = rng.integers(0, 4, 50)
    assert (knn_predict(bank, labels, centres[test_labels] + rng.standard_normal((50, 4)), 4) == test_labels).all()


def test_momentum_rises_from_base_to_one_and_teacher_temperature_warms_up():
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert 0.996 < cosine_momentum(50, 100, 0.996) < 1.0
    assert teacher_temperature(0, 10, 0.04, 0.07) == 0.04
    assert teacher_temperature(5, 10, 0.04, 0.07) == pytest.approx(0.055)
    assert teacher_temperature(10, 10, 0.04, 0.07) == 0.07 == teacher_temperature(3, 0, 0.04, 0.07)
