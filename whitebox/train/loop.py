"""The training loop, generic over a task (:mod:`whitebox.train.task`): steps, epochs, safety.

One step, at update ``t``::

    loss, grads, metrics = task.loss_and_grads(params, batch, step_rng(seed, t))
    ‖g‖ = clip_grad_norm(grads, clip) or the global norm      # checked finite with the loss
    optimizer.step(params, grads, state, lr=schedule(t))       # Ctrl-C waits for it to finish

(with ``trained`` names given, a linear probe: ``grads`` and ``params`` are those entries only, so the
other parameters get no update and stay bit for bit, and the clipped norm is that of the trained ones)

and at the end of each epoch: evaluate on the held-out split, append a line to ``metrics.jsonl``,
save the checkpoint, redraw the curves (with the ``curves`` function given, e.g.
:func:`whitebox.figures.plot_curves`). What the loop guarantees:

* **Exact resume.** Batches come from ``task.batches(epoch, start)`` (order fixed by the seed and
  the epoch) and randomness from ``step_rng(seed, t)``, so a run resumed from a checkpoint at
  any step, even mid-epoch, takes exactly the steps the uninterrupted run would have taken.
* **Ctrl-C and SIGTERM save.** A ``KeyboardInterrupt`` (or SIGTERM) saves a checkpoint and re-raises
  as :class:`TrainingInterrupted`, which says where the checkpoint is; a second Ctrl-C waits for
  that save.
* **Divergence stops.** A non-finite loss or gradient raises :class:`NonFiniteLossError` naming
  the step, *before* the update and without saving: the last checkpoint stays the last good one.
  A non-finite evaluation raises :class:`NonFiniteEvaluationError` before the epoch is logged or
  saved, for the same reason.
* **Data parallel on a communicator** (:mod:`whitebox.distributed`). With ``comm.size = N > 1``
  each rank computes its share of the global batch (:mod:`whitebox.train.task`), and one
  all-reduce per step sums ``[n_r ḡ_r (every gradient, in sorted key order), n_r·loss, n_r·metrics, n_r]``;
  dividing by ``Σ n_r`` gives every rank the global batch's mean gradient and metrics, so all
  ranks take the same update (the one a single process takes, up to rounding). The evaluation is
  shared and reduced the same way. Only rank 0 prints, writes ``metrics.jsonl``, the curves and
  the checkpoint; a failure of those writes stops every rank (no rank waits for ever).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..backend import array_module
from ..distributed import SINGLE, Communicator, flatten, unflatten
from ..optim import clip_grad_norm
from ..io import RunPaths
from .checkpoint import save_checkpoint
from .interrupt import deferred_interrupt, terminate_as_interrupt
from .metrics import EpochMeter, append_metrics, read_metrics
from .progress import bar_postfix, epoch_bar
from .state import TrainState
from .task import Task, step_rng


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient became NaN or infinite; the run stopped before updating."""

    def __init__(self, step: int, epoch: int, batch: int, loss: float, grad_norm: float,
                 checkpoint: Path, saved_step: int | None):
        self.step, self.checkpoint, self.saved_step = step, checkpoint, saved_step
        kept = (f"the last good checkpoint, {checkpoint} (step {saved_step}), is intact"
                if saved_step is not None else "no checkpoint had been written yet")
        super().__init__(
            f"non-finite loss at step {step} (epoch {epoch + 1}, batch {batch + 1}): loss {loss}, "
            f"gradient norm {grad_norm}. The run stopped before applying this update; {kept}."
        )


class NonFiniteEvaluationError(FloatingPointError):
    """The end-of-epoch evaluation gave a NaN or infinite metric; nothing of that epoch was saved."""

    def __init__(self, step: int, evaluation: dict, checkpoint: Path, saved_step: int | None):
        self.step, self.checkpoint, self.saved_step = step, checkpoint, saved_step
        kept = (f"the last good checkpoint, {checkpoint} (step {saved_step}), is kept"
                if saved_step is not None else "no checkpoint had been written yet")
        bad = {k: v for k, v in evaluation.items() if not math.isfinite(v)}
        super().__init__(f"non-finite evaluation at step {step}: {bad}. The epoch was not logged or saved; {kept}.")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was saved at ``step`` to ``checkpoint``."""

    def __init__(self, step: int, checkpoint: Path):
        self.step, self.checkpoint = step, checkpoint
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}")


def trained_params(params: dict, names) -> dict:
    """The entries of ``params`` (or of a gradient dict) that training updates: ``names``, or all when None."""
    return params if names is None else {name: params[name] for name in names}


def say(line: str) -> None:
    """Print a line at once, also when standard output is a file or a pipe (block-buffered)."""
    print(line, flush=True)


def global_norm(grads: dict) -> float:
    """``(Σ_name ‖g_name‖²)^½``, the norm that :func:`whitebox.optim.clip_grad_norm` caps."""
    xp = array_module(*grads.values())
    return math.sqrt(float(sum(xp.vdot(g.ravel(), g.ravel()) for g in grads.values())))  # one device sync


class _Run:
    """The fixed parts of one call of :func:`fit`, so that each phase is a short method."""

    def __init__(self, task, optimizer, schedule, *, epochs, seed, paths, meta, clip_grad, max_steps,
                 saved_step, quiet, echo, curves, on_step, trained, comm):
        self.task, self.optimizer, self.schedule, self.curves = task, optimizer, schedule, curves
        self.trained = None if trained is None else tuple(trained)
        self.comm = comm
        self.part = () if comm.size == 1 else ((comm.rank, comm.size),)  # a task's `part` argument, on ranks only
        self.on_step = on_step
        self.epochs, self.seed, self.paths, self.meta = epochs, seed, paths, meta
        self.clip_grad, self.quiet, self.echo = clip_grad, quiet, echo
        self.steps_per_epoch = task.steps_per_epoch
        if self.steps_per_epoch < 1:
            raise ValueError("the task has no training batches (an empty training set?)")
        total = epochs * self.steps_per_epoch
        self.stop = total if max_steps is None else min(total, max_steps)
        self.saved_step = saved_step

    def save(self, state: TrainState) -> Path:
        """Rank 0 writes the checkpoint; every rank raises if that fails."""
        with self.comm.together("saving the checkpoint"):
            if self.comm.is_root:
                meta = {**self.meta, **state.meta(self.steps_per_epoch, self.seed)}
                save_checkpoint(self.paths.checkpoint, state.params, self.optimizer.state_dict(state.opt_state), meta,
                                self.task.state() if hasattr(self.task, "state") else None)
        self.saved_step = state.step
        return self.paths.checkpoint

    def train_epoch(self, state: TrainState) -> None:
        """Steps from ``state.step`` to the end of its epoch, or to the stop."""
        epoch, start = divmod(state.step, self.steps_per_epoch)
        xp = array_module(*state.params.values())
        began, seen = time.perf_counter(), state.meter.count
        try:
            with epoch_bar(epoch, self.epochs, self.steps_per_epoch, start, self.quiet) as bar:
                for batch in self.task.batches(epoch, start):
                    self.step(state, batch, xp)
                    bar.update(1)
                    seconds = time.perf_counter() - began
                    bar.set_postfix(bar_postfix(state.meter.averages(), (state.meter.count - seen) / seconds),
                                    refresh=False)
                    if state.step >= self.stop:
                        break
        finally:
            seconds = time.perf_counter() - began
            state.epoch_time += seconds
            state.train_time += seconds

    def step(self, state: TrainState, batch, xp) -> None:
        loss, grads, metrics = self.task.loss_and_grads(state.params, batch, step_rng(self.seed, state.step, xp),
                                                        *self.part)
        grads = trained_params(grads, self.trained)
        if self.comm.size > 1:
            loss, grads, metrics = reduce_step(self.comm, loss, grads, metrics, xp)
        norm = clip_grad_norm(grads, self.clip_grad) if self.clip_grad else global_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            epoch, batch_index = divmod(state.step, self.steps_per_epoch)
            raise NonFiniteLossError(state.step, epoch, batch_index, loss, norm, self.paths.checkpoint,
                                     self.saved_step)
        lr = self.schedule(state.step)
        with deferred_interrupt():
            self.optimizer.step(trained_params(state.params, self.trained), grads, state.opt_state, lr=lr)
            state.step += 1
            state.meter.add(metrics)
            if hasattr(self.task, "after_update"):  # a task with state of its own (DINO's teacher)
                self.task.after_update(state.params, state.step)
        if self.on_step is not None:
            self.on_step(state.step, loss)

    def finish_epoch(self, state: TrainState) -> None:
        """Evaluate, log a line, save the checkpoint, redraw the curves, print a summary."""
        began = time.perf_counter()
        evaluation = reduce_means(self.comm, self.task.evaluate(state.params, *self.part))
        eval_time = time.perf_counter() - began
        if not all(math.isfinite(v) for v in evaluation.values()):
            raise NonFiniteEvaluationError(state.step, evaluation, self.paths.checkpoint, self.saved_step)
        record = {
            "epoch": state.logged_epochs + 1,
            "step": state.step,
            "lr": self.schedule(state.step - 1),
            **{f"train_{k}": v for k, v in state.meter.averages().items()},
            **{f"test_{k}": v for k, v in evaluation.items() if k != "n"},
            "samples_per_s": state.meter.count / state.epoch_time if state.epoch_time else 0.0,
            "epoch_time": state.epoch_time,
            "eval_time": eval_time,
            "train_time": state.train_time + eval_time,
        }
        with deferred_interrupt(), self.comm.together("writing metrics.jsonl"):
            if self.comm.is_root:
                append_metrics(self.paths.metrics, record)
        with deferred_interrupt():
            state.logged_epochs += 1
            state.meter, state.epoch_time = EpochMeter(), 0.0
            state.train_time += eval_time
        self.save(state)
        if self.comm.is_root and self.curves is not None:
            self.curves(read_metrics(self.paths.metrics), self.paths.curves, title=self.meta.get("title", ""))
        if not self.quiet:
            self.echo(epoch_summary(record, self.epochs))


def reduce_step(comm: Communicator, loss: float, grads: dict, metrics: dict, xp) -> tuple[float, dict, dict]:
    """The global batch's ``(loss, grads, metrics)`` from each rank's means over its share: one all-reduce
    of ``[n_r g_r, n_r loss_r, n_r metrics_r, n_r]`` (gradients in sorted key order), divided by ``Σ n_r``."""
    keys, names = sorted(grads), [k for k in metrics if k != "n"]  # the same order on every rank (same code)
    n = metrics["n"]
    flat = flatten(grads, keys, xp, extra=[loss, *(metrics[k] for k in names), 1.0])
    flat *= n
    comm.allreduce_(flat)
    total = float(flat[-1])
    flat /= total
    grads, (loss, *values, _) = unflatten(flat, grads, keys)
    return loss, grads, {**dict(zip(names, values)), "n": round(total)}


def reduce_means(comm: Communicator, metrics: dict) -> dict:
    """Every rank's means of weight ``"n"`` (:func:`whitebox.train.task.means`) combined into the means over all."""
    if comm.size == 1:
        return metrics
    names = [k for k in metrics if k != "n"]
    flat = comm.allreduce_(np.array([*(metrics[k] * metrics["n"] for k in names), metrics["n"]], dtype=np.float64))
    return {**{k: float(v / flat[-1]) for k, v in zip(names, flat)}, "n": round(float(flat[-1]))}


def epoch_summary(record: dict, epochs: int) -> str:
    """One line per epoch: the averages over the training batches and the test figures."""
    def pair(prefix):
        parts = [f"loss {record[prefix + 'loss']:.4f}"] if prefix + "loss" in record else []
        if prefix + "accuracy" in record:
            parts.append(f"acc {record[prefix + 'accuracy']:.2%}")
        if prefix + "knn_accuracy" in record:
            parts.append(f"k-NN {record[prefix + 'knn_accuracy']:.2%}")
        return " ".join(parts)

    return (f"epoch {record['epoch']}/{epochs}  train {pair('train_')}  test {pair('test_')}  "
            f"lr {record['lr']:.3g}  {record['samples_per_s']:.0f} samples/s  "
            f"({record['epoch_time'] + record['eval_time']:.0f} s)")


def fit(task: Task, state: TrainState, optimizer, schedule: Callable[[int], float], *, epochs: int, seed: int,
        paths: RunPaths, meta: dict | None = None, clip_grad: float | None = None, max_steps: int | None = None,
        saved_step: int | None = None, quiet: bool = False, echo: Callable[[str], None] = say,
        curves: Callable | None = None, on_step: Callable[[int, float], None] | None = None,
        trained: tuple | None = None, comm: Communicator = SINGLE) -> TrainState:
    """Train ``state`` (in place) until ``epochs`` epochs, or ``max_steps`` updates, are done.

    Parameters
    ----------
    task : a :class:`whitebox.train.task.Task`.
    state : where to start: a fresh :class:`TrainState` or one restored from a checkpoint.
    optimizer : a :class:`whitebox.optim.Optimizer`; ``schedule(t)`` is the learning rate of update t.
    epochs, seed : the run's length and seed (batch order and augmentation).
    paths : where the checkpoint, ``metrics.jsonl`` and the curves go.
    meta : JSON data saved in every checkpoint (the run's config); ``meta["title"]`` titles the plot.
    clip_grad : cap on the global gradient norm, or None.
    max_steps : stop after this many updates in all (a checkpoint is saved there), or None.
    saved_step : the step of the checkpoint already on disk (when resuming), for messages.
    quiet : no progress bar and no per-epoch lines.
    curves : ``curves(records, path, title=...)`` redraws the learning curves after each epoch, or None.
    on_step : ``on_step(step, loss)`` after each update (``step``: updates taken), or None.
    trained : the names of the parameters to update (a linear probe), or None for all; the optimiser's
        state must be that of these parameters (``optimizer.init(trained_params(params, trained))``).
    comm : the ranks that train together (:mod:`whitebox.distributed`); every rank calls ``fit`` with
        the same arguments and parameters; only rank 0 prints and writes (module doc).

    Raises :class:`NonFiniteLossError`, :class:`NonFiniteEvaluationError` and
    :class:`TrainingInterrupted` (see the module doc).
    """
    run = _Run(task, optimizer, schedule, epochs=epochs, seed=seed, paths=paths, meta=dict(meta or {}),
               clip_grad=clip_grad, max_steps=max_steps, saved_step=saved_step, quiet=quiet or not comm.is_root,
               echo=echo, curves=curves, on_step=on_step, trained=trained, comm=comm)
    with terminate_as_interrupt():
        try:
            while True:
                if state.step // run.steps_per_epoch > state.logged_epochs:
                    run.finish_epoch(state)
                if state.step >= run.stop:
                    break
                run.train_epoch(state)
            if run.saved_step != state.step:
                run.save(state)
            comm.barrier()  # the files are complete for every rank
        except KeyboardInterrupt:
            try:
                with deferred_interrupt():  # a second Ctrl-C waits for the save ...
                    run.save(state)
            except KeyboardInterrupt:  # ... and then changes nothing
                pass
            raise TrainingInterrupted(state.step, run.paths.checkpoint) from None
    return state
