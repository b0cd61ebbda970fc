"""Mini-batches in a seeded order that a resumed run reproduces exactly.

The order of epoch ``k`` is a function of ``(seed, k)`` alone::

    order = numpy.random.default_rng([seed, k]).permutation(n)

so a run restarted at epoch ``k``, or at batch ``b`` of epoch ``k`` (``start_batch=b``), sees
the very same batches without saving any generator state. The order is drawn on the host with
NumPy whatever the backend of the arrays, so CPU and GPU runs see the same batches.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..backend import to_device
from ..validate import check_same_backend


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def epoch_order(n: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0) -> np.ndarray:
    """The order (int64, a permutation of ``0..n-1``) in which epoch ``epoch`` visits the samples."""
    n = _check_count("n", n, 0)
    if not shuffle:
        return np.arange(n)
    seed, epoch = _check_count("seed", seed, 0), _check_count("epoch", epoch, 0)
    return np.random.default_rng([seed, epoch]).permutation(n)


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Batches per epoch: ``n // batch_size``, plus one for a partial last batch unless ``drop_last``."""
    n, batch_size = _check_count("n", n, 0), _check_count("batch_size", batch_size, 1)
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(
    images, labels, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
    drop_last: bool = False, start_batch: int = 0,
) -> Iterator[tuple]:
    """Yield ``(images[idx], labels[idx])`` for the batches of one epoch, from ``start_batch`` on.

    ``images`` (N, ...) and ``labels`` (N,) are NumPy or CuPy arrays (the batches stay on that
    backend). Batch ``b`` holds ``epoch_order(...)[b * batch_size : (b + 1) * batch_size]``;
    every index appears exactly once per epoch, except the ``N % batch_size`` left over when
    ``drop_last``.
    """
    xp = check_same_backend(images=images, labels=labels)
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    total = num_batches(len(images), batch_size, drop_last=drop_last)
    start_batch = _check_count("start_batch", start_batch, 0)
    if start_batch > total:
        raise ValueError(f"start_batch must be at most the {total} batches of an epoch, got {start_batch}")
    order = epoch_order(len(images), shuffle=shuffle, seed=seed, epoch=epoch)
    for b in range(start_batch, total):
        idx = to_device(order[b * batch_size:(b + 1) * batch_size], xp)  # B
        yield images[idx], labels[idx]
