"""Scenes: MNIST digits pasted on crops of natural images, with their object masks.

A segmentation benchmark that needs no download (issue 17 item 5): each image is a crop of one
of scikit-image's sample photographs and textures (:data:`BACKGROUNDS`), with one MNIST digit
placed on it at a random position and scale, tinted a colour whose brightness is opposite to the
crop's (dark on bright, bright on dark), so that the object differs from its background:

.. math::

    x = (1 − α) · b + α · c,    mask = (α ≥ ½)

``b`` the background crop (3, S, S), ``c`` the tint (3,), ``α`` the digit's intensity / 255
emboldened by a 3 × 3 grey dilation and resampled to its box of side ``o`` pixels
(:math:`o ∈ [0.55 S, 0.9 S]`; the dilation keeps the strokes of shrunken digits at least about
a patch of 4 pixels wide). The label is the digit's class; the mask marks the object's pixels.
The train split draws its digits from the MNIST train split, the test split from the MNIST test
split; both crop the same photographs (at other places).

A split is a function of ``(split, size, seed)`` and of :data:`SCENE_VERSION` alone (its random
stream is ``default_rng([seed, split, version])``; :func:`make_scenes`: same arguments, same
bytes), generated once (vectorised: about 30 s for the 20,000 training images, 5 s for the 2,000
test images, on a busy 2-core machine) and cached as
``<data_dir or cache_dir>/scenes/scenes-v2-<size>px-seed<seed>-<split>.npz`` (atomic write).
:func:`load_scenes` returns images, labels and masks; ``load_dataset("scenes", split)`` the first
two, so ``--dataset scenes`` works for every image task. scikit-image is needed only to build a
split: ``pip install 'whitebox[images]'`` (or ``pip install scikit-image``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..io import atomic_write
from .sources import default_cache_dir

SCENE_SIZE = 32  # the catalog's ``scenes`` dataset: 32 x 32 RGB (patch 4: an 8 x 8 grid)
SCENE_SPLIT_SIZES = {"train": 20000, "test": 2000}
SCENE_VERSION = 2  # part of the cache name and of the seed: bump it when the generator changes its output
BACKGROUNDS = ("brick", "grass", "gravel", "camera", "coffee", "chelsea", "astronaut", "rocket", "moon",
               "immunohistochemistry")
BACKGROUND_SIDE = 4  # each photograph is first resized (anti-aliased) so that its short side is 4 S
CROP_RANGE = (1.0, 2.0)  # side of the background crop, in multiples of S, before resampling to S
OBJECT_RANGE = (0.55, 0.9)  # side of the digit's box, in multiples of S
INSTALL_IMAGES = "pip install 'whitebox[images]' (or: pip install scikit-image)"
_CHUNK = 2000  # images composed at once (bounds the memory of the resampling weights)


class Scenes(NamedTuple):
    """One split of the scenes dataset."""

    images: np.ndarray  # (N, 3, S, S) uint8
    labels: np.ndarray  # (N,) int64, the digit
    masks: np.ndarray  # (N, S, S) bool, the digit's pixels


def _skimage():
    try:
        import skimage.data
        import skimage.transform
    except ImportError:
        raise ImportError(f"the scenes dataset needs scikit-image to build its images: {INSTALL_IMAGES}") from None
    return skimage


def background_images(size: int = SCENE_SIZE) -> list[np.ndarray]:
    """The photographs of :data:`BACKGROUNDS` as RGB floats in [0, 1], (h, w, 3), short side ``4 size``."""
    skimage = _skimage()
    out = []
    for name in BACKGROUNDS:
        image = getattr(skimage.data, name)().astype(np.float64) / 255
        image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
        scale = BACKGROUND_SIDE * size / min(image.shape[:2])
        shape = (round(image.shape[0] * scale), round(image.shape[1] * scale), 3)
        out.append(skimage.transform.resize(image, shape, order=1, anti_aliasing=True))
    return out


def _triangle_weights(start, side, out_size: int, in_size: int) -> np.ndarray:
    """Resampling weights (n, out_size, in_size) that map ``in_size`` source pixels onto a box.

    Output pixel ``y`` of image ``i`` sits at source coordinate ``v = (y + ½ − start_i) in/side_i − ½``;
    its weights are a triangle kernel of half-width ``s = max(1, in/side_i)`` (anti-aliasing when
    shrinking), ``max(0, 1 − |v − r| / s) / s``; outside the box they vanish.
    """
    scale = in_size / side  # (n,)
    v = (np.arange(out_size)[None, :] + 0.5 - start[:, None]) * scale[:, None] - 0.5  # n,out
    s = np.maximum(scale, 1.0)[:, None, None]  # n,1,1
    return np.maximum(0.0, 1 - np.abs(v[:, :, None] - np.arange(in_size)) / s) / s  # n,out,in


def _bilinear_crops(backgrounds: list[np.ndarray], which, top, left, side, size: int) -> np.ndarray:
    """Crop ``[top, top + side)²`` of background ``which[i]``, resampled bilinearly to (n, S, S, 3)."""
    flat = np.concatenate([b.reshape(-1, 3) for b in backgrounds])  # (Σ h w, 3)
    offsets = np.cumsum([0] + [b.shape[0] * b.shape[1] for b in backgrounds])[:-1]
    heights = np.array([b.shape[0] for b in backgrounds])[which]  # n
    widths = np.array([b.shape[1] for b in backgrounds])[which]  # n
    grid = (np.arange(size) + 0.5) / size  # S
    rows = np.clip(top[:, None] + grid * side[:, None] - 0.5, 0, heights[:, None] - 1)  # n,S
    cols = np.clip(left[:, None] + grid * side[:, None] - 0.5, 0, widths[:, None] - 1)  # n,S
    r0 = np.minimum(np.floor(rows).astype(np.int64), heights[:, None] - 2)  # n,S
    c0 = np.minimum(np.floor(cols).astype(np.int64), widths[:, None] - 2)
    wr, wc = (rows - r0)[:, :, None, None], (cols - c0)[:, None, :, None]  # n,S,1,1 and n,1,S,1
    base = offsets[which][:, None, None] + r0[:, :, None] * widths[:, None, None] + c0[:, None, :]  # n,S,S

    def at(dr, dc):
        return flat[base + dr * widths[:, None, None] + dc]  # n,S,S,3

    return (1 - wr) * ((1 - wc) * at(0, 0) + wc * at(0, 1)) + wr * ((1 - wc) * at(1, 0) + wc * at(1, 1))


def _dilate(objects: np.ndarray) -> np.ndarray:
    """3 × 3 grey dilation of (m, h, w): each pixel becomes the maximum of its neighbourhood."""
    padded = np.pad(objects, ((0, 0), (1, 1), (1, 1)))
    h, w = objects.shape[1:]
    return np.max([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def _tints(hue, saturation, value) -> np.ndarray:
    """HSV → RGB, (n,) each → (n, 3): ``c_k = v (1 − s · clip(min(m_k, 4 − m_k), 0, 1))``,
    ``m_k = (k + 6h) mod 6`` for ``k = 5, 3, 1`` (red, green, blue)."""
    m = (np.array([5, 3, 1])[None, :] + 6 * hue[:, None]) % 6  # n,3
    return value[:, None] * (1 - saturation[:, None] * np.clip(np.minimum(m, 4 - m), 0, 1))


def compose_scenes(objects: np.ndarray, labels: np.ndarray, backgrounds: list[np.ndarray], n: int,
                   rng: np.random.Generator, size: int = SCENE_SIZE) -> Scenes:
    """``n`` scenes from grey objects (M, h, w) uint8 with their labels (M,), on ``backgrounds``.

    Each scene draws, from ``rng`` in this order: an object (without replacement when ``n <= M``),
    a background, the crop's side and place, the object's side and place, the tint's hue,
    saturation and value.
    """
    objects, labels = np.asarray(objects), np.asarray(labels)
    if objects.ndim != 3 or objects.dtype != np.uint8 or len(objects) != len(labels) or len(objects) == 0:
        raise ValueError(f"objects must be uint8 (M, h, w) with M > 0 and labels (M,), got {objects.dtype} "
                         f"{objects.shape} and {labels.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    pick = rng.choice(len(objects), size=n, replace=n > len(objects))  # n
    which = rng.integers(0, len(backgrounds), size=n)  # n
    crop = size * rng.uniform(*CROP_RANGE, size=n)  # n
    heights = np.array([b.shape[0] for b in backgrounds])[which]
    widths = np.array([b.shape[1] for b in backgrounds])[which]
    top, left = rng.uniform(0, heights - crop), rng.uniform(0, widths - crop)  # n
    side = size * rng.uniform(*OBJECT_RANGE, size=n)  # n
    obj_top, obj_left = rng.uniform(0, size - side), rng.uniform(0, size - side)  # n
    hue, saturation, brightness = rng.random(n), rng.uniform(0.5, 1.0, size=n), rng.random(n)
    images, masks = np.empty((n, 3, size, size), np.uint8), np.empty((n, size, size), bool)
    h, w = objects.shape[1:]
    for lo in range(0, n, _CHUNK):
        part = slice(lo, min(n, lo + _CHUNK))
        b = _bilinear_crops(backgrounds, which[part], top[part], left[part], crop[part], size)  # m,S,S,3
        ry = _triangle_weights(obj_top[part], side[part], size, h)  # m,S,h
        rx = _triangle_weights(obj_left[part], side[part], size, w)  # m,S,w
        alpha = np.clip(ry @ (_dilate(objects[pick[part]]) / 255.0) @ rx.transpose(0, 2, 1), 0, 1)  # m,S,S
        dark = b.mean(axis=(1, 2, 3)) > 0.5  # bright background: a dark object
        value = np.where(dark, 0.05 + 0.3 * brightness[part], 0.7 + 0.3 * brightness[part])  # m
        tint = _tints(hue[part], saturation[part], value)  # m,3
        x = (1 - alpha[..., None]) * b + alpha[..., None] * tint[:, None, None, :]  # m,S,S,3
        images[part] = np.round(255 * x).astype(np.uint8).transpose(0, 3, 1, 2)
        masks[part] = alpha >= 0.5
    return Scenes(images, labels[pick].astype(np.int64), masks)


def _split_seed(split: str, seed: int) -> list[int]:
    return [int(seed), ("train", "test").index(split), SCENE_VERSION]


def make_scenes(split: str, *, size: int = SCENE_SIZE, seed: int = 0, n: int | None = None, data_dir=None,
                cache_dir=None, download=True) -> Scenes:
    """Generate split ``split`` (``n`` images, default :data:`SCENE_SPLIT_SIZES`) from MNIST's same split."""
    from .load import load_dataset  # here: load_dataset itself reads the scenes through this module

    if split not in SCENE_SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose one of {tuple(SCENE_SPLIT_SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    backgrounds = background_images(size)
    digits, labels = load_dataset("mnist", split, data_dir, cache_dir=cache_dir, download=download)
    n = SCENE_SPLIT_SIZES[split] if n is None else n
    return compose_scenes(digits[:, 0], labels, backgrounds, n, np.random.default_rng(_split_seed(split, seed)), size)


def scenes_path(folder, split: str, size: int = SCENE_SIZE, seed: int = 0) -> Path:
    """Where :func:`load_scenes` caches a split inside ``folder``."""
    return Path(folder).expanduser() / "scenes" / f"scenes-v{SCENE_VERSION}-{size}px-seed{seed}-{split}.npz"


def load_scenes(split: str, data_dir=None, *, cache_dir=None, size: int = SCENE_SIZE, seed: int = 0,
                download=True) -> Scenes:
    """Split ``split`` of the scenes, read from its cache file or generated once and cached there.

    The cache folder is ``data_dir`` when given, else ``cache_dir`` (default ``~/.cache/whitebox``);
    MNIST is looked for as :func:`whitebox.data.load_dataset` does (``download`` as there).
    """
    folder = data_dir if data_dir is not None else (cache_dir if cache_dir is not None else default_cache_dir())
    path = scenes_path(folder, split, size, seed)
    if path.is_file():
        with np.load(path) as f:
            return Scenes(f["images"], f["labels"], f["masks"])
    scenes = make_scenes(split, size=size, seed=seed, data_dir=data_dir, cache_dir=cache_dir, download=download)
    buffer = io.BytesIO()
    np.savez(buffer, **scenes._asdict())
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return scenes
