"""Checkpoints: everything a run needs to continue exactly where it stopped, in one ``.npz`` file.

Layout of the archive (plain arrays, readable with ``numpy.load`` and no pickle)::

    params/<name>        the model's parameters, on the host
    optimizer/<key>      the optimiser state, flattened by ``Optimizer.state_dict``
    task/<key>           the task's own state, if it has one (``task.state()``: DINO's teacher and centre)
    meta                 a JSON text: epoch, step, the random-number state, the run's config, ...

The random-number state is small on purpose: the batch order of epoch ``k`` is a function of
``(seed, k)`` (:func:`whitebox.data.epoch_order`) and the augmentation of step ``t`` draws from a
generator seeded by ``(seed, t)`` (:func:`whitebox.train.task.step_rng`), so ``seed`` and ``step``
*are* the whole state; ``meta["rng"]`` records them with the scheme's name.

Files are written with :func:`whitebox.io.atomic_write`: a crash or Ctrl-C during a save leaves
the previous checkpoint intact. :func:`load_checkpoint` refuses, with :class:`CheckpointError`
naming the file, anything that is not a whole checkpoint of this format (empty, truncated,
bit-flipped, text) and parameters that are not finite floating-point arrays.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..backend import to_host
from ..io import atomic_write

FORMAT_VERSION = 1
_PARAMS, _OPTIMIZER, _TASK, _META = "params/", "optimizer/", "task/", "meta"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and what is wrong."""


class NoCheckpointError(FileNotFoundError):
    """There is no checkpoint where one was expected."""


class Checkpoint(NamedTuple):
    """A loaded checkpoint: host arrays and the metadata dict."""

    params: dict  # name -> NumPy array
    optimizer: dict  # Optimizer.state_dict layout: "step", "decay", "<slot>/<name>"
    meta: dict  # epoch, step, rng, config, ... (JSON types)
    task: dict = {}  # the task's state (Task.state), empty for a task without one


def save_checkpoint(path, params: dict, optimizer_state: dict, meta: dict, task_state: dict | None = None) -> Path:
    """Write ``params`` (NumPy or CuPy), ``optimizer_state`` (a flat state dict), ``meta`` and the task's
    ``task_state`` (arrays) atomically."""
    arrays = {_PARAMS + name: to_host(value) for name, value in params.items()}
    arrays.update({_TASK + key: to_host(value) for key, value in (task_state or {}).items()})
    arrays.update({_OPTIMIZER + key: to_host(value) for key, value in optimizer_state.items()})
    arrays[_META] = np.asarray(json.dumps({"format": FORMAT_VERSION, **meta}))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint`; :class:`CheckpointError` if it is not a whole one."""
    path = Path(path)
    if not path.is_file():
        raise NoCheckpointError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as archive:  # every member's CRC-32: a flipped bit is found here
            damaged = archive.testzip()
        if damaged is not None:
            raise CheckpointError(f"{path} is corrupt (entry {damaged!r} fails its CRC-32 check); train again, or "
                                  "use an intact copy")
        with np.load(path, allow_pickle=False) as archive:
            if _META not in archive.files:
                raise CheckpointError(f"{path} is not a whitebox checkpoint (it has no {_META!r} entry)")
            meta = json.loads(str(archive[_META]))
            params = {k[len(_PARAMS):]: archive[k] for k in archive.files if k.startswith(_PARAMS)}
            optimizer = {k[len(_OPTIMIZER):]: archive[k] for k in archive.files if k.startswith(_OPTIMIZER)}
            task = {k[len(_TASK):]: archive[k] for k in archive.files if k.startswith(_TASK)}
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}); it may be truncated "
                              "or corrupt: train again, or use an intact copy") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path} has checkpoint format {found!r}; this whitebox reads {FORMAT_VERSION}")
    check_params(params, path)
    return Checkpoint(params, optimizer, meta, task)


def check_params(params: dict, path) -> None:
    """:class:`CheckpointError` unless every parameter is a finite floating-point array."""
    if not params:
        raise CheckpointError(f"{path} holds no parameters")
    for name, value in params.items():
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"{path}: parameter {name!r} has dtype {value.dtype}, expected floating point")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{path}: parameter {name!r} holds {np.count_nonzero(~np.isfinite(value))} "
                                  "non-finite values (NaN or inf); this model cannot be used")
