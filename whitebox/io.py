"""Files: atomic writes, append-only JSON lines that survive a torn write, and a run folder's paths.

**Atomic writes.** The bytes go to a temporary file in the same folder (so that both are on one
file system), are flushed to the disk, and only then does ``os.replace`` put the new file in
place of the old, which POSIX and Windows do in one step. If anything fails on the way, even a
Ctrl-C, the temporary file is removed and the old file is left as it was. Only ``kill -9`` (or a
power cut) can leave a temporary file behind; :func:`remove_stale_temporaries` clears those when
a run next starts in the folder.

**JSON lines.** :func:`append_json_line` adds one line; if the file ends in a torn line (a full
disk, a kill during the write), that fragment is cut off first, so the new line starts on a line
of its own. :func:`read_json_lines` keeps every whole line and skips any that does not parse.

**Run folders.** A run folder holds ``config.json`` (the resolved settings), ``checkpoint.npz``
(the latest checkpoint), ``metrics.jsonl`` (one line per epoch) and ``curves.png``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

TEMPORARY_SUFFIX = ".tmp"
CHECKPOINT_NAME = "checkpoint.npz"


@dataclass(frozen=True)
class RunPaths:
    """Where a run folder keeps each of its files (``out``: the folder, a path or a string)."""

    out: Path

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))

    @classmethod
    def of(cls, path) -> "RunPaths":
        """The run of ``path``: a run folder, or the ``checkpoint.npz`` inside one."""
        path = Path(path)
        return cls(path.parent if path.name == CHECKPOINT_NAME and not path.is_dir() else path)

    @property
    def config(self) -> Path:
        return self.out / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def curves(self) -> Path:
        return self.out / "curves.png"

    def files(self) -> tuple[Path, ...]:
        return self.config, self.checkpoint, self.metrics, self.curves


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then move it to ``path``. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)  # same folder; permissions as any new file
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


def remove_stale_temporaries(folder, names) -> list[Path]:
    """Delete the temporary files that an interrupted :func:`atomic_write` of ``names`` left in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for name in names for p in folder.glob(f".{name}.*{TEMPORARY_SUFFIX}")
             if len(p.name) == len(name) + 2 + 32 + len(TEMPORARY_SUFFIX)]  # "." name "." uuid4-hex ".tmp"
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def append_json_line(path, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (created with its folder), cutting off a torn last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as f:  # a log of one line per epoch: small enough to read whole
        f.seek(0)
        text = f.read()
        if text and not text.endswith(b"\n"):
            f.truncate(text.rfind(b"\n") + 1)  # drop the torn fragment (0: the only line was torn)
        f.write((json.dumps(record) + "\n").encode("utf-8"))


def read_json_lines(path) -> list[dict]:
    """The JSON objects of ``path``, one per whole line; torn or garbled lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
