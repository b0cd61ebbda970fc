"""Image classification as a training task: augmented batches, label-smoothed cross-entropy.

One step, for a batch of uint8 images ``x`` (B, C, H, W) and labels ``y`` (B,)::

    x, y  = to_device(x), to_device(y)            # the dataset stays on the host
    x     = normalize(augment(x, rng))            # on the device; rng from (seed, step)
    logits, cache = model.forward(params, x, cfg)           # B, classes
    loss, dlogits = cross_entropy(logits, y, smoothing)     # q = (1 − s) onehot(y) + s / C
    grads = model.backward(dlogits, cache)

Evaluation runs the held-out split in large batches, without augmentation, and reports the
accuracy and the training objective itself (the label-smoothed cross-entropy), so that the train
and test loss curves are the same quantity: with smoothing ``s`` neither gets below the entropy
of the smoothed target, about 0.5 for ``s = 0.1`` and 10 classes.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ..backend import array_module, to_device
from ..data import Augmentation, DatasetInfo, augment, batches, normalize, num_batches
from ..layers.loss import cross_entropy
from ..validate import check_class_labels
from .task import means, share


class ClassificationTask:
    """The :class:`whitebox.train.task.Task` of supervised image classification.

    Parameters
    ----------
    model : module
        From :func:`whitebox.models.registry.get_model`: ``forward(params, images, cfg)``,
        ``backward(dlogits, cache)``.
    cfg : the model's Config.
    train, test : (images uint8 (N, C, H, W), labels int (N,)), NumPy arrays on the host.
    info : the dataset's :class:`whitebox.data.DatasetInfo` (normalisation statistics).
    batch_size, seed : the batches of epoch ``k`` follow ``epoch_order(N, seed=seed, epoch=k)``.
    augmentation : applied to training batches, or None.
    label_smoothing : ``s`` of the training loss.
    dtype : the floating type of the images fed to the model (that of the parameters).
    xp : ``numpy`` or ``cupy``, where the batches are sent.
    eval_batch_size : images per forward pass in :meth:`evaluate`.
    """

    def __init__(self, model: ModuleType, cfg, train: tuple, test: tuple, info: DatasetInfo, *,
                 batch_size: int, seed: int, augmentation: Augmentation | None, label_smoothing: float,
                 dtype, xp: ModuleType = np, eval_batch_size: int = 500):
        self.model, self.cfg, self.info = model, cfg, info
        self.train_images, self.train_labels = train
        self.test_images, self.test_labels = test
        self.batch_size, self.seed = batch_size, seed
        self.augmentation, self.label_smoothing = augmentation, label_smoothing
        self.dtype, self.xp, self.eval_batch_size = dtype, xp, eval_batch_size
        self.steps_per_epoch = num_batches(len(self.train_labels), batch_size)

    def batches(self, epoch: int, start: int = 0):
        """Host batches ``(images, labels)`` of epoch ``epoch`` from batch ``start`` on."""
        return batches(self.train_images, self.train_labels, self.batch_size,
                       seed=self.seed, epoch=epoch, start_batch=start)

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)):
        check_class_labels("labels", batch[1], len(batch[1]), self.cfg.num_classes)  # on the host batch, once
        images, labels = (to_device(a, self.xp) for a in batch)  # B,C,H,W uint8 and B
        if self.augmentation is not None:
            images = augment(images, self.augmentation, step_rng)  # drawn for the whole batch
        mine = share(len(labels), part)
        images, labels = images[mine], labels[mine]  # b,C,H,W and b: this rank's share
        logits, cache = self.model.forward(params, self._inputs(images), self.cfg)  # B,classes
        loss, dlogits = cross_entropy(logits, labels, self.label_smoothing)
        grads = self.model.backward(dlogits, cache)
        correct = (logits.argmax(axis=-1) == labels).sum()  # 0-d, on the device: no host sync
        n = len(labels)
        return loss, grads, {"loss": loss, "accuracy": correct / n, "n": n}

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """Loss (label-smoothed, as in training) and accuracy over the test split (the batches of
        ``part``), in batches."""
        xp = array_module(*params.values())
        loss_sum, correct, n = 0.0, 0, 0
        rank, size = part
        for lo in range(rank * self.eval_batch_size, len(self.test_labels), size * self.eval_batch_size):
            images = to_device(self.test_images[lo:lo + self.eval_batch_size], xp)  # b,C,H,W
            labels = to_device(self.test_labels[lo:lo + self.eval_batch_size], xp)  # b
            logits, _ = self.model.forward(params, self._inputs(images), self.cfg)  # b,classes
            loss, _ = cross_entropy(logits, labels, self.label_smoothing)
            loss_sum += float(loss) * len(labels)
            correct += int((logits.argmax(axis=-1) == labels).sum())
            n += len(labels)
        return means({"loss": loss_sum, "accuracy": correct}, n)

    def _inputs(self, images):
        return normalize(images, self.info.mean, self.info.std, dtype=self.dtype)
