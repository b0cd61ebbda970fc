"""What the training loop asks of a task, and the per-step random numbers it hands over.

The loop (:func:`whitebox.train.loop.fit`) knows nothing about images, labels or models: it asks
a *task* for batches, for the loss and gradients of a batch, and for an evaluation. Image
classification (:class:`whitebox.train.classification.ClassificationTask`) is one task; masked
autoencoding or language modelling are others, reusing the same loop, checkpoints and progress.

Metrics are dicts of floats. ``loss_and_grads`` also returns ``"n"``, the number of examples in
the batch: the loop averages each metric over an epoch weighted by ``n`` and reports examples
per second.
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

    def loss_and_grads(self, params: dict, batch, step_rng) -> tuple[float, dict, dict]:
        """``(loss, grads, metrics)`` for one batch; ``step_rng`` drives any randomness (augmentation)."""

    def evaluate(self, params: dict) -> dict:
        """Metrics on the held-out split (e.g. ``{"loss": ..., "accuracy": ...}``)."""


def step_rng(seed: int, step: int, xp=np):
    """The generator of step ``step``: a function of ``(seed, step)`` only, on the module ``xp``.

    Deriving it afresh at every step, rather than drawing from one long-lived generator, means a
    run resumed at step ``t`` draws exactly what an uninterrupted run draws there, with no
    generator state to save. The integer seed comes from NumPy's ``SeedSequence``, which mixes
    ``(seed, step)`` into well-separated streams; it is the same on NumPy and CuPy.
    """
    (entropy,) = np.random.SeedSequence([seed, AUGMENT_STREAM, step]).generate_state(1, np.uint64)
    return default_rng(int(entropy) >> 1, xp)  # 63 bits: a valid seed for either module
