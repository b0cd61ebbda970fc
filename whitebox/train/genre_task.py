"""Which of the First Folio's genres a passage belongs to: a text-classification task on the token model
(``whitebox train --task genre``, the passages of :mod:`whitebox.data.plays`).

One step, for a batch of passages ``x`` (B, T) and genres ``y`` (B,)::

    logits, cache = crate_lm.forward(params, x, cfg)   # B, 3: mean-pooled LN_f(Z^L) -> LN -> linear
    loss, dlogits = cross_entropy(logits, y, s)        # label smoothing s (the preset's: 0)
    grads = crate_lm.backward(dlogits, cache)

The model is the token model with ``num_classes`` set (:mod:`whitebox.models.crate_lm`). Start it
from a pretrained run with ``--init-from RUN`` (masked or causal: the backbone kept, the head new,
:func:`whitebox.weights.params_for_finetuning`), add ``--linear-probe`` to train the head only, or
from scratch. Evaluation: loss and accuracy over the held-out passages.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, to_device
from ..data import batches, num_batches
from ..layers.loss import cross_entropy
from ..models import crate_lm
from .lm_task import rank_batches
from .task import means, share


class GenreTask:
    """The :class:`whitebox.train.task.Task` of passage classification with :mod:`whitebox.models.crate_lm`.

    Parameters
    ----------
    cfg : crate_lm.Config with ``num_classes``; passages are ``cfg.block_size`` tokens long.
    train, test : (tokens int64 (N, T), labels int64 (N,)) NumPy arrays on the host.
    batch_size, seed : the batches of epoch ``k`` follow ``epoch_order(N, seed=seed, epoch=k)``.
    label_smoothing : ``s`` of the loss.
    xp : ``numpy`` or ``cupy``, where the batches are sent.
    eval_batch_size : passages per forward pass in :meth:`evaluate`.
    """

    def __init__(self, cfg, train: tuple, test: tuple, *, batch_size: int, seed: int, label_smoothing: float = 0.0,
                 xp=np, eval_batch_size: int = 500):
        self.cfg = cfg
        self.train_tokens, self.train_labels = train
        self.test_tokens, self.test_labels = test
        self.batch_size, self.seed, self.label_smoothing = batch_size, seed, label_smoothing
        self.xp, self.eval_batch_size = xp, eval_batch_size
        self.steps_per_epoch = num_batches(len(self.train_labels), batch_size)

    def batches(self, epoch: int, start: int = 0):
        """Host batches ``(tokens, labels)`` of epoch ``epoch`` from batch ``start`` on."""
        return batches(self.train_tokens, self.train_labels, self.batch_size, seed=self.seed, epoch=epoch,
                       start_batch=start)

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)):
        mine = share(len(batch[1]), part)
        tokens, labels = (to_device(a[mine], self.xp) for a in batch)  # b,T and b: this rank's share
        logits, cache = crate_lm.forward(params, tokens, self.cfg)  # b,classes
        loss, dlogits = cross_entropy(logits, labels, self.label_smoothing)
        grads = crate_lm.backward(dlogits, cache)
        accuracy = (logits.argmax(axis=-1) == labels).mean()  # 0-d, on the device
        return loss, grads, {"loss": loss, "accuracy": accuracy, "n": len(labels)}

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """Loss and accuracy over the held-out passages (the batches of ``part``)."""
        xp = array_module(*params.values())
        loss_sum, correct, n = 0.0, 0, 0
        for rows in rank_batches(len(self.test_labels), self.eval_batch_size, part):
            tokens, labels = to_device(self.test_tokens[rows], xp), to_device(self.test_labels[rows], xp)
            logits, _ = crate_lm.forward(params, tokens, self.cfg)  # b,classes
            loss, _ = cross_entropy(logits, labels, self.label_smoothing)
            loss_sum += float(loss) * len(labels)
            correct += int((logits.argmax(axis=-1) == labels).sum())
            n += len(labels)
        return means({"loss": loss_sum, "accuracy": correct}, n)
