"""MaskCut, the cls-attention threshold and the IoU scores (whitebox.analysis.maskcut, .segmentation).

Planted answers: two clusters of patch features are cut exactly along the clusters; the object side
is the one away from the corners; a second object is cut from the features with the first removed; the
attention threshold keeps the fewest top patches that hold the mass; IoU and its two resolutions.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.analysis.maskcut import (
    affinity,
    attention_masks,
    bipartition,
    corners,
    fiedler_vector,
    maskcut,
    maskcut_batch,
)
from whitebox.analysis.segmentation import iou, mean_iou, patch_masks, pixel_features, upsample_masks

GRID = (6, 6)


def _planted(object_mask: np.ndarray, rng, f: int = 16, noise: float = 0.05) -> np.ndarray:
    """Patch features (n, f): two orthogonal directions, one for the object, one for the background."""
    a, b = np.eye(f)[0], np.eye(f)[1]
    flat = object_mask.reshape(-1)
    return np.where(flat[:, None], a, b) + noise * rng.standard_normal((flat.size, f))


def _blob(top, left, h, w, grid=GRID):
    m = np.zeros(grid, bool)
    m[top:top + h, left:left + w] = True
    return m


@given(top=st.integers(0, 3), left=st.integers(0, 3), h=st.integers(1, 3), w=st.integers(1, 3), seed=st.integers(0, 99))
def test_two_clusters_are_cut_exactly_and_the_object_is_the_small_central_side(top, left, h, w, seed):
    truth = _blob(top, left, h, w)
    features = _planted(truth, np.random.default_rng(seed))
    found = maskcut(features, GRID)
    assert found.shape == (1,) + GRID
    np.testing.assert_array_equal(found[0], truth)


def test_affinity_is_one_above_the_cosine_threshold_and_tiny_below():
    f = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.0, 0.0]])
    W = affinity(f, tau=0.5)
    np.testing.assert_array_equal(W[:3, :3] == 1, np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], bool))
    assert (W[3] == 1e-5).all()  # a removed (zeroed) patch is like nobody


def test_the_fiedler_vector_solves_the_generalised_problem_with_the_second_smallest_eigenvalue():
    rng = np.random.default_rng(0)
    W = affinity(rng.standard_normal((20, 5)))
    x = fiedler_vector(W)
    D = np.diag(W.sum(axis=1))
    lam = x @ (D - W) @ x / (x @ D @ x)
    np.testing.assert_allclose((D - W) @ x, lam * D @ x, atol=1e-9)
    assert np.all(np.isfinite(x))
    eigenvalues = np.sort(np.linalg.eigvals(np.linalg.solve(D, D - W)).real)
    np.testing.assert_allclose(lam, eigenvalues[1], atol=1e-9)


def test_the_seed_side_is_the_object_unless_it_holds_three_corners():
    x = -np.ones(36)
    x[[0, 5]] = 10  # the largest |entry| on the '>' side, with two corners: the object
    np.testing.assert_array_equal(bipartition(x, GRID).reshape(-1), x > 0)
    x[30] = 10  # a third corner: the other side is the object
    side = bipartition(x, GRID)
    np.testing.assert_array_equal(side.reshape(-1), x < 0)
    assert corners(side) == 1


def test_a_second_object_is_the_cut_of_the_features_with_the_first_removed():
    rng = np.random.default_rng(1)
    features = _planted(_blob(0, 0, 3, 3), rng) + 0.3 * rng.standard_normal((36, 16))
    found = maskcut(features, GRID, n_objects=2)
    np.testing.assert_array_equal(found[0], maskcut(features, GRID)[0])
    removed = np.where(found[0].reshape(-1)[:, None], 0.0, features)
    np.testing.assert_array_equal(found[1], maskcut(removed, GRID)[0] & ~found[0])
    assert found[1].any() and not (found[0] & found[1]).any()


def test_maskcut_rejects_bad_input():
    with pytest.raises(ValueError, match="n_objects"):
        maskcut(np.ones((36, 3)), GRID, n_objects=0)
    with pytest.raises(ValueError, match="6 x 6"):
        maskcut(np.ones((35, 3)), GRID)
    with pytest.raises(ValueError, match="NaN"):
        maskcut(np.full((36, 3), np.nan), GRID)


def test_maskcut_batch_is_maskcut_image_by_image():
    rng = np.random.default_rng(2)
    truths = [_blob(1, 1, 2, 3), _blob(2, 0, 3, 2)]
    features = np.stack([_planted(t, rng) for t in truths])
    np.testing.assert_array_equal(maskcut_batch(features, GRID), np.stack(truths))


def test_attention_keeps_the_fewest_top_patches_holding_the_mass():
    a = np.array([0.5, 0.2, 0.15, 0.1, 0.05, 0.0]).reshape(1, 1, 2, 3)  # one image, one head
    np.testing.assert_array_equal(attention_masks(a, 0.6)[0].reshape(-1), [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(attention_masks(a, 0.5)[0].reshape(-1), [1, 0, 0, 0, 0, 0])
    two_heads = np.concatenate([a, a[:, :, ::-1, ::-1]], axis=1)  # heads are averaged
    np.testing.assert_array_equal(attention_masks(two_heads, 0.3)[0].reshape(-1), [1, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="mass"):
        attention_masks(a, 0.0)


def test_iou_is_intersection_over_union():
    p = np.array([[1, 1, 0, 0]], bool)
    g = np.array([[0, 1, 1, 0]], bool)
    np.testing.assert_allclose(iou(p, g), [1 / 3])
    np.testing.assert_allclose(iou(np.zeros((1, 4), bool), np.zeros((1, 4), bool)), [1.0])
    np.testing.assert_allclose(iou(g, g), [1.0])
    with pytest.raises(ValueError, match="shape"):
        iou(p, g[:, :3])


def test_patch_and_pixel_resolutions():
    pixels = np.zeros((1, 8, 8), bool)
    pixels[0, :4, :4] = True  # patch (0, 0) whole
    pixels[0, 4:6, 4:8] = True  # patch (1, 1) half: counts as object
    pixels[0, 0, 4] = True  # patch (0, 1): 1/16, background
    truth = patch_masks(pixels, 4)
    np.testing.assert_array_equal(truth[0], [[True, False], [False, True]])
    scores = mean_iou(truth, pixels, 4)
    assert scores["patch"] == 1.0
    assert scores["pixel"] == pytest.approx((16 + 8) / (16 + 16 + 1))
    assert upsample_masks(truth, 4).shape == (1, 8, 8)
    with pytest.raises(ValueError, match="divide"):
        patch_masks(pixels, 3)


def test_pixel_features_are_the_centred_patches():
    raw = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    f = pixel_features(raw, 2)
    assert f.shape == (2, 4, 12)
    np.testing.assert_allclose(f.mean(axis=1), 0, atol=1e-12)
    first = raw[0, :, :2, :2].reshape(-1) / 255
    np.testing.assert_allclose(f[0, 0], first - raw[0].reshape(3, 2, 2, 2, 2).transpose(1, 3, 0, 2, 4)
                               .reshape(4, 12).mean(axis=0) / 255)
