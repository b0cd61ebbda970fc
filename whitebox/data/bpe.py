"""Byte-pair merges learnt from the training text: a small subword vocabulary, written here, no download.

Learning (Sennrich et al. 2016, GPT-2's pre-tokenisation): the text is cut into *words*, each a
run of letters, of digits or of other signs with at most one leading space, or a run of
whitespace (:data:`WORD`), so that a merge never crosses a word boundary. Starting from the
characters of the text, each of ``num_merges`` rounds counts every adjacent pair of symbols
inside the words (each distinct word weighted by its count) and merges the most frequent pair
(ties: the pair whose ids are smallest, ``a V + b``) into one new symbol::

    counts[a V + b] = Σ_words count(word) · #{i : word[i] = a, word[i+1] = b}
    (a, b) = argmax counts;   every non-overlapping "a b" (leftmost first) → "ab" (a new id)

All distinct words live in one int array, with a flag where a word starts, so a round is a few
vectorised passes (``bincount`` of the pair codes, a mask of the matches): a few hundred merges of
Shakespeare's 4.5 million training characters take seconds.

Encoding applies the merges in the order they were learnt, to each distinct word of the text
once, with the same vectorised pass; this is the same segmentation as applying the lowest-ranked
pair first. Token ids: the characters (sorted), then the merges in order, then the specials.

    tok = BPETokenizer.learn(train_text, vocab_size=512, specials=(MASK,))
    ids = tok.encode("To be or [MASK] to be")          # fewer ids than characters
    tok.decode(ids) == "To be or [MASK] to be"
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .text import CharTokenizer, Tokenizer, check_specials

WORD = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def words(text: str) -> list[str]:
    """The words of ``text`` (:data:`WORD`); their concatenation is ``text``."""
    return WORD.findall(text)


def _flatten(symbols: list) -> tuple[np.ndarray, np.ndarray]:
    """``(seq, starts)``: the words' symbol ids end to end (n,), and True where a word begins (n,)."""
    lengths = np.fromiter((len(w) for w in symbols), dtype=np.int64, count=len(symbols))
    seq = np.concatenate(symbols) if symbols else np.zeros(0, np.int64)
    starts = np.zeros(len(seq), bool)
    starts[np.cumsum(lengths) - lengths] = True
    return seq, starts


def _merge(seq, starts, a: int, b: int, new: int):
    """Replace every non-overlapping pair ``a b`` inside a word by ``new`` (leftmost first)."""
    hit = np.flatnonzero((seq[:-1] == a) & (seq[1:] == b) & ~starts[1:])  # i: seq[i], seq[i+1] = a, b
    if hit.size == 0:
        return seq, starts
    if a == b:  # "a a a": runs of consecutive hits overlap; keep every other one from each run's start
        run_start = np.r_[True, hit[1:] != hit[:-1] + 1]
        first = np.maximum.accumulate(np.where(run_start, np.arange(hit.size), 0))
        hit = hit[(np.arange(hit.size) - first) % 2 == 0]
    seq = seq.copy()
    seq[hit] = new
    keep = np.ones(len(seq), bool)
    keep[hit + 1] = False
    return seq[keep], starts[keep]


class BPETokenizer(Tokenizer):
    """Characters, then ``merges`` (pairs of ids, in the order learnt), then ``specials``."""

    def __init__(self, chars, merges, specials=()):
        self.chars = CharTokenizer(chars)  # the base alphabet, validated there
        self.merges = [(int(a), int(b)) for a, b in merges]
        base = self.chars.vocab_size
        pieces = list(self.chars.chars)
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < base + k and 0 <= b < base + k):
                raise ValueError(f"merge {k} ({a}, {b}) names an id that does not exist yet (< {base + k})")
            pieces.append(pieces[a] + pieces[b])
        self.specials = check_specials(specials)
        self.pieces = pieces + list(self.specials)
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def learn(cls, text: str, vocab_size: int, specials=()) -> "BPETokenizer":
        """Merges learnt from ``text`` until the vocabulary (characters, merges, specials) has ``vocab_size``
        tokens, or no pair occurs twice."""
        chars = sorted(set(text)) if isinstance(text, str) else []
        if not chars:
            raise ValueError("text must be a non-empty str")
        specials = check_specials(specials)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) \
                or vocab_size < len(chars) + len(specials):
            raise ValueError(f"vocab_size must be an integer >= {len(chars) + len(specials)} (the text's "
                             f"{len(chars)} characters and {len(specials)} special tokens), got {vocab_size!r}")
        counts = Counter(words(text))
        index = {c: i for i, c in enumerate(chars)}
        distinct = list(counts)
        seq, starts = _flatten([np.fromiter((index[c] for c in w), np.int64, len(w)) for w in distinct])
        weight = np.repeat(np.fromiter(counts.values(), np.int64, len(distinct)), [len(w) for w in distinct])
        merges, V = [], len(chars) + (vocab_size - len(chars) - len(specials))  # ids stay below V
        for new in range(len(chars), V):
            inside = ~starts[1:]  # pairs (i, i+1) within one word
            codes = seq[:-1][inside] * V + seq[1:][inside]
            if codes.size == 0:
                break
            pair_counts = np.bincount(codes, weights=weight[1:][inside])
            best = int(pair_counts.argmax())  # ties: the smallest code
            if pair_counts[best] < 2:
                break
            a, b = divmod(best, V)
            before = np.flatnonzero(starts)
            seq, starts_new = _merge(seq, starts, a, b, new)
            weight = np.repeat(weight[before], np.diff(np.r_[np.flatnonzero(starts_new), len(seq)]))
            starts = starts_new
            merges.append((a, b))
        return cls(chars, merges, specials)

    def _encode_plain(self, text: str) -> np.ndarray:
        pieces = words(text)
        new = [w for w in dict.fromkeys(pieces) if w not in self._cache]
        if new:
            symbols = [self.chars.encode(w) for w in new]  # ValueError naming an unknown character
            seq, starts = _flatten(symbols)
            base = self.chars.vocab_size
            for k, (a, b) in enumerate(self.merges):
                seq, starts = _merge(seq, starts, a, b, base + k)
            bounds = np.r_[np.flatnonzero(starts), len(seq)]
            self._cache.update((w, seq[lo:hi]) for w, lo, hi in zip(new, bounds[:-1], bounds[1:]))
        encoded = [self._cache[w] for w in pieces]
        return np.concatenate(encoded).astype(np.int64) if encoded else np.zeros(0, np.int64)

    def to_json(self) -> str:
        return json.dumps({"kind": "bpe", "chars": "".join(self.chars.chars), "merges": self.merges,
                           "specials": list(self.specials)})

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        data = json.loads(text)
        return cls(data["chars"], data["merges"], data.get("specials", ()))

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


TOKENIZERS = ("char", "bpe")


def make_tokenizer(kind: str, text: str, vocab_size: int | None = None, specials=()) -> Tokenizer:
    """The tokenizer of ``kind`` learnt from ``text``: ``"char"`` (its characters) or ``"bpe"`` (merges
    up to ``vocab_size`` tokens)."""
    if kind == "char":
        return CharTokenizer.from_text(text, specials)
    if kind == "bpe":
        return BPETokenizer.learn(text, vocab_size, specials)
    raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {kind!r}")


def tokenizer_from_json(text: str) -> Tokenizer:
    """The tokenizer of ``to_json`` (a character vocabulary, or byte-pair merges)."""
    return BPETokenizer.from_json(text) if json.loads(text).get("kind") == "bpe" else CharTokenizer.from_json(text)
