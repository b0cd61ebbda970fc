"""Data augmentation and normalisation on the active backend (NumPy or CuPy), vectorised.

Augmentation works on the uint8 images (N, C, H, W), before normalisation, so the padding of a
random crop is black, as in the usual ``RandomCrop(size, padding)`` recipe. Random numbers come
from a generator of the images' backend (``whitebox.backend.default_rng(seed, xp)``).

Per-dataset defaults (:func:`default_augmentation`): random crops everywhere (padding 2 on
28 x 28, 4 on 32 x 32); horizontal flips for CIFAR-10 and Fashion-MNIST, whose classes are
mirror-symmetric (a mirrored shoe is a shoe), but not for MNIST and the scenes made of its digits
(a mirrored 2 is no digit).
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import TRAIN_DTYPE, array_module
from ..validate import check_same_backend
from .catalog import check_dataset


class Augmentation(NamedTuple):
    """What :func:`augment` does to a batch."""

    crop_padding: int  # random crop of the original size out of the zero-padded image; 0: none
    flip: bool  # mirror left-right with probability 1/2


_DEFAULTS = {
    "mnist": Augmentation(crop_padding=2, flip=False),
    "fashion-mnist": Augmentation(crop_padding=2, flip=True),
    "cifar10": Augmentation(crop_padding=4, flip=True),
    "scenes": Augmentation(crop_padding=4, flip=False),  # digits again: no flips
}


def default_augmentation(name: str) -> Augmentation:
    """The standard augmentation of dataset ``name`` (no flips for digits)."""
    return _DEFAULTS[check_dataset(name)]


def _check_images(images):
    if not hasattr(images, "ndim") or images.ndim != 4:
        raise ValueError(f"images must be an array of shape (N, C, H, W), got {getattr(images, 'shape', type(images))}")


def crop(images, padding: int, top, left):
    """Window ``[top:top+H, left:left+W]`` of each zero-padded image: ``(N, C, H, W)`` in and out.

    ``top`` and ``left`` are integer arrays (N,) in ``0..2*padding``. One pad, then one gather:
    ``out[n, c, i, j] = padded[n, c, top[n] + i, left[n] + j]``.
    """
    _check_images(images)
    xp = check_same_backend(images=images, top=top, left=left)
    n, _, h, w = images.shape
    p = int(padding)
    padded = xp.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))  # N,C,H+2p,W+2p
    rows = top[:, None] + xp.arange(h)  # N,H
    cols = left[:, None] + xp.arange(w)  # N,W
    batch = xp.arange(n)[:, None, None, None]  # N,1,1,1
    channel = xp.arange(images.shape[1])[None, :, None, None]  # 1,C,1,1
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # N,C,H,W


def random_crop(images, padding: int, rng):
    """Crop each image at a uniformly random offset out of its zero-padded version (same size)."""
    _check_images(images)
    if isinstance(padding, bool) or int(padding) != padding or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    n = images.shape[0]
    top = rng.integers(0, 2 * padding + 1, size=n)  # N
    left = rng.integers(0, 2 * padding + 1, size=n)  # N
    return crop(images, padding, top, left)


def random_flip(images, rng, p: float = 0.5):
    """Mirror each image left-right with probability ``p``."""
    _check_images(images)
    flip = rng.random(images.shape[0]) < p  # N
    xp = check_same_backend(images=images, random_draws=flip)
    return xp.where(flip[:, None, None, None], images[..., ::-1], images)


def augment(images, augmentation: Augmentation, rng):
    """Apply ``augmentation`` (crop, then flip) to uint8 images (N, C, H, W)."""
    if augmentation.crop_padding:
        images = random_crop(images, augmentation.crop_padding, rng)
    if augmentation.flip:
        images = random_flip(images, rng)
    return images


def normalize(images, mean, std, dtype=TRAIN_DTYPE):
    """uint8 images (N, C, H, W) to floats: ``x = (images / 255 - mean) / std`` per channel.

    ``mean`` and ``std`` hold one value per channel (``dataset_info(name).mean`` and ``.std``).
    """
    _check_images(images)
    if images.dtype != "uint8":
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}")
    xp = array_module(images)
    mean = xp.asarray(mean, dtype=dtype).reshape(1, channels, 1, 1)
    std = xp.asarray(std, dtype=dtype).reshape(1, channels, 1, 1)
    return (images.astype(dtype) / 255 - mean) / std  # N,C,H,W in dtype
