"""DINO's multi-crop augmentation on the device (Caron et al. 2021, §3.1): global and local views.

Each view of an image is a random-resized crop (torchvision's ``RandomResizedCrop``): a box of a
random share ``s`` of the image's area and aspect ratio ``r`` (log-uniform in [3/4, 4/3]) at a
uniformly random place, resized to the model's input size by bilinear sampling, then mirrored with
probability ½ where the dataset allows flips (not digits). Two *global* views (``s ∈ [0.4, 1]``) are
seen by teacher and student, several *local* ones (``s ∈ [0.05, 0.4]``) by the student only.

Two deviations from DINO, both for the small scale: local views keep the model's resolution
(DINO makes them 96 px against 224 px global ones) so that the position embedding is the same for
every view; and a box that does not fit (a large share with an extreme ratio) is shrunk to fit
instead of being redrawn up to ten times. Colour jitter, blur and solarisation are left out (the
datasets here are mostly grey).

Bilinear sampling, per output pixel ``(i, j)`` of an ``H × W`` view of the box ``(top, left, h, w)``,
with pixel centres at half-integers (``align_corners=False``)::

    y = top + (i + ½) h / H − ½,   x = left + (j + ½) w / W − ½        (clamped to the image)
    out = (1−a)(1−b) I[y₀, x₀] + (1−a) b I[y₀, x₁] + a (1−b) I[y₁, x₀] + a b I[y₁, x₁]

with ``y₀ = ⌊y⌋, a = y − y₀`` (and ``x₀, b`` likewise). A box is never larger than the image, so
every view is an upsampling and needs no antialiasing. All draws come from the step's generator
(:func:`whitebox.train.task.step_rng`), on the images' backend.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import array_module
from ..validate import check_array


class MultiCrop(NamedTuple):
    """The views :func:`multicrop` makes of each image."""

    global_views: int = 2
    local_views: int = 4
    global_scale: tuple = (0.4, 1.0)  # the share of the image's area a global view covers
    local_scale: tuple = (0.05, 0.4)
    flip: bool = False  # mirror each view left-right with probability ½

    @property
    def views(self) -> int:
        return self.global_views + self.local_views


def random_boxes(batch: int, height: int, width: int, scale: tuple, rng):
    """``(top, left, h, w)``, each (batch,) floats: boxes of a share ``U(scale)`` of the area, aspect
    ratio log-uniform in [3/4, 4/3], inside the image."""
    low, high = scale
    share = low + (high - low) * rng.random(batch)  # (batch,)
    ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rng.random(batch)  # log(w / h)
    xp = array_module(share)
    ratio = xp.exp(ratio)
    h = xp.minimum(height * xp.sqrt(share / ratio), height)  # (batch,)
    w = xp.minimum(width * xp.sqrt(share * ratio), width)
    top = (height - h) * rng.random(batch)
    left = (width - w) * rng.random(batch)
    return top, left, h, w


def resized_crops(images, top, left, h, w):
    """images (B, C, H, W) floats, boxes (B,) each → every box resized to H × W by bilinear sampling (module doc)."""
    xp = array_module(images)
    B, C, H, W = images.shape
    dtype = images.dtype
    top, left, h, w = (v.astype(dtype) for v in (top, left, h, w))  # the draws are float64
    rows = top[:, None] + (xp.arange(H, dtype=dtype) + 0.5) * (h[:, None] / H) - 0.5  # (B, H)
    cols = left[:, None] + (xp.arange(W, dtype=dtype) + 0.5) * (w[:, None] / W) - 0.5  # (B, W)
    rows, cols = xp.clip(rows, 0, H - 1), xp.clip(cols, 0, W - 1)
    floor_rows, floor_cols = xp.floor(rows), xp.floor(cols)
    a, b = (rows - floor_rows)[:, :, None, None], (cols - floor_cols)[:, None, :, None]  # (B, H, 1, 1), (B, 1, W, 1)
    y0, x0 = floor_rows.astype(xp.int64), floor_cols.astype(xp.int64)  # (B, H), (B, W)
    y1, x1 = xp.minimum(y0 + 1, H - 1), xp.minimum(x0 + 1, W - 1)
    pixels = images.transpose(0, 2, 3, 1)  # (B, H, W, C)
    batch = xp.arange(B)[:, None, None]

    def at(ys, xs):
        return pixels[batch, ys[:, :, None], xs[:, None, :]]  # (B, H, W, C)

    top_row = (1 - b) * at(y0, x0) + b * at(y0, x1)
    bottom_row = (1 - b) * at(y1, x0) + b * at(y1, x1)
    return ((1 - a) * top_row + a * bottom_row).transpose(0, 3, 1, 2)  # (B, C, H, W)


def random_resized_crops(images, scale: tuple, flip: bool, rng):
    """One random-resized crop of each image (B, C, H, W) floats, mirrored with probability ½ if ``flip``."""
    B, _, H, W = images.shape
    out = resized_crops(images, *random_boxes(B, H, W, scale, rng))
    if flip:
        xp = array_module(images)
        mirrored = rng.random(B) < 0.5  # (B,)
        out = xp.where(mirrored[:, None, None, None], out[..., ::-1], out)
    return out


def multicrop(images, spec: MultiCrop, rng) -> list:
    """The views of ``images`` (B, C, H, W) floats: ``spec.global_views`` global ones first, then the
    local ones, each (B, C, H, W)."""
    check_array("images", images, ndim=4, finite=False)
    for name, (low, high) in (("global_scale", spec.global_scale), ("local_scale", spec.local_scale)):
        if not 0 < low <= high <= 1:
            raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, got {(low, high)}")
    scales = [spec.global_scale] * spec.global_views + [spec.local_scale] * spec.local_views
    return [random_resized_crops(images, scale, spec.flip, rng) for scale in scales]
