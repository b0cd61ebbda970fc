"""The training state: all that changes while a run trains, and its round trip through a checkpoint.

A run at update ``step`` is in epoch ``step // steps_per_epoch``, at batch
``step % steps_per_epoch`` of it; with the seed, that fixes the next batch and its augmentation,
so parameters, optimiser state, ``step`` and the state of the run's generator (:func:`whitebox.train.task.run_rng`,
as it was at the start of the step in progress) are enough to continue bit for bit. The rest
(``logged_epochs``, the running sums of the epoch's metrics, timers) makes the resumed run's
reports whole as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from ..backend import tree_to_device
from .checkpoint import Checkpoint
from .metrics import EpochMeter
from .task import rng_state

RNG_SCHEME = ("batch order: default_rng([seed, epoch]); augmentation: one NumPy generator per run, "
              "run_rng(seed, step) at its start, its state saved")


@dataclass
class TrainState:
    params: dict  # name -> array, on the training device
    opt_state: dict  # the optimiser's state (Optimizer.init / load_state_dict)
    step: int = 0  # updates taken
    logged_epochs: int = 0  # epochs whose line is in metrics.jsonl
    meter: EpochMeter = field(default_factory=EpochMeter)  # the current epoch's running sums
    epoch_time: float = 0.0  # seconds of training steps in the current epoch
    train_time: float = 0.0  # seconds of steps and evaluations, over every session of the run
    rng: object = None  # the run's persistent generator (made by the loop, for tasks that draw)
    rng_saved: dict | None = None  # a checkpoint's generator state, for the loop's run_rng
    rng_mark: tuple = (None, None)  # (step, generator state at the start of that step)

    def mark_rng(self) -> None:
        """Remember the generator's state at the start of step ``self.step`` (a save during the step uses it)."""
        self.rng_mark = (self.step, rng_state(self.rng))

    def saved_rng(self) -> dict | None:
        """The generator state to save at ``self.step``: from before the draws of an unfinished step."""
        if self.rng is None:
            return self.rng_saved
        return self.rng_mark[1] if self.rng_mark[0] == self.step else rng_state(self.rng)

    def meta(self, steps_per_epoch: int, seed: int) -> dict:
        """The JSON part of a checkpoint (the arrays are saved separately; the meter's sums must be on the host)."""
        epoch, batch = divmod(self.step, steps_per_epoch)
        return {
            "epoch": epoch, "batch": batch, "step": self.step, "steps_per_epoch": steps_per_epoch,
            "logged_epochs": self.logged_epochs, "meter": self.meter.sums,
            "epoch_time": self.epoch_time, "train_time": self.train_time,
            "rng": {"seed": seed, "step": self.step, "scheme": RNG_SCHEME, "state": self.saved_rng()},
        }


def restore_state(checkpoint: Checkpoint, optimizer, xp: ModuleType, dtype) -> TrainState:
    """The :class:`TrainState` saved in ``checkpoint``, with its arrays on ``xp`` in ``dtype``."""
    meta = checkpoint.meta
    if meta["step"] != meta["epoch"] * meta["steps_per_epoch"] + meta["batch"]:
        raise ValueError(f"inconsistent checkpoint: step {meta['step']} is not epoch {meta['epoch']}, batch {meta['batch']}")
    params = {k: v.astype(dtype, copy=False) for k, v in tree_to_device(checkpoint.params, xp).items()}
    return TrainState(
        params=params,
        opt_state=optimizer.load_state_dict(checkpoint.optimizer, xp),
        step=meta["step"],
        logged_epochs=meta["logged_epochs"],
        meter=EpochMeter(meta["meter"]),
        epoch_time=meta["epoch_time"],
        train_time=meta["train_time"],
        rng_saved=meta.get("rng", {}).get("state"),
    )
