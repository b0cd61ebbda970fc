"""Position embeddings for another patch grid: bicubic interpolation of the grid, cls token kept.

A model trained on a ``g × g`` grid of patches (``pos_embedding`` of shape ``(1, 1 + g², d)``, the
cls token's entry first) runs on an ``h × w`` grid once the ``g × g`` part is resampled, as timm's
``resample_abs_pos_embed`` does for ViTs: PyTorch's ``F.interpolate(mode="bicubic",
align_corners=False)``, written out here so that no PyTorch is needed.

Bicubic convolution (Keys 1981, with PyTorch's ``A = -0.75``) is separable: each output row is a
weighted sum of four input rows, then the same along columns. Output index ``i`` of ``n_out`` sits
at the input coordinate ``x = (i + ½) n_in / n_out - ½`` (pixel centres, ``align_corners=False``);
with ``t = x - ⌊x⌋`` the four taps ``⌊x⌋ - 1 … ⌊x⌋ + 2`` (clamped to the edge) weigh

    W(1 + t), W(t), W(1 - t), W(2 - t),   W(s) = (A+2)|s|³ - (A+3)|s|² + 1          for |s| ≤ 1
                                          W(s) = A|s|³ - 5A|s|² + 8A|s| - 4A          for 1 < |s| < 2

The four weights sum to one, so a constant grid stays constant.

Public surface::

    pos = resize_pos_embedding(params["pos_embedding"], (14, 14))   # (1, 1 + g², d) -> (1, 1 + 196, d)
"""

from __future__ import annotations

import math

import numpy as np

CUBIC_A = -0.75  # PyTorch's bicubic coefficient (OpenCV's too)


def _cubic(s: np.ndarray) -> np.ndarray:
    """The Keys kernel ``W(s)`` (module docstring)."""
    s = np.abs(s)
    near = ((CUBIC_A + 2) * s - (CUBIC_A + 3)) * s * s + 1
    far = ((CUBIC_A * s - 5 * CUBIC_A) * s + 8 * CUBIC_A) * s - 4 * CUBIC_A
    return np.where(s <= 1, near, np.where(s < 2, far, 0.0))


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``M`` (n_out, n_in) with ``M @ v`` the bicubic resampling of ``v`` (align_corners=False)."""
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5  # input coordinate of each output centre
    left = np.floor(x).astype(int)
    t = x - left
    matrix = np.zeros((n_out, n_in))
    for offset, weight in zip((-1, 0, 1, 2), (_cubic(1 + t), _cubic(t), _cubic(1 - t), _cubic(2 - t))):
        np.add.at(matrix, (np.arange(n_out), np.clip(left + offset, 0, n_in - 1)), weight)  # edges clamp
    return matrix


def resize_grid(grid: np.ndarray, size: tuple) -> np.ndarray:
    """``grid`` (h, w, d) resampled bicubically to ``size = (h', w')``: ``M_h · grid · M_wᵀ`` per channel."""
    h, w, _ = grid.shape
    rows, cols = bicubic_matrix(h, size[0]), bicubic_matrix(w, size[1])  # (h', h), (w', w)
    return np.einsum("ah,hwd,bw->abd", rows, grid, cols).astype(grid.dtype, copy=False)  # h', w', d


def resize_pos_embedding(pos: np.ndarray, grid: tuple) -> np.ndarray:
    """``pos`` (1, 1 + g², d) for a square ``g × g`` grid -> (1, 1 + h w, d) for ``grid = (h, w)``.

    The cls token's entry is kept as it is; the grid part is resampled by :func:`resize_grid`.
    An embedding already of the target size is returned unchanged.
    """
    pos = np.asarray(pos)
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[1] < 2:
        raise ValueError(f"pos must have shape (1, 1 + g², d), got {pos.shape}")
    h, w = (int(n) for n in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be two positive ints, got {grid!r}")
    patches = pos.shape[1] - 1
    g = math.isqrt(patches)
    if g * g != patches:
        raise ValueError(f"pos has {patches} patch positions, not a square grid (shape {pos.shape})")
    if (g, g) == (h, w):
        return pos
    resized = resize_grid(pos[0, 1:].reshape(g, g, -1), (h, w)).reshape(1, h * w, -1)
    return np.concatenate([pos[:, :1], resized], axis=1)
