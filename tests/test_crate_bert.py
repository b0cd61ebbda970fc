"""CRATE-BERT: the bidirectional token model, the BERT masking recipe, the masked-token loss, fill_masks."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.gradcheck import grad_errors
from whitebox.models import crate_lm
from whitebox.train.mlm_task import MASK_SHARE, RANDOM_SHARE, mask_tokens, unigram_bits

BERT = crate_lm.Config(vocab_size=7, block_size=10, dim=8, depth=2, heads=2, dim_head=3, causal=False)


def test_every_output_depends_on_later_tokens_without_the_causal_mask(perturbed):
    params = perturbed(crate_lm.init(BERT, seed=1, dtype=np.float64), np.random.default_rng(1))
    tokens = np.random.default_rng(0).integers(0, BERT.vocab_size, (2, 10))
    base, _ = crate_lm.forward(params, tokens, BERT)
    changed = tokens.copy()
    changed[:, -1] = (changed[:, -1] + 1) % BERT.vocab_size  # only the last token changes
    out, _ = crate_lm.forward(params, changed, BERT)
    assert (np.abs(out - base).max(axis=-1) > 1e-9).all()  # every position sees it
    causal = BERT.replace(causal=True)
    out_c, _ = crate_lm.forward(params, changed, causal)
    np.testing.assert_allclose(out_c[:, :-1], crate_lm.forward(params, tokens, causal)[0][:, :-1], atol=1e-12)


def test_the_classifier_is_the_mean_pooled_head_on_the_final_features(perturbed):
    cfg = BERT.replace(num_classes=3)
    params = perturbed(crate_lm.init(cfg, seed=2, dtype=np.float64), np.random.default_rng(2))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (3, 6))
    logits, cache = crate_lm.forward(params, tokens, cfg)
    token_params = {k: v for k, v in params.items() if not k.startswith("head")}
    _, lm_cache = crate_lm.forward(token_params, tokens, BERT)

    def ln(x, w, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b

    h = lm_cache.head.x  # LN_f(Z^L), the tied head's input (B, T, d)
    pooled = ln(h.mean(axis=1), params["head_norm.weight"], params["head_norm.bias"])
    np.testing.assert_allclose(logits, pooled @ params["head.weight"].T + params["head.bias"], atol=1e-12)
    assert logits.shape == (3, 3)
    with pytest.raises(ValueError, match="num_classes"):
        BERT.replace(num_classes=0)


def masked_case(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((3, 5, 7))
    targets = rng.integers(0, 7, (3, 5))
    chosen = rng.random((3, 5)) < 0.3
    chosen[0, 0] = True
    return logits, targets, chosen


def test_masked_token_loss_is_the_mean_over_the_chosen_positions_and_its_gradient_checks():
    logits, targets, chosen = masked_case()
    loss, dlogits = crate_lm.masked_token_loss(logits, targets, chosen)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(logp, targets[..., None], -1)[..., 0][chosen])
    assert math.isclose(float(loss), expected, rel_tol=1e-12)
    assert (dlogits[~chosen] == 0).all()
    loss32, d32 = crate_lm.masked_token_loss(logits.astype(np.float32), targets, chosen)
    assert loss32.dtype == d32.dtype == np.float32  # no promotion to float64
    errors = grad_errors(lambda logits: float(crate_lm.masked_token_loss(logits, targets, chosen)[0]),
                         {"logits": logits}, {"logits": dlogits}, directions=4)
    assert math.isfinite(errors["logits"]) and errors["logits"] < 1e-6


def test_masked_token_loss_rejects_bad_masks():
    logits, targets, chosen = masked_case()
    with pytest.raises(ValueError, match="chosen"):
        crate_lm.masked_token_loss(logits, targets, chosen[:, :3])
    with pytest.raises(TypeError, match="chosen"):
        crate_lm.masked_token_loss(logits, targets, chosen.astype(np.int64))
    with np.errstate(invalid="ignore"):
        loss, _ = crate_lm.masked_token_loss(logits, targets, np.zeros_like(chosen))
    assert np.isnan(loss)  # nothing to score: the loop's non-finite check stops there


@given(st.integers(1, 6), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_mask_tokens_chooses_fifteen_percent_of_every_window_and_keeps_the_rest(batch, length, seed):
    tokens = np.random.default_rng(seed).integers(0, 20, (batch, length))
    inputs, chosen = mask_tokens(tokens, np.random.default_rng(seed), mask_id=25, num_regular=20)
    k = max(1, round(0.15 * length))
    assert chosen.dtype == bool and (chosen.sum(axis=1) == k).all()
    np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])  # only chosen positions change
    changed = inputs[chosen]
    assert ((changed == 25) | ((changed >= 0) & (changed < 20))).all()  # [MASK] or a token of the text
    again = mask_tokens(tokens, np.random.default_rng(seed), mask_id=25, num_regular=20)
    assert all(np.array_equal(a, b) for a, b in zip(again, (inputs, chosen)))  # the generator decides


@given(st.integers(0, 2**31 - 1))
def test_mask_tokens_shares_are_80_10_10_and_positions_uniform(seed):
    B, T, V = 400, 40, 50
    tokens = np.random.default_rng(seed).integers(0, V, (B, T))
    inputs, chosen = mask_tokens(tokens, np.random.default_rng(seed + 1), mask_id=V, num_regular=V)
    M = chosen.sum()
    masked = (inputs == V)[chosen].mean()
    kept = (inputs == tokens)[chosen].mean()  # kept, or replaced by the same token (probability 1/V)
    random_share = 1 - masked - kept
    p_kept = (1 - MASK_SHARE - RANDOM_SHARE) + RANDOM_SHARE / V
    for observed, p in ((masked, MASK_SHARE), (kept, p_kept), (random_share, RANDOM_SHARE - RANDOM_SHARE / V)):
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / M)  # five standard errors of a binomial
    per_position = chosen.mean(axis=0)  # each position chosen with probability k / T
    k = round(0.15 * T)
    assert np.abs(per_position - k / T).max() < 5 * math.sqrt(k / T * (1 - k / T) / B)


def test_unigram_bits_are_the_smoothed_frequencies():
    bits = unigram_bits(np.array([0, 0, 0, 1]), vocab_size=4, num_regular=3)  # ids 0-2 text, 3 special
    np.testing.assert_allclose(2.0 ** -bits[:3], [4 / 7, 2 / 7, 1 / 7])
    assert bits[3] == np.inf


def test_fill_masks_ranks_the_model_s_own_probabilities(perturbed):
    params = perturbed(crate_lm.init(BERT, seed=1, dtype=np.float64), np.random.default_rng(1))
    ids = [1, 2, 6, 3, 6]
    out = crate_lm.fill_masks(params, BERT, ids, mask_id=6, top_k=3)
    logits, _ = crate_lm.forward(params, np.asarray([ids]), BERT)
    assert [t for t, _, _ in out] == [2, 4]
    for t, top, probs in out:
        p = np.exp(logits[0, t] - logits[0, t].max())
        p /= p.sum()
        np.testing.assert_array_equal(top, np.argsort(-p, kind="stable")[:3])
        np.testing.assert_allclose(probs, p[top], rtol=1e-12)
    with pytest.raises(ValueError, match="no mask"):
        crate_lm.fill_masks(params, BERT, [1, 2], mask_id=6)
    with pytest.raises(ValueError, match="bidirectional"):
        crate_lm.fill_masks(params, BERT.replace(causal=True), ids, mask_id=6)
    with pytest.raises(ValueError, match="top_k"):
        crate_lm.fill_masks(params, BERT, ids, mask_id=6, top_k=0)
    with pytest.raises(ValueError, match="causal"):
        crate_lm.sample(params, BERT, [1], 3)


def test_an_mlm_step_on_the_strict_device_waits_on_the_host_only_to_check_the_token_ids():
    from strict_device import strict

    from whitebox import backend
    from whitebox.data.text import MASK, CharTokenizer
    from whitebox.train.mlm_task import MLMTask
    from whitebox.train.task import step_rng

    tok = CharTokenizer.from_text("abcdefgh", (MASK,))
    text = np.random.default_rng(0).integers(0, 8, 400)
    cfg = BERT.replace(vocab_size=tok.vocab_size, block_size=12)
    with backend.use_device_module(strict):
        task = MLMTask(cfg, text, text[:200], tokenizer=tok, batch_size=4, steps_per_epoch=2, seed=0, xp=strict,
                       eval_windows=4)
        params = crate_lm.init(cfg, seed=1, dtype=np.float64, device="gpu")
        with strict.counting() as counts:
            loss, grads, metrics = task.loss_and_grads(params, next(iter(task.batches(0))), step_rng(0, 0, strict))
        evaluation = task.evaluate(params)
    assert all(site.startswith("whitebox/models/crate_lm.py") for site in counts.sync_sites), counts.sync_sites
    assert counts.syncs <= 2  # check_tokens: the ids' minimum and maximum; masking, loss and metrics none
    assert isinstance(loss, strict.ndarray) and loss.shape == () and math.isfinite(float(loss))
    assert 0 <= float(metrics["accuracy"]) <= 1 and set(grads) == set(params)
    assert evaluation["n"] == 4 * round(0.15 * 12) and math.isfinite(evaluation["bpc"])
