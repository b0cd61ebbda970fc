"""The files of a run folder, and atomic writes: a reader sees the old file or the new one, never half.

A run folder holds ``config.json`` (the resolved settings), ``checkpoint.npz`` (the latest
checkpoint), ``metrics.jsonl`` (one line per epoch) and ``curves.png``.

The bytes go to a temporary file in the same folder (so that both are on one file system),
are flushed to the disk, and only then does ``os.replace`` put the new file in place of the old,
which POSIX and Windows do in one step. If anything fails on the way, even a Ctrl-C, the
temporary file is removed and the old file is left as it was.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable


@dataclass(frozen=True)
class RunPaths:
    """Where a run folder keeps each of its files (``out``: the folder, a path or a string)."""

    out: Path

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))

    @property
    def config(self) -> Path:
        return self.out / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.npz"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def curves(self) -> Path:
        return self.out / "curves.png"


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then move it to ``path``. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"  # same folder; permissions as any new file
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
