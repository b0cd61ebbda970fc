"""Metrics: running averages over an epoch, and the JSON-lines file that keeps one line per epoch.

``metrics.jsonl`` is appended to, never rewritten, so a crash loses at most the line being
written; every line is a JSON object such as::

    {"epoch": 3, "step": 1407, "lr": 0.00041, "train_loss": 0.61, "train_accuracy": 0.93,
     "test_loss": 0.10, "test_accuracy": 0.979, "samples_per_s": 1350.2, "epoch_time": 52.1, ...}

A resumed run may write an epoch a second time (when it stopped between the line and the
checkpoint); :func:`read_metrics` keeps the last line of each epoch. A line torn by a full disk
or a kill is skipped when reading and cut off before the next append (:mod:`whitebox.io`).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, is_device_array, to_host
from ..io import append_json_line, read_json_lines


class EpochMeter:
    """Weighted sums of a task's per-batch metrics (weights: the ``"n"`` examples of each batch).

    A metric may be a Python number or a 0-d array on the device: the sums then stay on the device
    (in float64), so adding a batch never waits for it; :meth:`fetch` brings them to the host, which
    the loop does once per logging interval. On the host its state is a plain dict of floats, so
    that a checkpoint taken in the middle of an epoch can carry it and the resumed epoch reports
    the averages over all of its batches. ``"n"`` is always a host integer.
    """

    def __init__(self, sums: dict | None = None):
        self.sums = dict(sums or {})

    def add(self, metrics: dict) -> None:
        n = int(metrics["n"])
        self.sums["n"] = self.sums.get("n", 0) + n
        for key, value in metrics.items():
            if key != "n":
                value = value.astype(np.float64) if hasattr(value, "astype") else float(value)
                self.sums[key] = self.sums.get(key, 0.0) + value * n

    def device_sums(self) -> dict:
        """The sums that are still arrays (not yet fetched)."""
        return {key: v for key, v in self.sums.items() if key != "n" and hasattr(v, "dtype")}

    def fetch(self, values: dict) -> None:
        """Replace the sums by their host values (``values``: key → float, from :func:`host_values`)."""
        self.sums.update(values)

    @property
    def count(self) -> int:
        return int(self.sums.get("n", 0))

    def averages(self) -> dict:
        """``{key: Σ n·value / Σ n}``; empty before the first batch."""
        n = self.sums.get("n", 0)
        return {key: value / n for key, value in self.sums.items() if key != "n"} if n else {}


def host_values(values: list) -> list:
    """Python floats of ``values`` (numbers, or 0-d arrays of one module): the device arrays come to
    the host stacked in one transfer, i.e. one device→host synchronisation for the whole list."""
    out = list(values)
    where = [i for i, v in enumerate(values) if is_device_array(v)]
    if where:
        xp = array_module(*(values[i] for i in where))
        for i, v in zip(where, to_host(xp.stack([values[i].astype(np.float64) for i in where]))):
            out[i] = v
    return [float(v) for v in out]


def append_metrics(path, record: dict) -> None:
    """Append one JSON line to ``path`` (created with its folder if needed; a torn last line is cut off)."""
    append_json_line(path, record)


def read_metrics(path) -> list[dict]:
    """The records of ``path``, one per epoch in epoch order (the last line wins for a repeated epoch;
    a torn line is skipped)."""
    by_epoch = {}
    for record in read_json_lines(path):
        if "epoch" in record:
            by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]
