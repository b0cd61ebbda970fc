"""What the training loop asks of a task, and the per-step random numbers it hands over.

The loop (:func:`whitebox.train.loop.fit`) knows nothing about images, labels or models: it asks
a *task* for batches, for the loss and gradients of a batch, and for an evaluation. Image
classification (:class:`whitebox.train.classification.ClassificationTask`) is one task; masked
autoencoding or language modelling are others, reusing the same loop, checkpoints and progress.

Metrics are dicts of floats. ``loss_and_grads`` also returns ``"n"``, the number of examples in
the batch: the loop averages each metric over an epoch weighted by ``n`` and reports examples
per second.

Data parallelism (:mod:`whitebox.distributed`): ``part = (rank, size)`` asks for one rank's share
(the loop passes it only when there is more than one rank, so a task for one process may omit it).
``loss_and_grads`` receives the *global* batch, draws its randomness (crops, masks) for the whole
of it, and computes the loss, gradients and metrics of its contiguous share :func:`share` only, as
means over that share; ``evaluate`` scores the evaluation batches ``rank, rank + size, ...``. The
loop weights each rank's means by its ``n`` and sums over the ranks, which gives the means over
the global batch (or the whole evaluation split) exactly when every example weighs the same in
the task's loss (true of the three tasks: fixed mask ratio, fixed window length).
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from ..backend import default_rng

AUGMENT_STREAM = 1  # keeps the step generators apart from any other stream drawn from the seed


class Task(Protocol):
    """The protocol: a task holds its data, model and loss; the loop holds the parameters."""

    steps_per_epoch: int

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        """The batches of epoch ``epoch`` from batch ``start`` on, in an order fixed by (seed, epoch)."""

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)) -> tuple[float, dict, dict]:
        """``(loss, grads, metrics)`` for the share ``part`` of one batch; ``step_rng`` drives any
        randomness (augmentation), drawn for the whole batch."""

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """Metrics (means, and their weight ``"n"``) on the share ``part`` of the held-out split."""


def share(n: int, part: tuple = (0, 1)) -> slice:
    """Rank ``r``'s contiguous share of ``n`` examples among ``size`` ranks: ``[r n // size, (r + 1) n // size)``."""
    rank, size = part
    return slice(rank * n // size, (rank + 1) * n // size)


def means(sums: dict, n: int) -> dict:
    """``{key: sum / n}`` and ``"n"``; a rank with no evaluation batch (``n == 0``) gives zeros of weight 0."""
    return {**{key: value / n if n else 0.0 for key, value in sums.items()}, "n": n}


def step_rng(seed: int, step: int, xp=np):
    """The generator of step ``step``: a function of ``(seed, step)`` only, on the module ``xp``.

    Deriving it afresh at every step, rather than drawing from one long-lived generator, means a
    run resumed at step ``t`` draws exactly what an uninterrupted run draws there, with no
    generator state to save. The integer seed comes from NumPy's ``SeedSequence``, which mixes
    ``(seed, step)`` into well-separated streams; it is the same on NumPy and CuPy.
    """
    (entropy,) = np.random.SeedSequence([seed, AUGMENT_STREAM, step]).generate_state(1, np.uint64)
    return default_rng(int(entropy) >> 1, xp)  # 63 bits: a valid seed for either module
