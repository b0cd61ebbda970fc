"""Masked language modelling as a training task: CRATE-BERT on Shakespeare (``whitebox train --task mlm``).

The BERT recipe (Devlin et al. 2019, §3.1; docs/reference.md §9): in every window of ``T`` tokens,
``k = max(1, round(0.15 T))`` positions are *chosen* uniformly without replacement; a chosen
token is replaced by ``[MASK]`` with probability 0.8, by a uniformly random token of the text's
vocabulary with probability 0.1, and kept with probability 0.1. The model, bidirectional, sees
the corrupted window and is scored on the chosen positions only::

    inputs, chosen = mask_tokens(window, rng)               # B, T each; rng: the step's generator
    logits, cache  = crate_lm.forward(params, inputs, cfg)  # B, T, V (the head tied to the embedding)
    loss, dlogits  = masked_token_loss(logits, window, chosen)   # mean over the B k chosen positions
    grads          = crate_lm.backward(dlogits, cache)

Every window has the same ``k``, so every window weighs the same in the loss (what data
parallelism needs, :mod:`whitebox.train.task`). The windows are those of the causal task
(:class:`whitebox.train.lm_task.LMTask`: random offsets of the training text, from ``(seed,
epoch, batch)``); the masks of step ``t`` come from the step generator of ``(seed, t)``.

Evaluation masks the validation windows once, with a generator of its own (:data:`EVAL_MASK_SEED`),
so that every model and seed is scored on the same positions and the same corruption, and reports
the masked-token accuracy, the loss (nats), bits per masked token ``bpt`` and per masked character
``bpc`` (bits over the characters of the original tokens at the chosen positions: the same as ``bpt``
for characters), and the same two for the *unigram baseline*: ``−log₂ p(token)`` with ``p`` the
add-one-smoothed token frequencies of the training text, on the same positions.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module, to_device, to_host
from ..data.text import MASK, sequential_windows
from ..models import crate_lm
from .lm_task import LMTask, rank_batches
from .task import share

MASK_RATE = 0.15  # positions chosen per window
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen: → [MASK], → a random token (the rest kept)
EVAL_MASK_SEED = 18  # the evaluation's masks: the same for every run


def mask_tokens(tokens, rng, *, mask_id: int, num_regular: int, rate: float = MASK_RATE):
    """``(inputs, chosen)`` (B, T): the BERT corruption of ``tokens`` (B, T) and the chosen positions.

    ``rng``: a NumPy or CuPy generator (of the tokens' module); random replacements are drawn from
    the ids ``[0, num_regular)`` (the text's tokens, not the specials).
    """
    xp = array_module(tokens)
    B, T = tokens.shape
    k = max(1, round(rate * T))
    order = xp.argsort(rng.random((B, T)), axis=1)  # a uniform random permutation of each row
    chosen = xp.zeros((B, T), dtype=bool)
    chosen[xp.arange(B)[:, None], order[:, :k]] = True  # k positions per window
    u = rng.random((B, T))
    to_mask = chosen & (u < MASK_SHARE)
    to_random = chosen & (u >= MASK_SHARE) & (u < MASK_SHARE + RANDOM_SHARE)
    random_ids = rng.integers(0, num_regular, size=(B, T))
    inputs = xp.where(to_mask, mask_id, xp.where(to_random, random_ids, tokens)).astype(tokens.dtype)
    return inputs, chosen


def unigram_bits(train_tokens, vocab_size: int, num_regular: int) -> np.ndarray:
    """``−log₂ p(v)`` (vocab_size,) float64: add-one-smoothed frequencies of the text's tokens in
    ``train_tokens``; the specials (never a target) get infinity."""
    counts = np.bincount(np.asarray(train_tokens), minlength=vocab_size)[:num_regular].astype(np.float64)
    bits = np.full(vocab_size, np.inf)
    bits[:num_regular] = -np.log2((counts + 1) / (counts.sum() + num_regular))
    return bits


class MLMTask(LMTask):
    """The :class:`whitebox.train.task.Task` of masked-token prediction with a bidirectional :mod:`crate_lm`.

    Parameters as :class:`whitebox.train.lm_task.LMTask`, and ``tokenizer``: the vocabulary of the
    tokens, which reserves :data:`whitebox.data.text.MASK`.
    """

    def __init__(self, cfg, train_tokens, val_tokens, *, tokenizer, **options):
        super().__init__(cfg, train_tokens, val_tokens, **options)
        self.mask_id, self.num_regular = tokenizer.special_id(MASK), tokenizer.num_regular
        self.token_lengths = tokenizer.token_lengths()  # V: characters per token
        self.unigram_bits = unigram_bits(self.train_tokens, tokenizer.vocab_size, self.num_regular)

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)):
        tokens = to_device(batch[0], self.xp)  # B,T: the whole batch, masked with one draw
        inputs, chosen = mask_tokens(tokens, step_rng, mask_id=self.mask_id, num_regular=self.num_regular)
        mine = share(len(tokens), part)
        tokens, inputs, chosen = tokens[mine], inputs[mine], chosen[mine]  # b,T: this rank's share
        logits, cache = crate_lm.forward(params, inputs, self.cfg)  # b,T,V
        loss, dlogits = crate_lm.masked_token_loss(logits, tokens, chosen)
        grads = crate_lm.backward(dlogits, cache)
        correct = ((logits.argmax(axis=-1) == tokens) & chosen).sum() / chosen.sum()  # 0-d, on the device
        return loss, grads, {"loss": loss, "bpt": loss / math.log(2), "accuracy": correct, "n": len(tokens)}

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """Masked-token loss, accuracy, bits per masked token and character, and the unigram's, on the
        validation windows (the batches of ``part``), masked as :data:`EVAL_MASK_SEED` draws."""
        xp = array_module(*params.values())
        windows, _ = sequential_windows(self.val_tokens, self.cfg.block_size, self.eval_windows)  # W, T
        inputs_all, chosen_all = mask_tokens(windows, np.random.default_rng(EVAL_MASK_SEED), mask_id=self.mask_id,
                                             num_regular=self.num_regular)
        nats, correct, unigram, chars, n = 0.0, 0, 0.0, 0, 0
        for rows in rank_batches(len(windows), self.batch_size, part):
            targets = windows[rows][chosen_all[rows]]  # M: the original tokens at the chosen positions (host)
            logits, _ = crate_lm.forward(params, to_device(inputs_all[rows], xp), self.cfg)  # b,T,V
            chosen = to_device(chosen_all[rows], xp)
            loss, _ = crate_lm.masked_token_loss(logits, to_device(windows[rows], xp), chosen)
            predicted = to_host(logits.argmax(axis=-1)[chosen])
            nats += float(loss) * targets.size
            correct += int((predicted == targets).sum())
            unigram += float(self.unigram_bits[targets].sum())
            chars += int(self.token_lengths[targets].sum())
            n += int(targets.size)
        if n == 0:  # a rank without evaluation batches
            return {"loss": 0.0, "accuracy": 0.0, "bpt": 0.0, "bpc": 0.0, "unigram_bpt": 0.0, "unigram_bpc": 0.0,
                    "n": 0}
        bits = nats / math.log(2)
        return {"loss": nats / n, "accuracy": correct / n, "bpt": bits / n, "bpc": bits / chars,
                "unigram_bpt": unigram / n, "unigram_bpc": unigram / chars, "n": n}
