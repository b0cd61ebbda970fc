"""Training for real: a generic loop over tasks, exact resume, checkpoints, metrics and curves.

==================  ==========================================================================
``task``            the protocol a task implements for the loop; ``step_rng(seed, step)``
``classification``  :class:`ClassificationTask`: augmented batches, label-smoothed cross-entropy
``loop``            :func:`fit`: steps, epochs, evaluation, Ctrl-C, non-finite stop
``state``           :class:`TrainState`: what changes while training, to and from a checkpoint
``checkpoint``      :func:`save_checkpoint` / :func:`load_checkpoint`: one ``.npz``, atomic
``files``           a run folder's files (:class:`RunPaths`) and atomic writes
``metrics``         epoch averages and ``metrics.jsonl``
``plots``           ``curves.png``
``progress``        the tqdm bar (terminals only)
``interrupt``       Ctrl-C deferred past a parameter update
``presets``         named recipes (``mnist-demo``, ``mnist``, ``fashion-mnist``)
``config``          :class:`RunConfig`: a preset resolved with overrides and the dataset
``build``           a config's data, task, optimiser, schedule and parameters
``run``             :func:`start_run`, :func:`resume_run`, :func:`evaluate_checkpoint`
==================  ==========================================================================

A task is any object with ``steps_per_epoch`` and three methods::

    task.batches(epoch, start)                       -> iterator of batches
    task.loss_and_grads(params, batch, step_rng)     -> (loss, grads, metrics)   # metrics["n"]: batch size
    task.evaluate(params)                            -> metrics on the held-out split
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .classification import ClassificationTask
from .config import ConfigError, RunConfig, resolve_config
from .files import RunPaths, atomic_write
from .loop import NonFiniteLossError, TrainingInterrupted, fit
from .presets import PRESETS, Preset, get_preset
from .run import RunExistsError, RunResult, evaluate_checkpoint, resume_run, start_run
from .state import TrainState, restore_state
from .task import Task, step_rng

__all__ = [
    "PRESETS", "Checkpoint", "ClassificationTask", "ConfigError", "NonFiniteLossError", "Preset", "RunConfig",
    "RunExistsError", "RunPaths", "RunResult", "Task", "TrainState", "TrainingInterrupted", "atomic_write",
    "evaluate_checkpoint", "fit", "get_preset", "load_checkpoint", "resolve_config", "restore_state",
    "resume_run", "save_checkpoint", "start_run", "step_rng",
]
