"""Training for real: one path for every task, a generic loop, exact resume, checkpoints, metrics.

==================  ==========================================================================
``config``          :class:`RunConfig` (with its ``task``) and :data:`PRESETS`, one table for all tasks
``build``           a config's task (its data), optimiser, schedule and parameters
``run``             :func:`start_run`, :func:`resume_run`, :func:`load_run`, :func:`evaluate_checkpoint`,
                    :func:`evaluate_weights` (a weights file not trained here)
``task``            the protocol a task implements for the loop; ``step_rng(seed, step)``
``classification``  :class:`ClassificationTask`: augmented batches, label-smoothed cross-entropy
``mae_task``        masked autoencoding with CRATE-MAE
``lm_task``         character language modelling with causal CRATE
``dino_task``       DINO self-distillation of a classifier's backbone (shared part: ``self_distillation``)
``simdino_task``    SimDINO: the same with the coding-rate term instead of centring and sharpening
``loop``            :func:`fit`: steps, epochs, evaluation, Ctrl-C and SIGTERM, non-finite stops
``state``           :class:`TrainState`: what changes while training, to and from a checkpoint
``checkpoint``      :func:`save_checkpoint` / :func:`load_checkpoint`: one ``.npz``, atomic, checked
``metrics``         epoch averages and ``metrics.jsonl``
``progress``        the tqdm bar (terminals only)
``interrupt``       Ctrl-C and SIGTERM deferred past a parameter update
==================  ==========================================================================

A task is any object with ``steps_per_epoch`` and three methods::

    task.batches(epoch, start)                       -> iterator of batches
    task.loss_and_grads(params, batch, step_rng)     -> (loss, grads, metrics)   # metrics["n"]: batch size
    task.evaluate(params)                            -> metrics on the held-out split

(on several ranks both also take ``part = (rank, size)``: :mod:`whitebox.train.task`)

and plugs into the run path with one builder in :data:`whitebox.train.build.BUILDERS`. A task with
state of its own (DINO's teacher and centre) also has ``after_update(params, step)``, called by the
loop after each update, and ``state()`` / ``load_state(arrays)``, saved under ``task/`` in the
checkpoint and restored on resume.
"""

from .checkpoint import Checkpoint, CheckpointError, NoCheckpointError, load_checkpoint, save_checkpoint
from .classification import ClassificationTask
from .config import PRESETS, TASKS, ConfigError, Preset, RunConfig, get_preset, preset_model_config, resolve_config
from .loop import NonFiniteEvaluationError, NonFiniteLossError, TrainingInterrupted, fit
from .run import (LoadedRun, RunExistsError, RunFolderError, RunResult, evaluate_checkpoint, evaluate_weights,
                  load_run, resume_run, start_run)
from .state import TrainState, restore_state
from .task import Task, step_rng

__all__ = [
    "PRESETS", "TASKS", "Checkpoint", "CheckpointError", "ClassificationTask", "ConfigError", "LoadedRun",
    "NoCheckpointError", "NonFiniteEvaluationError", "NonFiniteLossError", "Preset", "RunConfig",
    "RunExistsError", "RunFolderError", "RunResult", "Task", "TrainState", "TrainingInterrupted",
    "evaluate_checkpoint", "evaluate_weights", "fit", "get_preset", "load_checkpoint", "load_run",
    "preset_model_config", "resolve_config", "restore_state",
    "resume_run", "save_checkpoint", "start_run", "step_rng",
]
