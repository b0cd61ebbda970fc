"""What the training loop asks of a task, and the per-step random numbers it hands over.

The loop (:func:`whitebox.train.loop.fit`) knows nothing about images, labels or models: it asks
a *task* for batches, for the loss and gradients of a batch, and for an evaluation. Image
classification (:class:`whitebox.train.classification.ClassificationTask`) is one task; masked
autoencoding or language modelling are others, reusing the same loop, checkpoints and progress.

``loss_and_grads(params, batch, step_rng, part)`` returns ``(loss, grads, metrics)``:

* ``loss`` and the values of ``metrics`` are Python numbers or **0-d arrays of the task's module**
  (NumPy or CuPy). A task must not call ``float()``, ``int()`` or ``.item()`` on device arrays
  there: the loop keeps these values on the device, sums them there, and brings them to the host
  once per logging interval (:mod:`whitebox.train.loop`), so that a step never waits for the GPU.
  A check that needs host values (e.g. a token id range) runs on the host batch, before the transfer.
* ``metrics["n"]``, the number of examples in the batch (a host ``int``): the loop averages each
  metric over an epoch weighted by ``n`` and reports examples per second.
* ``grads``: a dict like ``params`` (same keys and shapes); the loop copies it into its flat
  gradient buffer (:mod:`whitebox.flat`).
* ``step_rng``: the run's persistent random generator (:func:`run_rng`), on the task's module, to
  draw any randomness of the step (crops, masks) from; ``None`` for a task that declares
  ``uses_rng = False`` (the language model), which gets no generator at all.

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
from .metrics import host_values

AUGMENT_STREAM = 1  # keeps the step generators apart from any other stream drawn from the seed


class Task(Protocol):
    """The protocol: a task holds its data, model and loss; the loop holds the parameters."""

    steps_per_epoch: int
    uses_rng: bool  # optional, default True: False means loss_and_grads gets step_rng=None

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        """The batches of epoch ``epoch`` from batch ``start`` on, in an order fixed by (seed, epoch)."""

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)) -> tuple[float, dict, dict]:
        """``(loss, grads, metrics)`` for the share ``part`` of one batch (loss and metrics: numbers or
        0-d arrays, module doc); ``step_rng`` drives any randomness (augmentation), drawn for the whole batch."""

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """Metrics (means, and their weight ``"n"``) on the share ``part`` of the held-out split."""


def share(n: int, part: tuple = (0, 1)) -> slice:
    """Rank ``r``'s contiguous share of ``n`` examples among ``size`` ranks: ``[r n // size, (r + 1) n // size)``."""
    rank, size = part
    return slice(rank * n // size, (rank + 1) * n // size)


def means(sums: dict, n: int) -> dict:
    """``{key: sum / n}`` as Python floats (device sums come to the host in one transfer), and ``"n"``; a rank
    with no evaluation batch (``n == 0``) gives zeros of weight 0."""
    values = host_values(list(sums.values()))
    return {**{key: value / n if n else 0.0 for key, value in zip(sums, values)}, "n": n}


def step_rng(seed: int, step: int, xp=np):
    """A generator that is a function of ``(seed, step)`` only, on the module ``xp``.

    The integer seed comes from NumPy's ``SeedSequence``, which mixes ``(seed, step)`` into
    well-separated streams; it is the same on NumPy and CuPy. :func:`run_rng` starts a run's
    persistent generator with it.
    """
    (entropy,) = np.random.SeedSequence([seed, AUGMENT_STREAM, step]).generate_state(1, np.uint64)
    return default_rng(int(entropy) >> 1, xp)  # 63 bits: a valid seed for either module


def run_rng(seed: int, step: int = 0, xp=np, state: dict | None = None):
    """The run's persistent generator: made once per session and drawn from by every step.

    It is always NumPy's (PCG64), so its state can be saved: ``state`` (from :func:`rng_state`, kept in
    a checkpoint) restores it exactly where the saved run was, and a resumed run draws what the
    uninterrupted one draws. Without it (a fresh run at ``step = 0``, or a checkpoint of an older
    whitebox) it starts as :func:`step_rng` of ``(seed, step)``. For a device module ``xp`` it is
    wrapped in :class:`DeviceDraws`: drawn on the host, uploaded, so a GPU run draws the same numbers
    as a CPU run and resumes as exactly. (CuPy's own generators cannot be saved: "Random states
    cannot be serialized", CuPy's ``cupy.random`` documentation.)
    """
    rng = step_rng(seed, step, np)
    if state is not None:
        rng.bit_generator.state = state
    return rng if xp is np else DeviceDraws(rng, xp)


class DeviceDraws:
    """A NumPy generator whose draws come out as arrays of the device module ``xp`` (one upload each).

    The draws of a training step are small (crop offsets and flips per image, MAE's noise per patch),
    so uploading them costs less than a device generator, and keeps the generator's state savable.
    Any method of ``numpy.random.Generator`` works (``random``, ``integers``, ``uniform`` ...).
    """

    def __init__(self, host: np.random.Generator, xp):
        self.host, self.xp = host, xp

    @property
    def bit_generator(self):
        return self.host.bit_generator

    def __getattr__(self, name):
        draw = getattr(self.host, name)

        def on_device(*args, **kwargs):
            out = draw(*args, **kwargs)
            return self.xp.asarray(out) if isinstance(out, np.ndarray) else out

        return on_device


def rng_state(rng) -> dict | None:
    """The JSON-able state of the run's generator (``bit_generator.state``), or None without one."""
    return None if rng is None else rng.bit_generator.state
