"""whitebox.weights.resize: bicubic interpolation as PyTorch's F.interpolate(mode="bicubic"), cls kept."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.weights.resize import bicubic_matrix, resize_grid, resize_pos_embedding

sizes = st.integers(1, 9)


@given(n_in=sizes, n_out=sizes)
def test_bicubic_weights_sum_to_one(n_in, n_out):
    matrix = bicubic_matrix(n_in, n_out)
    assert matrix.shape == (n_out, n_in)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@given(n=sizes)
def test_same_size_is_the_identity(n):
    np.testing.assert_allclose(bicubic_matrix(n, n), np.eye(n), rtol=0, atol=1e-15)


def test_constant_grid_stays_constant_and_cls_is_kept():
    pos = np.concatenate([np.full((1, 1, 3), 7.0), np.full((1, 4, 3), -1.5)], axis=1)
    resized = resize_pos_embedding(pos, (5, 3))
    assert resized.shape == (1, 16, 3)
    np.testing.assert_array_equal(resized[:, 0], pos[:, 0])
    np.testing.assert_allclose(resized[:, 1:], -1.5, rtol=0, atol=1e-14)


def test_shrinking_by_three_samples_the_middle_of_each_block():
    # output centre i sits at input coordinate (i + 1/2)·3 - 1/2 = 3i + 1, an input point (t = 0)
    grid = np.random.default_rng(0).standard_normal((9, 6, 2))
    np.testing.assert_allclose(resize_grid(grid, (3, 2)), grid[1::3, 1::3], rtol=0, atol=1e-14)


def test_upsampling_a_ramp_keeps_it_increasing():
    grid = np.add.outer(np.arange(4.0), np.zeros(4))[..., None]  # rows 0, 1, 2, 3
    assert np.all(np.diff(resize_grid(grid, (8, 4))[:, 0, 0]) > 0)


def test_same_grid_returns_the_input_and_dtype_is_kept():
    pos = np.random.default_rng(0).standard_normal((1, 10, 4)).astype(np.float32)
    assert resize_pos_embedding(pos, (3, 3)) is pos
    assert resize_pos_embedding(pos, (2, 2)).dtype == np.float32


@pytest.mark.parametrize("pos, grid, message", [
    (np.zeros((1, 6, 2)), (2, 2), "not a square grid"),
    (np.zeros((2, 5, 2)), (2, 2), "shape"),
    (np.zeros((1, 5, 2)), (0, 2), "positive"),
])
def test_bad_input_is_named(pos, grid, message):
    with pytest.raises(ValueError, match=message):
        resize_pos_embedding(pos, grid)


@given(g=st.integers(1, 7), h=sizes, w=sizes, seed=st.integers(0, 1000))
def test_matches_torch_bicubic(g, h, w, seed):
    torch = pytest.importorskip("torch")
    pos = np.random.default_rng(seed).standard_normal((1, 1 + g * g, 5))
    grid = torch.from_numpy(pos[0, 1:].reshape(1, g, g, 5)).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, h * w, 5).numpy()
    np.testing.assert_allclose(resize_pos_embedding(pos, (h, w))[:, 1:], expected, rtol=0, atol=1e-12)
