"""Masked autoencoding as a training task: CRATE-MAE on an image dataset (``whitebox train --task mae``).

One step, for a batch of uint8 images (B, C, H, W)::

    x     = images / 255                                   # pixels in [0, 1], the parameters' dtype
    mask  = make_mask(cfg, B, step_rng)                    # a fresh random 75% per image and step
    pred, cache = crate_mae.forward(params, x, cfg, mask=mask)       # B, n, P
    loss, dpred = reconstruction_loss(pred, x, mask, cfg)            # MSE on the masked patches
    grads = crate_mae.backward(dpred, cache)

The batches of epoch ``k`` follow :func:`whitebox.data.epoch_order` (seed, k) and the mask of
step ``t`` comes from ``step_rng(seed, t)``, so a resumed run repeats the uninterrupted one.
Evaluation uses the test split with masks fixed by the seed: the same masks at every epoch, so
the test loss is comparable across epochs and runs.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, to_device
from ..data import epoch_order, num_batches
from ..models import crate_mae
from .task import means, share

EVAL_STREAM = 2  # keeps the evaluation masks apart from the training streams of the seed


def pixels(images, dtype):
    """uint8 images → floats in [0, 1] of ``dtype``, on the images' backend."""
    x = images.astype(dtype)
    x /= 255
    return x


def eval_mask(cfg, batch: int, seed: int, offset: int, xp=np):
    """The fixed mask of the evaluation images ``offset .. offset + batch``: a function of (seed, offset)."""
    mask = crate_mae.make_mask(cfg, batch, np.random.default_rng([seed, EVAL_STREAM, offset]))
    return crate_mae.Mask(to_device(mask.keep, xp), to_device(mask.masked, xp))


class MAETask:
    """The :class:`whitebox.train.task.Task` of masked autoencoding with :mod:`whitebox.models.crate_mae`.

    Parameters
    ----------
    cfg : crate_mae.Config
    train_images, test_images : uint8 (N, C, H, W) NumPy arrays on the host.
    batch_size, seed : the batches of epoch ``k`` follow ``epoch_order(N, seed=seed, epoch=k)``.
    dtype : the floating type of the pixels (that of the parameters).
    xp : ``numpy`` or ``cupy``, where the batches are sent.
    eval_batch_size : images per forward pass in :meth:`evaluate`.
    """

    def __init__(self, cfg, train_images, test_images, *, batch_size: int, seed: int, dtype, xp=np,
                 eval_batch_size: int = 1000):
        self.cfg, self.train_images, self.test_images = cfg, train_images, test_images
        self.batch_size, self.seed, self.dtype, self.xp = batch_size, seed, dtype, xp
        self.eval_batch_size = eval_batch_size
        self.steps_per_epoch = num_batches(len(train_images), batch_size)

    def batches(self, epoch: int, start: int = 0):
        """Host batches of uint8 images of epoch ``epoch`` from batch ``start`` on."""
        order = epoch_order(len(self.train_images), seed=self.seed, epoch=epoch)
        for b in range(start, self.steps_per_epoch):
            yield self.train_images[order[b * self.batch_size:(b + 1) * self.batch_size]]

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)):
        mask = crate_mae.make_mask(self.cfg, len(batch), step_rng)  # drawn for the whole batch
        mine = share(len(batch), part)
        x = pixels(to_device(batch[mine], self.xp), self.dtype)  # b,C,H,W in [0, 1]: this rank's share
        mask = crate_mae.Mask(mask.keep[mine], mask.masked[mine])
        pred, cache = crate_mae.forward(params, x, self.cfg, mask=mask)  # B,n,P
        loss, dpred = crate_mae.reconstruction_loss(pred, x, mask, self.cfg)
        grads = crate_mae.backward(dpred, cache)
        return loss, grads, {"loss": loss, "n": len(x)}

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """The masked-patch MSE over the test split (the batches of ``part``), with the seed's fixed masks."""
        xp = array_module(*params.values())
        total, n = 0.0, 0
        rank, size = part
        for lo in range(rank * self.eval_batch_size, len(self.test_images), size * self.eval_batch_size):
            x = pixels(to_device(self.test_images[lo:lo + self.eval_batch_size], xp), self.dtype)
            mask = eval_mask(self.cfg, len(x), self.seed, lo, xp)
            pred, _ = crate_mae.forward(params, x, self.cfg, mask=mask)
            loss, _ = crate_mae.reconstruction_loss(pred, x, mask, self.cfg)
            total += loss * len(x)
            n += len(x)
        return means({"loss": total}, n)
