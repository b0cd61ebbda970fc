"""Character language modelling as a training task: causal CRATE on Shakespeare (``whitebox train --task lm``).

One step, for ``B`` windows of ``T + 1`` consecutive characters of the training text::

    x, y   = window[:, :-1], window[:, 1:]                 # B, T token ids; y is x shifted by one
    logits, cache = crate_lm.forward(params, x, cfg)       # B, T, V
    loss, dlogits = next_token_loss(logits, y)             # mean over the B·T positions, in nats
    grads  = crate_lm.backward(dlogits, cache)

An "epoch" is ``steps_per_epoch`` such batches (the text is far longer than any run here reads);
batch ``b`` of epoch ``k`` draws its window offsets from ``default_rng([seed, k, b])``, so a
resumed run sees the same windows. Evaluation reads the validation text (the last 10% of the
characters, :func:`whitebox.data.text.split_text`) as consecutive non-overlapping windows, at
most ``eval_windows`` of them evenly spaced, and reports the loss in nats and in bits per
character (``bpc = loss / ln 2``).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module, to_device
from ..data.text import random_windows, sequential_windows
from ..models import crate_lm
from .task import means, share


class LMTask:
    """The :class:`whitebox.train.task.Task` of next-character prediction with :mod:`whitebox.models.crate_lm`.

    Parameters
    ----------
    cfg : crate_lm.Config; windows are ``cfg.block_size`` tokens long.
    train_tokens, val_tokens : int64 (N,) NumPy arrays of token ids (disjoint parts of the text).
    batch_size : windows per step.
    steps_per_epoch : steps between evaluations and checkpoints.
    seed : the windows of batch ``b`` of epoch ``k`` come from ``default_rng([seed, k, b])``.
    xp : ``numpy`` or ``cupy``, where the batches are sent.
    eval_windows : validation windows read by :meth:`evaluate` (None: the whole validation text).
    """

    def __init__(self, cfg, train_tokens, val_tokens, *, batch_size: int, steps_per_epoch: int, seed: int,
                 xp=np, eval_windows: int | None = 256):
        self.cfg, self.train_tokens, self.val_tokens = cfg, np.asarray(train_tokens), np.asarray(val_tokens)
        self.batch_size, self.steps_per_epoch, self.seed, self.xp = batch_size, steps_per_epoch, seed, xp
        self.eval_windows = eval_windows

    def batches(self, epoch: int, start: int = 0):
        """Host batches ``(x, y)`` (B, T) of epoch ``epoch`` from batch ``start`` on."""
        for b in range(start, self.steps_per_epoch):
            yield random_windows(self.train_tokens, self.batch_size, self.cfg.block_size,
                                 np.random.default_rng([self.seed, epoch, b]))

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)):
        mine = share(len(batch[0]), part)
        x, y = (to_device(a[mine], self.xp) for a in batch)  # b,T each: this rank's share
        logits, cache = crate_lm.forward(params, x, self.cfg)  # B,T,V
        loss, dlogits = crate_lm.next_token_loss(logits, y)
        grads = crate_lm.backward(dlogits, cache)
        return loss, grads, {"loss": loss, "bpc": loss / math.log(2), "n": len(x)}

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """Mean next-character loss (nats) and bits per character over the validation windows."""
        return evaluate_tokens(params, self.cfg, self.val_tokens, self.batch_size, self.eval_windows, part)


def rank_batches(count: int, batch_size: int, part: tuple = (0, 1)):
    """The slices of the evaluation batches ``rank, rank + size, ...`` of ``count`` windows (``part = (rank, size)``)."""
    rank, size = part
    for lo in range(rank * batch_size, count, size * batch_size):
        yield slice(lo, lo + batch_size)


def evaluate_tokens(params: dict, cfg, tokens, batch_size: int = 64, max_windows: int | None = None,
                    part: tuple = (0, 1)) -> dict:
    """``{"loss", "bpc", "n"}`` of the model on consecutive windows of ``tokens`` (``n`` characters scored;
    ``part``: the batches of one rank, :mod:`whitebox.train.task`)."""
    xp = array_module(*params.values())
    x_all, y_all = sequential_windows(tokens, cfg.block_size, max_windows)  # W, T
    total, n = 0.0, 0
    for rows in rank_batches(len(x_all), batch_size, part):
        x, y = (to_device(a[rows], xp) for a in (x_all, y_all))
        logits, _ = crate_lm.forward(params, x, cfg)
        loss, _ = crate_lm.next_token_loss(logits, y)
        total += loss * y.size
        n += int(y.size)
    return means({"loss": total, "bpc": total / math.log(2)}, n)
