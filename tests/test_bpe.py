"""Tokenizers: special tokens, byte-pair merges learnt from text (round trip, determinism, shorter encodings)."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.data.bpe import BPETokenizer, _merge, make_tokenizer, tokenizer_from_json, words
from whitebox.data.text import MASK, CharTokenizer

TEXT = ("To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n") * 3


def test_words_cover_the_text_and_hold_one_leading_space():
    pieces = words("  To be,  or\n\nnot 42 times!")
    assert "".join(pieces) == "  To be,  or\n\nnot 42 times!"
    assert " be" in pieces and " 42" in pieces and " times" in pieces and "!" in pieces
    assert pieces[:2] == [" ", " To"]  # a run of spaces leaves its last one to the word after it


def test_merge_takes_non_overlapping_pairs_leftmost_first_and_never_across_words():
    seq = np.array([1, 1, 1, 1, 1, 2, 1, 1])
    starts = np.array([True, False, False, False, False, False, True, False])
    out, out_starts = _merge(seq, starts, 1, 1, 9)
    np.testing.assert_array_equal(out, [9, 9, 1, 2, 9])  # "1 1 1 1 1 2 | 1 1"
    np.testing.assert_array_equal(out_starts, [True, False, False, False, True])
    cross = _merge(np.array([1, 2, 1]), np.array([True, True, False]), 1, 2, 9)[0]
    np.testing.assert_array_equal(cross, [1, 2, 1])  # "1 | 2 1": no pair inside a word


def test_bpe_round_trip_determinism_and_shorter_encodings():
    tok = BPETokenizer.learn(TEXT, vocab_size=80, specials=(MASK,))
    assert tok.vocab_size == 80 and tok.pieces[-1] == MASK
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    chars = CharTokenizer.from_text(TEXT)
    assert len(ids) < 0.7 * len(chars.encode(TEXT))  # the merges shorten the text
    again = BPETokenizer.learn(TEXT, vocab_size=80, specials=(MASK,))
    assert again.merges == tok.merges and np.array_equal(again.encode(TEXT), ids)
    first = tok.merges[0]
    pairs = {}
    for w in words(TEXT):
        for a, b in zip(w, w[1:]):
            pairs[a + b] = pairs.get(a + b, 0) + 1
    assert tok.pieces[first[0]] + tok.pieces[first[1]] == max(pairs, key=pairs.get)  # the most frequent pair


@given(st.text(alphabet=sorted(set(TEXT)), max_size=60))
def test_bpe_round_trip_of_any_text_over_the_alphabet(text):
    tok = BPETokenizer.learn(TEXT, vocab_size=70)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and tok.decode(ids) == text
    assert len(ids) <= len(text)


def test_special_tokens_are_one_id_and_saved_with_the_vocabulary(tmp_path):
    for tok in (CharTokenizer.from_text(TEXT, (MASK,)), BPETokenizer.learn(TEXT, 70, (MASK,))):
        ids = tok.encode("to be [MASK] not")
        assert (ids == tok.special_id(MASK)).sum() == 1 and tok.special_id(MASK) == tok.vocab_size - 1
        assert tok.num_regular == tok.vocab_size - 1 and tok.decode(ids) == "to be [MASK] not"
        back = tokenizer_from_json(tok.to_json())
        assert back == tok and type(back) is type(tok)
        assert type(tok).load(tok.save(tmp_path / "tok.json")) == tok
        assert tok.token_lengths()[tok.special_id(MASK)] == len(MASK)
    with pytest.raises(ValueError, match="MASK"):
        CharTokenizer.from_text(TEXT).special_id(MASK)
    old = json.dumps({"chars": "abc"})  # a causal run's vocabulary, saved before special tokens existed
    assert tokenizer_from_json(old) == CharTokenizer("abc")


def test_bad_inputs_name_the_problem():
    tok = BPETokenizer.learn(TEXT, vocab_size=70)
    with pytest.raises(ValueError, match="'#'"):
        tok.encode("to be #")
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.learn(TEXT, vocab_size=3)
    with pytest.raises(ValueError, match="merge 0"):
        BPETokenizer("ab", [(0, 5)])
    with pytest.raises(ValueError, match="tokenizer"):
        make_tokenizer("words", TEXT)
    with pytest.raises(ValueError, match="specials"):
        CharTokenizer("ab", ("x",))
    assert make_tokenizer("char", TEXT) == CharTokenizer.from_text(TEXT)
