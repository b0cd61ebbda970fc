"""The CRATE-alpha ablation as one command (whitebox.analysis.ablation, ``whitebox experiment``).

What is checked, end to end on a tiny budget (tiny model, a few hundred real Fashion-MNIST
images, one epoch, two seeds): every variant is trained for every seed by the shared loop (each
run folder is a normal run that ``whitebox eval`` reproduces), the per-step losses are the
loop's, the table and the plot are written; the ordering check reads the means correctly.
"""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from whitebox.cli import main
from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.analysis.ablation import BUDGETS, VARIANTS, AblationResult, smooth, variant_configs
from whitebox.models import crate_alpha
from whitebox.train import evaluate_checkpoint
from whitebox.train.metrics import read_metrics

TINY = ["--set", "dim=16", "--set", "depth=1", "--set", "heads=2", "--set", "dim_head=8"]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    try:
        load_dataset("fashion-mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    out = tmp_path_factory.mktemp("ablation")
    argv = ["experiment", "ablation", "--dataset", "fashion-mnist", "--seeds", "2", "--epochs", "1",
            "--train-limit", "256", "--test-limit", "128", *TINY, "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return out, json.loads((out / "ablation.json").read_text())


def test_every_variant_is_trained_for_every_seed(ablation):
    _, data = ablation
    assert [(r["variant"], r["seed"]) for r in data["runs"]] == [(v, s) for v in VARIANTS for s in (0, 1)]
    configs = variant_configs("fashion-mnist", BUDGETS["small"], dict(dim=16, depth=1, heads=2, dim_head=8))
    for row in data["summary"]:
        assert row["params"] == crate_alpha.num_params(configs[row["variant"]])
        assert row["seeds"] == 2 and 0 <= row["accuracy_mean"] <= 1
        assert row["accuracy_mean"] == pytest.approx(np.mean(row["accuracies"]))
        assert row["accuracy_std"] == pytest.approx(np.std(row["accuracies"], ddof=1))
    assert len({row["params"] for row in data["summary"]}) == 3  # +O+D and +O+D+R have the same parameters


def test_runs_are_ordinary_runs_of_the_shared_loop(ablation):
    _, data = ablation
    run = data["runs"][-1]  # +O+D+R, seed 1
    records = read_metrics(f"{run['folder']}/metrics.jsonl")
    assert len(records) == 1 and run["steps"] == 4 == len(run["losses"])  # 256 images / batch 64
    assert np.mean(run["losses"]) == pytest.approx(records[0]["train_loss"])  # equal batches: the epoch mean
    result = evaluate_checkpoint(run["folder"])
    assert result["accuracy"] == pytest.approx(run["test_accuracy"]) and result["n"] == 128
    assert result["config"].seed == 1 and result["config"].model_config["residual"] is True


def test_table_and_plot_are_written(ablation):
    out, data = ablation
    table = (out / "ablation.md").read_text()
    for name in ("| CRATE |", "| +O |", "| +O+D |", "| +O+D+R (CRATE-alpha) |", "Paper's ordering"):
        assert name in table
    path = out / "loss_curves.png"
    assert path.stat().st_size > 0 and imread(path).ndim == 3
    assert set(data["paper_ordering"]["steps"]) == {"crate < +O", "+O < +O+D", "+O+D < +O+D+R"}


def test_paper_ordering_reads_the_means():
    result = AblationResult("mnist", "small", [0, 1])
    for acc, variant in zip((0.5, 0.6, 0.7, 0.8), VARIANTS):
        for seed, delta in enumerate((-0.01, 0.01)):
            result.runs.append({"variant": variant, "seed": seed, "params": 1, "test_accuracy": acc + delta,
                                "final_train_loss": 1.0, "time_s": 1.0, "losses": [1.0]})
    assert result.paper_ordering()["holds"]
    result.runs[-1]["test_accuracy"] = 0.0  # +O+D+R now averages below +O+D
    order = result.paper_ordering()
    assert not order["holds"] and order["steps"] == {"crate < +O": True, "+O < +O+D": True, "+O+D < +O+D+R": False}


def test_smooth_is_a_trailing_moving_average():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


def test_unknown_model_field_is_a_usage_error(tmp_path, capsys):
    assert main(["experiment", "ablation", "--set", "nonsense=1", "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("whitebox: error: invalid model settings")
