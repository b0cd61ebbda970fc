"""The device budget of a training step, counted by the strict CuPy stand-in (tests/strict_device.py).

Claims (issue 15): a training step of each task makes no device→host synchronisation of its own,
so a run makes at most one per ``log_every`` steps (the loop's sync point); and the fused optimiser
step launches the same number of kernels whatever the number of parameters.
"""

import os

import numpy as np
import pytest
from strict_device import strict

from whitebox.backend import use_device_module
from whitebox.data import dataset_info, default_augmentation
from whitebox.flat import flat_copy
from whitebox.io import RunPaths
from whitebox.models import crate, crate_lm, crate_mae
from whitebox.optim import SGD, AdamW, Lion
from whitebox.train import TrainState, fit
from whitebox.train.classification import ClassificationTask
from whitebox.train.lm_task import LMTask
from whitebox.train.mae_task import MAETask

CLS = crate.Config(image_size=28, patch_size=7, channels=1, num_classes=10, dim=16, depth=2, heads=2, dim_head=8)
MAE = crate_mae.Config(image_size=8, patch_size=2, channels=1, dim=8, depth=1, heads=2, dim_head=4,
                       decoder_dim=8, decoder_heads=2, decoder_dim_head=4)
LM = crate_lm.Config(vocab_size=7, block_size=6, dim=8, depth=2, heads=2, dim_head=3)
STEPS_PER_EPOCH = 12  # more than any run below: no evaluation inside the counted steps


def make_task(name: str):
    rng = np.random.default_rng(0)
    images = lambda n, side, c: rng.integers(0, 256, (n, c, side, side), dtype=np.uint8)  # noqa: E731
    if name == "classification":
        labels = lambda n: rng.integers(0, 10, n)  # noqa: E731
        return ClassificationTask(crate, CLS, (images(96, 28, 1), labels(96)), (images(8, 28, 1), labels(8)),
                                  dataset_info("mnist"), batch_size=8, seed=0,
                                  augmentation=default_augmentation("mnist"), label_smoothing=0.1,
                                  dtype=np.float32, xp=strict), crate.init(CLS, seed=0, device="gpu")
    if name == "mae":
        return (MAETask(MAE, images(96, 8, 1), images(8, 8, 1), batch_size=8, seed=0, dtype=np.float32, xp=strict),
                crate_mae.init(MAE, seed=0, device="gpu"))
    tokens = rng.integers(0, 7, 400)
    return (LMTask(LM, tokens[:300], tokens[300:], batch_size=4, steps_per_epoch=STEPS_PER_EPOCH, seed=0, xp=strict),
            crate_lm.init(LM, seed=0, device="gpu"))


def run_syncs(name: str, steps: int, log_every: int, out) -> int:
    """Device→host synchronisations of a fresh ``steps``-step run of task ``name`` (with its final save)."""
    with use_device_module(strict):
        task, params = make_task(name)
        optimizer = AdamW(1e-3, weight_decay=0.05)
        state = TrainState(params, optimizer.init(params))
        with strict.counting() as counts:
            fit(task, state, optimizer, lambda t: 1e-3, epochs=1, seed=0, paths=RunPaths(out), max_steps=steps,
                clip_grad=1.0, quiet=True, log_every=log_every)
    return counts.syncs


@pytest.mark.parametrize("name", ["classification", "mae", "lm"])
@pytest.mark.parametrize("log_every", [1, 3, 100])
def test_a_run_syncs_at_most_once_per_logging_interval(name, log_every, tmp_path):
    short, long = 3, 9  # within the first epoch of every task
    extra = run_syncs(name, long, log_every, tmp_path / "b") - run_syncs(name, short, log_every, tmp_path / "a")
    sync_points = long // log_every - short // log_every  # the loop's sync points between the two stops
    assert extra <= sync_points, f"{extra} syncs in {long - short} steps with log_every={log_every}"


def fused_launches(optimizer, n_params: int) -> int:
    rng = np.random.default_rng(n_params)
    with use_device_module(strict):
        host = {f"p{i}": rng.standard_normal((3, 2) if i % 2 else (4,)).astype(np.float32) for i in range(n_params)}
        params = flat_copy({k: strict.asarray(v) for k, v in host.items()})
        grads = flat_copy({k: strict.asarray(v) for k, v in host.items()})
        state = optimizer.init(params)
        optimizer.update(params, grads, state, 1e-3, ok=strict.asarray(True))  # the decay mask is built here
        with strict.counting() as counts:
            optimizer.update(params, grads, state, 1e-3, ok=strict.asarray(True))
    return counts.launches


@pytest.mark.parametrize("optimizer", [AdamW(1e-3, weight_decay=0.1), Lion(1e-4, weight_decay=0.3),
                                       SGD(1e-2, momentum=0.9, nesterov=True, weight_decay=0.1)],
                         ids=["adamw", "lion", "sgd"])
def test_a_fused_step_launches_as_many_kernels_for_3_as_for_40_parameters(optimizer):
    few, many = fused_launches(optimizer, 3), fused_launches(optimizer, 40)
    assert few == many and few > 0


def test_tf32_is_refused_on_the_cpu_with_one_line(tmp_path, capsys):
    from whitebox.cli import main

    code = main(["train", "--tf32", "--device", "cpu", "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "--tf32" in err and "--device gpu" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_tf32_sets_cupys_matmul_mode_and_leaves_numpy_alone(monkeypatch):
    from whitebox.backend import TF32_ENV, use_tf32
    from whitebox.train import resolve_config

    monkeypatch.delenv(TF32_ENV, raising=False)
    use_tf32(np, True)
    assert TF32_ENV not in os.environ
    use_tf32(strict, True)
    assert os.environ[TF32_ENV] == "1"
    use_tf32(strict, False)
    assert os.environ[TF32_ENV] == "0"
    assert resolve_config(tf32=True).tf32 and not resolve_config().tf32


@pytest.mark.parametrize("name", ["classification", "mae"])
def test_a_run_resumed_on_the_device_draws_what_the_straight_run_draws(name, tmp_path):
    from whitebox.backend import to_host
    from whitebox.train import load_checkpoint, restore_state

    def run(out, stop, state=None, saved=None):
        with use_device_module(strict):
            task, params = make_task(name)
            optimizer = AdamW(1e-3, weight_decay=0.05)
            if state is None:
                state = TrainState(params, optimizer.init(params))
            elif state == "resume":
                state = restore_state(load_checkpoint(RunPaths(out).checkpoint), optimizer, strict, np.float32)
            fit(task, state, optimizer, lambda t: 1e-3, epochs=1, seed=0, paths=RunPaths(out), max_steps=stop,
                quiet=True, saved_step=saved)
            return {k: to_host(v) for k, v in state.params.items()}

    straight = run(tmp_path / "straight", 5)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 5, "resume", 2)
    assert all(np.array_equal(straight[k], resumed[k]) for k in straight)
